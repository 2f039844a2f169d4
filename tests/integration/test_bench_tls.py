"""test_bench_tls - ringmail-bench --tls (issue 6): STARTTLS injection into a
ringmaild with a certificate, relaying to a ringmail-sink; every message must
arrive. Also --handshake-only with --tls-reuse (resumed sessions counted).

Certificates are made at test time with openssl. Every process is started
here and stopped by PID. No timing asserts.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_bench_tools import BENCH, Sink  # noqa: E402
from test_starttls import make_cert  # noqa: E402


def run_bench(*args):
    """run_bench - ringmail-bench --json; returns (exit status, report, stderr)."""
    out = subprocess.run([BENCH, "--json"] + list(args), capture_output=True,
                         text=True, timeout=300)
    return out.returncode, json.loads(out.stdout), out.stderr


class BenchTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmail-benchtls-")
        cls.cert, cls.key = make_cert(cls.certs, "relay", "relay.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.sink = Sink(self.tmp.name)
        users = os.path.join(self.tmp.name, "users")
        r = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "users", "add",
                            "--file", users, "bench"], input="bench-secret\n",
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(self.tmp.name, 0o755)
        os.chmod(users, 0o644)
        self.sub_port = harness.free_port()
        self.daemon = harness.Ringmaild(workers=2, extra={
            "tls": {"cert_file": self.cert, "key_file": self.key},
            "users": {"file": users},
            "submission": {"listen": ["127.0.0.1:%d" % self.sub_port]},
            "delivery": {"relayhost": "[127.0.0.1]:%d" % self.sink.port},
        }).start()
        harness.wait_port("127.0.0.1", self.sub_port)

    def tearDown(self):
        rc = self.daemon.stop()
        self.sink.stop()
        reports = self.daemon.sanitizer_reports()
        shutil.rmtree(self.daemon.tmp, ignore_errors=True)
        self.tmp.cleanup()
        self.assertEqual(reports, [], "sanitizer reports in ringmaild's log")
        self.assertEqual(rc, 0, "got ringmaild exit %s, want 0" % rc)

    def target(self):
        return "127.0.0.1:%d" % self.daemon.port

    def test_tls_injection_all_arrive(self):
        # 3 messages per connection: several handshakes on every connection
        # slot, and sizes that take several TLS records.
        status, report, err = run_bench(
            "--target", self.target(), "--tls", "--connections", "5",
            "--messages", "300", "--size-dist", "2000:0.8,40000:0.2",
            "--messages-per-connection", "3")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        accepted = report["messages"]["accepted"]
        self.assertEqual(accepted, 300, "got %d accepted, want 300" % accepted)
        self.assertGreaterEqual(report["tls_handshakes"], 100,
                                "got %d handshakes, want >= 100" % report["tls_handshakes"])
        self.assertEqual(report["tls_handshakes"], report["connections_opened"],
                         "every connection did STARTTLS: %s" % report)
        got = self.sink.wait_messages(300)
        self.assertEqual(got, 300, "got sink count %d, want 300" % got)

    def test_auth_over_tls_open_loop(self):
        # submission requires AUTH: STARTTLS, EHLO, AUTH PLAIN, then mail at
        # a fixed rate; a wrong password is a failed connection, not mail.
        status, report, err = run_bench(
            "--target", "127.0.0.1:%d" % self.sub_port, "--tls", "--auth", "bench:bench-secret",
            "--connections", "4", "--messages", "100", "--rate", "200")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        self.assertEqual(report["messages"]["accepted"], 100, report)
        self.assertEqual(report["latency_from"], "due")
        self.assertEqual(self.sink.wait_messages(100), 100)
        status, report, err = run_bench(
            "--target", "127.0.0.1:%d" % self.sub_port, "--tls", "--auth", "bench:wrong",
            "--connections", "1", "--messages", "1", "--timeout", "10")
        self.assertNotEqual(status, 0, "a refused AUTH must fail the run: %s" % report)
        self.assertEqual(report["messages"]["accepted"], 0, report)
        self.assertIn("auth", err)

    def test_handshake_only_with_reuse(self):
        status, report, err = run_bench(
            "--target", self.target(), "--tls", "--tls-reuse", "--handshake-only",
            "--connections", "4", "--messages", "60")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        sessions = report["messages"]["accepted"]
        self.assertGreaterEqual(sessions, 60, "got %d sessions, want >= 60" % sessions)
        self.assertEqual(report["tls_handshakes"], sessions, report)
        # the first handshakes are full; the rest offer the saved session
        self.assertGreaterEqual(report["tls_resumed"], sessions - 4,
                                "got %d resumed, want >= %d" % (report["tls_resumed"], sessions - 4))
        self.assertEqual(report["messages"]["sent"], 0, "no mail in --handshake-only")

    def thread_ticks(self):
        """thread_ticks - CPU ticks (utime+stime) of the daemon's threads
        named "tls" (the handshake helpers) and of all the others."""
        tls = other = 0
        task = "/proc/%d/task" % self.daemon.proc.pid
        for tid in os.listdir(task):
            try:
                with open(os.path.join(task, tid, "stat")) as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            if comm == "tls":
                tls += ticks
            else:
                other += ticks
        return tls, other

    def test_full_handshakes_run_on_tls_threads(self):
        # tls.offload_handshakes (the default): the public-key work of
        # full handshakes is done by the "tls" helper threads, not by the
        # workers, whose loops stay free for their other connections.
        tls0, other0 = self.thread_ticks()
        status, report, err = run_bench(
            "--target", self.target(), "--tls", "--handshake-only",
            "--connections", "4", "--messages", "150")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        self.assertEqual(report["tls_handshakes"], report["messages"]["accepted"], report)
        self.assertEqual(report["tls_resumed"], 0, report)
        tls1, other1 = self.thread_ticks()
        self.assertGreater(tls1 - tls0, other1 - other0,
                           "handshake CPU: tls threads %d ticks, the rest %d" %
                           (tls1 - tls0, other1 - other0))

    def test_handshakes_on_the_worker_when_offload_is_off(self):
        self.assertEqual(self.daemon.stop(), 0)
        shutil.rmtree(self.daemon.tmp, ignore_errors=True)
        self.daemon = harness.Ringmaild(workers=2, extra={
            "tls": {"cert_file": self.cert, "key_file": self.key, "offload_handshakes": False},
            "delivery": {"relayhost": "[127.0.0.1]:%d" % self.sink.port},
        }).start()
        status, report, err = run_bench(
            "--target", self.target(), "--tls", "--connections", "3", "--messages", "30",
            "--messages-per-connection", "2")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        self.assertEqual(report["messages"]["accepted"], 30, report)
        self.assertEqual(self.sink.wait_messages(30), 30)
        tls, other = self.thread_ticks()
        self.assertEqual(tls, 0, "no tls helper thread ran: %d ticks" % tls)
        names = set()
        for tid in os.listdir("/proc/%d/task" % self.daemon.proc.pid):
            with open("/proc/%d/task/%s/comm" % (self.daemon.proc.pid, tid)) as f:
                names.add(f.read().strip())
        self.assertNotIn("tls", names)

    def test_reloads_switch_the_offload_while_handshakes_run(self):
        # A reload that turns the offload off must not let the worker step
        # a handshake while a helper still holds one (the worker's TLS
        # configs serve one thread at a time): reloads alternating the key
        # every 0.1 s while 300 full handshakes run; every message arrives, every
        # reload applies, and the sanitizer build reports nothing.
        import signal
        import threading
        import time
        bench = {}

        def inject():
            bench["result"] = run_bench(
                "--target", self.target(), "--tls", "--connections", "6", "--messages", "300",
                "--messages-per-connection", "1")
        t = threading.Thread(target=inject)
        t.start()
        reloads = 0
        while t.is_alive() or reloads < 2:
            reloads += 1
            self.daemon.settings["tls"]["offload_handshakes"] = reloads % 2 == 0
            self.daemon.write_config()
            self.daemon.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        t.join(300)
        status, report, err = bench["result"]
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s %s" % (status, report, err))
        self.assertEqual(report["messages"]["accepted"], 300, report)
        self.assertEqual(self.sink.wait_messages(300), 300)
        with open(self.daemon.log_path, "rb") as f:
            text = f.read()
        deadline = time.monotonic() + 10
        while text.count(b"event=reload result=ok") < reloads and time.monotonic() < deadline:
            time.sleep(0.1)
            with open(self.daemon.log_path, "rb") as f:
                text = f.read()
        self.assertEqual(text.count(b"event=reload result=ok"), reloads,
                         "want %d applied reloads" % reloads)

    def test_tls_refused_without_starttls(self):
        # the sink does not offer STARTTLS: every connection fails, exit 1
        status, report, _ = run_bench("--target", "127.0.0.1:%d" % self.sink.port,
                                      "--tls", "--connections", "1", "--messages", "2",
                                      "--timeout", "5")
        self.assertNotEqual(status, 0, "got exit 0, want nonzero without STARTTLS")
        self.assertEqual(report["messages"]["accepted"], 0, report)
        self.assertEqual(report["tls_handshakes"], 0, report)


if __name__ == "__main__":
    unittest.main()
