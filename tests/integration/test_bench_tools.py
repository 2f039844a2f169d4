"""test_bench_tools - ringmail-sink and ringmail-bench against each other and
against real SMTP clients (Postfix's smtp-source, Python's smtplib).

Every process is started here and killed by PID at the end. No timing asserts:
waits are polls with generous deadlines.
"""
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

BIN = os.environ.get("RINGMAIL_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SINK = os.path.join(BIN, "ringmail-sink")
BENCH = os.path.join(BIN, "ringmail-bench")
SMTP_SOURCE = "/usr/sbin/smtp-source"


def free_port():
    """free_port - a port free on 127.0.0.1 and 127.0.0.2 right now."""
    return harness.free_port("127.0.0.1", also=("127.0.0.2",))


class Sink:
    """Sink - one ringmail-sink process with a stats file."""

    def __init__(self, tmp, *args, addresses=("127.0.0.1",)):
        self.port = free_port()
        self.stats_path = os.path.join(tmp, "stats-%d.json" % self.port)
        cmd = [SINK, "--stats-file", self.stats_path]
        for a in addresses:
            cmd += ["--listen", "%s:%d" % (a, self.port)]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd)
        self.wait_listening(addresses[0])

    def wait_listening(self, address):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(self.stats_path):
                return
            if self.proc.poll() is not None:
                raise AssertionError("sink exited with %s" % self.proc.returncode)
            time.sleep(0.05)
        raise AssertionError("sink did not start")

    def stats(self):
        with open(self.stats_path) as f:
            return json.load(f)

    def wait_messages(self, want):
        """wait_messages - poll the stats file until it counts want messages."""
        deadline = time.monotonic() + 30
        got = None
        while time.monotonic() < deadline:
            got = self.stats()["messages"]
            if got >= want:
                return got
            time.sleep(0.1)
        return got

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def run_bench(*args):
    """run_bench - ringmail-bench with --json; returns (exit status, report)."""
    out = subprocess.run([BENCH, "--json"] + list(args), capture_output=True,
                         text=True, timeout=300)
    return out.returncode, json.loads(out.stdout)


class BenchTools(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.sinks = []

    def tearDown(self):
        for sink in self.sinks:
            sink.stop()
        self.tmp.cleanup()

    def sink(self, *args, **kw):
        s = Sink(self.tmp.name, *args, **kw)
        self.sinks.append(s)
        return s

    def test_bench_into_sink_counts_agree(self):
        sink = self.sink("--domain-stats", addresses=("127.0.0.1", "127.0.0.2"))
        status, report = run_bench("--target", "127.0.0.2:%d" % sink.port,
                                   "--connections", "20", "--messages", "2000",
                                   "--rcpts", "2", "--domains", "10", "--zipf", "1.0")
        self.assertEqual(status, 0, "got bench exit %d, want 0: %s" % (status, report))
        accepted = report["messages"]["accepted"]
        self.assertEqual(accepted, 2000, "got %d accepted, want 2000" % accepted)
        got = sink.wait_messages(accepted)
        self.assertEqual(got, accepted, "got sink count %d, want %d" % (got, accepted))
        stats = sink.stats()
        self.assertEqual(stats["recipients"], 4000, "got %d rcpts, want 4000" % stats["recipients"])
        self.assertEqual(stats["latency_us"]["count"], 2000,
                         "got %d stamped, want 2000" % stats["latency_us"]["count"])
        self.assertEqual(report["latency_us"]["count"], 2000)
        domains = stats["domains"]
        want = {"d%d.test" % i for i in range(1, 11)}
        self.assertLessEqual(set(domains), want, "got domains %s" % sorted(domains))
        total = sum(domains.values())
        self.assertTrue(2000 <= total <= 4000, "got %d domain-messages, want 2000..4000" % total)
        self.assertEqual(max(domains, key=domains.get), "d1.test",
                         "Zipf: got %s, want d1.test the most common" % domains)
        self.assertEqual(sink.stop(), 0, "sink exit on SIGTERM")

    def test_open_loop_charges_queueing(self):
        """--rate: latency runs from each message's due time, so a slow server
        is charged for the messages queued behind it (no coordinated omission).
        The sink delays every reply batch 20 ms, so one connection carries at
        most 25 msg/s; 40 messages due within 0.2 s take at least 1.6 s, and
        the last one waited at least 1.4 s past its due time."""
        sink = self.sink("--delay-ms", "20")
        pct = os.path.join(self.tmp.name, "pct.txt")
        status, report = run_bench("--target", "127.0.0.1:%d" % sink.port,
                                   "--connections", "1", "--messages", "40",
                                   "--rate", "200", "--percentiles", pct)
        self.assertEqual(status, 0, report)
        self.assertEqual(report["messages"]["accepted"], 40)
        self.assertEqual(report["latency_from"], "due")
        self.assertEqual(report["rate_target"], 200)
        lat, svc = report["latency_us"], report["service_latency_us"]
        self.assertGreaterEqual(svc["p50"], 20000, "dot-to-reply includes one 20 ms delay: %s" % svc)
        self.assertGreaterEqual(lat["max"], 1400000, "the last message queued: %s" % lat)
        self.assertGreater(lat["p50"], 5 * svc["p50"], "due-time latency %s, service %s" % (lat, svc))
        self.assertLess(report["msgs_per_s"], 200)
        # the distribution file: monotonic values and percentiles, ending at 100% of 40
        rows = []
        with open(pct) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and parts[0][0].isdigit():
                    rows.append((float(parts[0]), float(parts[1]), int(parts[2])))
        self.assertGreater(len(rows), 5, rows)
        self.assertEqual(rows[-1][1:], (1.0, 40), rows[-1])
        self.assertAlmostEqual(rows[-1][0], lat["max"] / 1000.0, delta=0.01)
        for a, b in zip(rows, rows[1:]):
            self.assertLessEqual(a[0], b[0], rows)
            self.assertLess(a[1], b[1], rows)

    def test_closed_loop_latency_from_dot(self):
        sink = self.sink()
        status, report = run_bench("--target", "127.0.0.1:%d" % sink.port,
                                   "--connections", "2", "--messages", "200")
        self.assertEqual(status, 0, report)
        self.assertEqual(report["latency_from"], "dot")
        self.assertEqual(report["latency_us"]["count"], 200)
        self.assertEqual(report["service_latency_us"]["count"], 200)

    def test_sink_starttls_every_other_address(self):
        """--tls-cert/--tls-key with --starttls-every 2: the first address
        offers STARTTLS (bench --tls and smtplib deliver over it), the
        second does not (bench --tls refuses to send in clear)."""
        from test_starttls import make_cert
        cert, key = make_cert(self.tmp.name, "sink", "sink.test")
        sink = self.sink("--tls-cert", cert, "--tls-key", key, "--starttls-every", "2",
                         addresses=("127.0.0.1", "127.0.0.2"))
        status, report = run_bench("--target", "127.0.0.1:%d" % sink.port, "--tls",
                                   "--connections", "4", "--messages", "200",
                                   "--size-dist", "2000:0.5,60000:0.5",
                                   "--messages-per-connection", "10")
        self.assertEqual(status, 0, report)
        self.assertEqual(report["messages"]["accepted"], 200, report)
        self.assertEqual(sink.wait_messages(200), 200)
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            smtp.ehlo()
            self.assertTrue(smtp.has_extn("starttls"))
            smtp.starttls()
            smtp.ehlo()
            self.assertFalse(smtp.has_extn("starttls"), "not offered twice")
            smtp.sendmail("a@x.test", ["b@y.test"], b"Subject: t\r\n\r\nover TLS\r\n")
        self.assertEqual(sink.wait_messages(201), 201)
        stats = sink.stats()
        self.assertEqual(stats["tls_sessions"], report["tls_handshakes"] + 1, stats)
        self.assertEqual(stats["tls_failures"], 0, stats)
        with smtplib.SMTP("127.0.0.2", sink.port, timeout=10) as smtp:
            smtp.ehlo()
            self.assertFalse(smtp.has_extn("starttls"), "second address: no STARTTLS")
        status, report = run_bench("--target", "127.0.0.2:%d" % sink.port, "--tls",
                                   "--connections", "1", "--messages", "1")
        self.assertNotEqual(status, 0, report)
        self.assertEqual(report["messages"]["accepted"], 0, report)

    def test_smtp_source_into_sink(self):
        sink = self.sink()
        subprocess.run([SMTP_SOURCE, "-s", "10", "-m", "500", "-l", "2000",
                        "-f", "a@x.test", "-t", "b@y.test",
                        "127.0.0.1:%d" % sink.port], check=True, timeout=120)
        got = sink.wait_messages(500)
        self.assertEqual(got, 500, "got %d messages, want 500" % got)

    def test_store_keeps_bytes(self):
        store = os.path.join(self.tmp.name, "store")
        sink = self.sink("--store", store, "--expect", "1")
        body = (b"From: a@x.test\r\nTo: b@y.test\r\nSubject: store\r\n\r\n"
                b".leading dot\r\n\xc3\xa9 8bit\r\n..two dots\r\nlast\r\n")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            smtp.sendmail("a@x.test", ["b@y.test", "c@z.test"], body)
        self.assertEqual(sink.proc.wait(timeout=20), 0, "sink exit after --expect 1")
        with open(os.path.join(store, "1.eml"), "rb") as f:
            stored = f.read()
        prefix = (b"X-Sink-Envelope-From: <a@x.test>\r\n"
                  b"X-Sink-Envelope-To: <b@y.test>\r\nX-Sink-Envelope-To: <c@z.test>\r\n")
        self.assertEqual(stored, prefix + body, "got %r, want %r" % (stored, prefix + body))

    def test_dkim_signed_counted_and_store_max(self):
        """dkim_signed counts header fields only (not a folded line, not the
        body); --store-max 2 stores messages 1 and 2, not 3."""
        store = os.path.join(self.tmp.name, "store")
        sink = self.sink("--store", store, "--store-max", "2")
        signed = (b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s;\r\n\tb=AAAA\r\n"
                  b"From: a@x.test\r\nSubject: signed\r\n\r\nbody\r\n")
        in_body = b"From: a@x.test\r\nSubject: body\r\n\r\nDKIM-Signature: no\r\n"
        folded = b"From: a@x.test\r\nSubject: folded\r\n DKIM-Signature: no\r\n\r\nx\r\n"
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            for body in (signed, in_body, folded):
                smtp.sendmail("a@x.test", ["b@y.test"], body)
        got = sink.wait_messages(3)
        self.assertEqual(got, 3, "got %d messages, want 3" % got)
        n = sink.stats()["dkim_signed"]
        self.assertEqual(n, 1, "got dkim_signed %d, want 1" % n)
        stored = sorted(os.listdir(store))
        self.assertEqual(stored, ["1.eml", "2.eml"], "got %s, want 1.eml 2.eml" % stored)
        with open(os.path.join(store, "2.eml"), "rb") as f:
            second = f.read()
        self.assertTrue(second.endswith(in_body), "got %r, want it to end with %r"
                        % (second, in_body))

    def test_fail_rcpt_5xx_reported_by_bench(self):
        sink = self.sink("--fail-rcpt-5xx", "100")
        status, report = run_bench("--target", "127.0.0.1:%d" % sink.port,
                                   "--connections", "4", "--messages", "40")
        self.assertNotEqual(status, 0, "got exit 0, want nonzero for rejections")
        self.assertEqual(report["messages"]["rejected_5xx"], 40, report)
        self.assertEqual(report["recipients"]["rejected_5xx"], 40, report)
        self.assertEqual(report["messages"]["accepted"], 0, report)
        self.assertEqual(sink.stats()["messages"], 0)

    def test_tempfail_pattern(self):
        sink = self.sink()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as ctx:
                smtp.sendmail("a@x.test", ["tempfail-1@y.test"], b"Subject: t\r\n\r\nx\r\n")
            code = ctx.exception.recipients["tempfail-1@y.test"][0]
            self.assertEqual(code, 451, "got %d, want 451" % code)
            refused = smtp.sendmail("a@x.test", ["ok@y.test", "permfail@y.test"],
                                    b"Subject: t\r\n\r\nx\r\n")
            self.assertEqual(refused["permfail@y.test"][0], 550, refused)

    def test_stall_times_out_client(self):
        sink = self.sink("--stall")
        with socket.create_connection(("127.0.0.1", sink.port), timeout=0.5) as s:
            with self.assertRaises(socket.timeout):
                s.recv(100)

    def test_bdat_chunks(self):
        sink = self.sink("--chunking")
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220"))
            s.sendall(b"EHLO c.test\r\n")
            ehlo = []
            while True:
                line = f.readline()
                ehlo.append(line)
                if line[3:4] == b" ":
                    break
            self.assertIn(b"250-CHUNKING\r\n", ehlo)
            s.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
                      b"BDAT 5\r\nab\r\ncBDAT 3 LAST\r\n.\r\nQUIT\r\n")
            replies = [f.readline()[:3] for _ in range(6)]
        self.assertEqual(replies, [b"250", b"250", b"250", b"250", b"221", b""][:6],
                         "got %r" % replies)
        got = sink.wait_messages(1)
        self.assertEqual(got, 1)
        self.assertEqual(sink.stats()["bytes"], 8, "got %d bytes, want 8" % sink.stats()["bytes"])

    def test_faults_mix(self):
        sink = self.sink("--disconnect", "2", "--421-after", "5", "--delay-ms", "1",
                         "--fail-rcpt-4xx", "10", "--fail-mail-4xx", "5",
                         "--fail-data-4xx", "5", "--seed", "7")
        status, report = run_bench("--target", "127.0.0.1:%d" % sink.port,
                                   "--connections", "8", "--messages", "300", "--rcpts", "2")
        self.assertNotEqual(status, 0, "faults must show in the exit status")
        m = report["messages"]
        self.assertEqual(m["attempted"], 300, report)
        self.assertEqual(m["accepted"] + m["rejected_4xx"] + m["rejected_5xx"] + m["lost"],
                         300, report)
        self.assertGreater(report["connection_errors"], 0, report)
        time.sleep(0.5)
        got = sink.stats()["messages"]
        self.assertGreaterEqual(got, m["accepted"],
                                "got sink %d, want >= bench accepted %d" % (got, m["accepted"]))

    def test_expect_timeout_fails(self):
        sink = self.sink("--expect", "5", "--timeout", "1")
        self.assertEqual(sink.proc.wait(timeout=30), 1, "exit when --expect is not met")


if __name__ == "__main__":
    for prog in (SINK, BENCH):
        if not os.access(prog, os.X_OK):
            sys.exit("missing %s" % prog)
    unittest.main(verbosity=2)
