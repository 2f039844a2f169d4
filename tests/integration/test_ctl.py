"""ringmailctl against a running daemon over its control socket: every queue
command (list, show, summary, flush, delete, bounce, hold, release), domains,
stats and reload, with mail held by a receiver that answers 451 until told
otherwise. Also: holds survive a restart, a reload changes a per-domain limit
while an SMTP session stays open, a bad reload keeps the old config, and a
listing of 20,000 items streams every row."""
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from mailnet import Receiver, RecordingHandler, Sink, wait_until  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")


class Switch(RecordingHandler):
    """451 to every recipient while fail is set."""

    def __init__(self):
        super().__init__()
        self.fail = True

    def rcpt_reply(self, address):
        return "451 4.3.0 try again later" if self.fail else None


def message(i, subject="ctl"):
    return ("From: sender@origin.test\r\nSubject: %s %d\r\nMessage-ID: <ctl%d@origin.test>\r\n"
            "\r\nbody %d\r\n" % (subject, i, i, i))


class Ctl(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringmail-ctl-")
        self.handler = Switch()
        self.rx = Receiver("127.0.0.1", harness.free_port(), self.handler).start()
        self.dlog = os.path.join(self.tmp, "delivery.json")
        self.mport = harness.free_port()
        self.d = self.daemon()
        self.d.start()
        self.sock = os.path.join(self.tmp, "spool", "control.sock")

    def daemon(self, **extra):
        settings = {
            "delivery": {"relayhost": "[127.0.0.1]:%d" % self.rx.port, "min_backoff": "10m",
                         "max_backoff": "20m", "idle_timeout": "1s"},
            "log": {"level": "info", "delivery_file": self.dlog},
            "metrics": {"listen": ["127.0.0.1:%d" % self.mport]},
        }
        settings.update(extra)
        return harness.Ringmaild(workers=2, tmp=self.tmp, extra=settings)

    def tearDown(self):
        rc = self.d.stop()
        self.rx.stop()
        self.assertEqual(rc, 0, self.d.log_text())
        self.assertEqual(self.d.sanitizer_reports(), [], self.d.log_text())

    def ctl(self, *args, check=True):
        p = subprocess.run([CTL, *args, "--socket", self.sock], capture_output=True, text=True,
                           timeout=120)
        if check:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def items(self, *args):
        out = self.ctl("queue", "list", "--json", *args).stdout
        return [json.loads(line) for line in out.splitlines()]

    def send(self, rcpts_of, subject="ctl"):
        s = smtplib.SMTP(self.d.host, self.d.port, timeout=30)
        for i, rcpts in enumerate(rcpts_of):
            s.sendmail("sender@origin.test", rcpts, message(i, subject))
        s.quit()

    def wait_deferred(self, n):
        ok = wait_until(lambda: sum(1 for it in self.items() if it["state"] == "deferred") == n, 30)
        self.assertTrue(ok, "want %d deferred: %r" % (n, self.items()))

    def delivery_log(self):
        if not os.path.exists(self.dlog):
            return []
        with open(self.dlog) as f:
            return [json.loads(line) for line in f if line.strip()]

    def received_subjects(self):
        out = []
        for m in self.handler.snapshot():
            head = m.content.decode().split("\r\n\r\n", 1)[0]
            out += [line[9:] for line in head.split("\r\n") if line.startswith("Subject: ")]
        return sorted(out)

    def test_list_show_summary_domains_stats(self):
        self.send([["u%d@a.test" % i, "v%d@a.test" % i] for i in range(4)] +
                  [["w%d@b.test" % i] for i in range(2)])
        self.wait_deferred(6)
        items = self.items()
        self.assertEqual(len(items), 6)
        for it in items:
            self.assertEqual(it["sender"], "sender@origin.test")
            self.assertEqual(it["attempts"], 1)
            self.assertIn("451 4.3.0 try again later", it["last_error"])
            self.assertIsNotNone(it["next_attempt"])
        a = self.items("--domain", "A.test")
        self.assertEqual(sorted(len(it["recipients"]) for it in a), [2, 2, 2, 2])
        self.assertEqual(len(self.items("--deferred")), 6)
        self.assertEqual(self.items("--held"), [])

        text = self.ctl("queue", "list")
        self.assertTrue(text.stdout.startswith("QUEUE_ID"), text.stdout)
        self.assertEqual(len([line for line in text.stdout.splitlines() if "deferred" in line]), 6)
        self.assertIn("6 items", text.stderr)

        qid = a[0]["queue_id"]
        shown = json.loads(self.ctl("queue", "show", qid, "--json").stdout)
        self.assertEqual(shown["queue_id"], qid)
        self.assertEqual(len(shown["recipients"]), 2)
        for r in shown["recipients"]:
            self.assertEqual(r["state"], "deferred")
            self.assertIn("451", r["last_error"])
        self.assertIn("<sender@origin.test>", self.ctl("queue", "show", qid).stdout)

        summary = [json.loads(line) for line in self.ctl("queue", "summary", "--json").stdout.splitlines()]
        self.assertEqual([(r["domain"], r["total"]) for r in summary],
                         [("TOTAL", 6), ("a.test", 4), ("b.test", 2)])
        self.assertEqual(summary[0]["age_minutes"]["5"], 6)
        self.assertIn("TOTAL", self.ctl("queue", "summary").stdout)

        domains = {r["domain"]: r for r in
                   (json.loads(line) for line in self.ctl("domains", "--json").stdout.splitlines())}
        self.assertEqual(domains["a.test"]["deferred"], 4)
        self.assertEqual(domains["b.test"]["deferred"], 2)
        self.assertEqual(domains["a.test"]["held"], 0)
        self.assertIn("DEFERRED", self.ctl("domains").stdout)

        # the snapshot behind stats is published every 250 ms
        def stats():
            return json.loads(self.ctl("stats", "--json").stdout)
        self.assertTrue(wait_until(lambda: stats()["queue_items"] == 6, 10), stats())
        self.assertEqual(stats()["received_total"], 6)
        self.assertEqual(stats()["deferred_total"], 10)
        self.assertIn("received_total", self.ctl("stats").stdout)

        # the same numbers in Prometheus: per-domain series and the oldest age
        def scrape():
            return subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % self.mport],
                                  capture_output=True, text=True, timeout=30, check=True).stdout
        body = scrape()
        self.assertIn('ringmail_domain_queue_items{domain="a.test"} 4\n', body)
        self.assertIn('ringmail_domain_queue_items{domain="b.test"} 2\n', body)
        self.assertIn("\nringmail_queue_items 6\n", body)
        self.assertTrue(wait_until(lambda: "\nringmail_queue_oldest_age_seconds 0\n" not in scrape(), 10),
                        "the oldest item ages")
        self.assertEqual(stats()["rejected_relay_denied_total"], 0)
        self.assertGreater(stats()["spool_bytes"], 6 * 100)

    def test_global_options_before_or_after_and_help(self):
        for args in (["--socket", self.sock, "stats"], ["--socket=" + self.sock, "domains"],
                     ["stats", "--socket", self.sock]):
            p = subprocess.run([CTL, *args], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, "%s: %s%s" % (args, p.stdout, p.stderr))
        # resolve asks the daemon now (issue 17); users still does not.
        p = subprocess.run([CTL, "--socket", self.sock, "resolve", "example.test"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("example.test via=", p.stdout)
        p = subprocess.run([CTL, "--socket", self.sock, "users", "check"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("does not talk to the daemon", p.stderr)
        p = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        for want in ("--socket PATH", "--config FILE", "addresses", "--relayhost TARGET",
                     "--tries N", "dkim keygen"):
            self.assertIn(want, p.stdout)

    def test_actions(self):
        self.send([["u%d@a.test" % i] for i in range(4)])
        self.wait_deferred(4)
        ids = {int(it["recipients"][0][1]): it["queue_id"] for it in self.items()}
        self.assertIn("held 1 of 1", self.ctl("queue", "hold", ids[0]).stderr)
        self.assertEqual([it["queue_id"] for it in self.items("--held")], [ids[0]])
        self.assertIn("deleted 1 of 1", self.ctl("queue", "delete", ids[1]).stderr)
        self.assertIn("bounced 1 of 1", self.ctl("queue", "bounce", ids[2]).stderr)
        # the bounce's DSN to sender@origin.test is queued (and deferred too)
        self.assertTrue(wait_until(lambda: any(it["sender"] == "" for it in self.items()), 10))
        self.assertNotIn(ids[1], [it["queue_id"] for it in self.items()])
        self.assertNotIn(ids[2], [it["queue_id"] for it in self.items()])
        self.assertEqual(self.ctl("queue", "show", ids[1], check=False).returncode, 1)

        self.handler.fail = False
        # the held one matches but stays held
        self.assertIn("flushed 2 of 3", self.ctl("queue", "flush").stderr)
        self.assertTrue(wait_until(lambda: [it["queue_id"] for it in self.items()] == [ids[0]], 30),
                        self.items())
        self.assertEqual(self.items()[0]["state"], "held")
        self.assertIn("released 1 of 1", self.ctl("queue", "release", ids[0]).stderr)
        self.assertTrue(wait_until(lambda: self.items() == [], 30), self.items())

        # what arrived: the two kept messages and the DSN, never the others
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 3, 10))
        subjects = self.received_subjects()
        self.assertIn("ctl 0", subjects)
        self.assertIn("ctl 3", subjects)
        self.assertNotIn("ctl 1", subjects)
        self.assertNotIn("ctl 2", subjects)
        dsn = [m for m in self.handler.snapshot() if m.sender in ("", "<>")]
        self.assertEqual(len(dsn), 1)
        self.assertIn(b"bounced by the operator", dsn[0].content)
        status = {(e["recipient"], e["status"]) for e in self.delivery_log()}
        self.assertIn(("u1@a.test", "deleted"), status)
        self.assertIn(("u2@a.test", "bounced"), status)
        self.assertIn(("u0@a.test", "delivered"), status)

    def test_domain_actions_and_hold_survives_restart(self):
        self.send([["u%d@a.test" % i] for i in range(3)] + [["w%d@b.test" % i] for i in range(2)])
        self.wait_deferred(5)
        self.assertIn("held 3 of 3", self.ctl("queue", "hold", "--domain", "a.test").stderr)
        self.assertEqual(self.d.stop(), 0)
        self.d = self.daemon()
        self.d.start()
        self.assertTrue(wait_until(lambda: len(self.items()) == 5, 20), self.items())
        for it in self.items():
            self.assertEqual(it["state"] == "held", it["domain"] == "a.test", it)
        self.assertEqual([it["domain"] for it in self.items("--held")], ["a.test"] * 3)
        self.handler.fail = False
        self.ctl("queue", "flush", "b.test")
        self.assertTrue(wait_until(lambda: len(self.items()) == 3, 30), self.items())
        self.assertIn("released 3 of 3", self.ctl("queue", "release", "--domain", "a.test").stderr)
        self.assertTrue(wait_until(lambda: self.items() == [], 30), self.items())
        self.assertEqual(len(self.handler.snapshot()), 5)

    def test_delete_by_domain(self):
        self.send([["u%d@a.test" % i] for i in range(3)] + [["w0@b.test"]])
        self.wait_deferred(4)
        self.assertIn("deleted 3 of 3", self.ctl("queue", "delete", "--domain", "a.test").stderr)
        self.assertEqual([it["domain"] for it in self.items()], ["b.test"])
        self.assertEqual(sum(1 for e in self.delivery_log() if e["status"] == "deleted"), 3)

    def test_reload_changes_domain_limit_while_a_session_stays(self):
        self.handler.fail = False
        self.d.settings["domains"] = [{"name": "a.test", "max_recipients_per_transaction": 1}]
        self.d.write_config()
        self.assertIn("reloaded", self.ctl("reload").stderr)
        s = smtplib.SMTP(self.d.host, self.d.port, timeout=30)
        s.sendmail("sender@origin.test", ["x1@a.test", "x2@a.test", "x3@a.test"], message(1))
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 3, 20))
        self.assertEqual(sorted(len(m.rcpts) for m in self.handler.snapshot()), [1, 1, 1])

        self.d.settings["domains"] = [{"name": "a.test", "max_recipients_per_transaction": 10}]
        self.d.write_config()
        self.assertIn("reloaded", self.ctl("reload").stderr)
        # the same SMTP session goes on after the reload
        s.sendmail("sender@origin.test", ["y1@a.test", "y2@a.test", "y3@a.test"], message(2))
        s.quit()
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 4, 20))
        self.assertEqual(len(self.handler.snapshot()[-1].rcpts), 3)

    def test_bad_reload_keeps_old_config(self):
        with open(self.d.config_path, "a") as f:
            f.write("delivery = { max_connections = -5; };\n")
        p = self.ctl("reload", check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("line", p.stderr)
        self.assertIn("result=rejected", self.d.log_text())
        # still the old config: relays to the receiver
        self.handler.fail = False
        self.send([["z@a.test"]])
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 1, 20))
        self.d.write_config()
        self.assertIn("reloaded", self.ctl("reload").stderr)

    def test_idle_domains_are_reaped(self):
        self.assertEqual(self.d.stop(), 0)
        # A new metrics port: the stopped daemon's listener may outlive it
        # for a moment (io_uring releases files after the process exits).
        self.mport = harness.free_port()
        self.d = self.daemon(delivery={"relayhost": "[127.0.0.1]:%d" % self.rx.port, "idle_timeout": "1s",
                                       "domain_reap_interval": "300ms"})
        self.d.start()
        self.handler.fail = False

        def stats():
            return json.loads(self.ctl("stats", "--json").stdout)
        self.send([["u@r%d.test" % i] for i in range(5)])
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 5, 20))
        # pooled connections close after 1 s idle; then the domains go
        self.assertTrue(wait_until(lambda: stats()["domains_reaped_total"] == 5, 20), stats())
        self.assertEqual(stats()["domains"], 0)
        self.assertIn("0 domains", self.ctl("domains").stderr)
        # a reaped domain comes back with its next message
        self.send([["v@r1.test"]])
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) == 6, 20))

    def test_bad_requests(self):
        p = subprocess.run([CTL, "queue", "frobnicate", "--socket", self.sock], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([CTL, "queue", "delete", "--socket", self.sock], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 2, "delete without a target must be refused")
        p = subprocess.run([CTL, "stats", "--socket", os.path.join(self.tmp, "nothing.sock")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot reach the daemon", p.stderr)
        # straight on the socket: garbage gets an error line, and the
        # socket's mode is the configured 0600
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(self.sock)
            c.sendall(b"\x00\xffqueue list please\n")
            answer = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer += chunk
        self.assertTrue(answer.startswith(b"-- error"), answer)
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o600)

    def test_listing_streams_every_row(self):
        """20,000 items in the queue: every row arrives, each once."""
        self.assertEqual(self.d.stop(), 0)
        sink = Sink(self.tmp, ["127.0.0.1"], harness.free_port(), "--fail-rcpt-4xx", "100",
                    store=False).start()
        self.addCleanup(sink.stop)          # after tearDown stopped the daemon
        self.d = harness.Ringmaild(workers=2, tmp=self.tmp, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % sink.port, "min_backoff": "10m",
                         "max_backoff": "20m"},
            "spool": {"dir": os.path.join(self.tmp, "spool2")},
        })
        self.d.start()
        self.sock = os.path.join(self.tmp, "spool2", "control.sock")
        n = 20000
        subprocess.run([os.path.join(harness.BIN, "ringmail-bench"), "--target",
                        "127.0.0.1:%d" % self.d.port, "--messages", str(n), "--connections", "8",
                        "--domains", "50", "--size", "500"],
                       check=True, capture_output=True, timeout=300)

        def deferred():
            out = self.ctl("queue", "summary", "--deferred", "--json").stdout
            return json.loads(out.splitlines()[0])["total"]
        self.assertTrue(wait_until(lambda: deferred() == n, 120), deferred())
        p = self.ctl("queue", "list")
        rows = [line.split()[0] for line in p.stdout.splitlines()[1:] if not line.startswith(" ")]
        self.assertEqual(len(rows), n)
        self.assertEqual(len(set(rows)), n)
        self.assertIn("%d items" % n, p.stderr)

        # Clients that leave in the middle of a listing: their cursors are
        # dropped (a leak or a dangling marker would show under ASan, or
        # in the next listing).
        for _ in range(5):
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(self.sock)
                c.sendall(b"queue list\n")
                self.assertTrue(c.recv(4096))
        p = self.ctl("queue", "list", "--json")
        self.assertEqual(len(p.stdout.splitlines()), n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
