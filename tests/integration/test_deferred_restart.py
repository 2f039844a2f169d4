#!/usr/bin/python3
"""test_deferred_restart - a restart resumes each deferred message's backoff.

Three messages go to a receiver that answers 451 to every RCPT, with a
fixed backoff (delivery.min_backoff = max_backoff = BACKOFF, no jitter).
After the first deferral the relay is stopped (SIGTERM) and started again
on the same spool: the queue listing still shows one attempt and the last
reply, nothing is tried before the backoff is over (counted by the
receiver, which sees every RCPT), and the next attempt is logged as
attempt 2. Then the relay is killed (kill -9) once the second deferral is
in the spool, started again, and the third attempt, delivered, is attempt 3,
again not before its backoff, and with its body as sent (read back from
the spool: waiting mail keeps no body in memory). The waits checked are lower bounds (never
early), which a slow machine cannot break.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from mailnet import Receiver, RecordingHandler, wait_until  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
SPOOL = os.path.join(harness.BIN, "ringmail-spool")
BACKOFF = 12          # seconds
N = 3
LINE_RE = re.compile(r"^ts=(\S+) .*event=delivery .*rcpt=<([^>]*)>.*status=(\w+).*attempt=(\d+)")


class Switch(RecordingHandler):
    """451 to every recipient while fail is set."""

    def __init__(self):
        super().__init__()
        self.fail = True

    def rcpt_reply(self, address):
        return "451 4.3.0 come back later" if self.fail else None


def delivery_lines(text):
    """delivery_lines - [(wall seconds, rcpt, status, attempt)] of a log."""
    out = []
    for line in text.splitlines():
        m = LINE_RE.search(line)
        if m:
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
            ts = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
            out.append((ts, m.group(2), m.group(3), int(m.group(4))))
    return out


class Fixture(unittest.TestCase):
    """A receiver that answers 451 while its switch is on; helpers."""

    def setUp(self):
        harness.raise_fd_limit()
        self.tmp = tempfile.mkdtemp(prefix="ringmail-deferred-")
        self.handler = Switch()
        self.rx = Receiver("127.0.0.1", harness.free_port(), self.handler).start()
        self.addCleanup(self.rx.stop)
        self.rcpts = ["user%d@far.test" % i for i in range(N)]

    def daemon(self):
        d = harness.Ringmaild(workers=2, tmp=self.tmp, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % self.rx.port,
                         "min_backoff": "%ds" % BACKOFF, "max_backoff": "%ds" % BACKOFF,
                         "backoff_jitter": 0, "idle_timeout": "1s", "domain_backoff": "1s"},
        })
        self.addCleanup(d.stop)
        return d.start()

    def attempts_seen(self):
        with self.handler.lock:
            return [self.handler.rcpt_attempts.get(r, 0) for r in self.rcpts]

    def lines(self, d, attempt):
        return [x for x in delivery_lines(d.log_text()) if x[3] == attempt]

    def wait_lines(self, d, attempt, status, timeout):
        ok = wait_until(lambda: len([x for x in self.lines(d, attempt) if x[2] == status]) == N,
                        timeout, 0.1)
        self.assertTrue(ok, "no %d lines of attempt %d (%s):\n%s"
                        % (N, attempt, status, d.log_text()[-4000:]))
        return self.lines(d, attempt)

    def spooled_attempts(self, d):
        """spooled_attempts - each live recipient's attempts in the spool."""
        p = subprocess.run([SPOOL, "dump", "--json", os.path.join(d.tmp, "spool")],
                           capture_output=True, text=True, timeout=60)
        out = []
        for line in p.stdout.splitlines():
            out += [r["attempts"] for r in json.loads(line)["recipients"]]
        return sorted(out)


class DeferredRestart(Fixture):
    def test_backoff_and_attempts_survive_restarts(self):
        d = self.daemon()
        s = __import__("smtplib").SMTP(d.host, d.port, timeout=30)
        for r in self.rcpts:
            s.sendmail("sender@origin.test", [r], b"Subject: deferred\r\n\r\nbody\r\n")
        s.quit()
        first = self.wait_lines(d, 1, "deferred", 60)
        t1 = max(x[0] for x in first)
        self.assertTrue(wait_until(lambda: self.spooled_attempts(d) == [1] * N, 30),
                        self.spooled_attempts(d))
        self.assertEqual(d.stop(), 0, d.log_text()[-4000:])

        # Restart: listed with one attempt and the last reply, not tried early.
        d = self.daemon()
        sock = os.path.join(self.tmp, "spool", "control.sock")
        out = subprocess.run([CTL, "queue", "list", "--json", "--socket", sock],
                             capture_output=True, text=True, timeout=60).stdout
        items = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(len(items), N, out)
        for it in items:
            self.assertEqual(it["attempts"], 1, it)
            self.assertIn("4.3.0 come back later", it.get("last_error") or "", it)
        second = self.wait_lines(d, 2, "deferred", BACKOFF * 5)
        self.assertEqual(self.lines(d, 1), first, "attempt 1 was made again after the restart")
        for ts, rcpt, _, _ in second:
            self.assertGreaterEqual(ts, t1 + BACKOFF - 1,
                                    "%s retried %.1fs after its deferral, backoff %ds"
                                    % (rcpt, ts - t1, BACKOFF))
        self.assertEqual(self.attempts_seen(), [2] * N)

        # kill -9 once the second deferral is durable; the third attempt is 3.
        self.assertTrue(wait_until(lambda: self.spooled_attempts(d) == [2] * N, 30),
                        self.spooled_attempts(d))
        t2 = max(x[0] for x in second)
        d.kill9()
        self.handler.fail = False
        d = self.daemon()
        third = self.wait_lines(d, 3, "delivered", BACKOFF * 5)
        for ts, rcpt, _, _ in third:
            self.assertGreaterEqual(ts, t2 + BACKOFF - 1,
                                    "%s retried %.1fs after its deferral" % (rcpt, ts - t2))
        self.assertEqual(self.attempts_seen(), [3] * N)
        got = self.handler.snapshot()
        self.assertEqual(len(got), N)
        # The bodies were read back from the spool after each restart.
        for m in got:
            self.assertTrue(m.content.endswith(b"Subject: deferred\r\n\r\nbody\r\n"), m.content[-200:])
        self.assertTrue(wait_until(lambda: self.spooled_attempts(d) == [], 30))
        self.assertEqual(d.stop(), 0, d.log_text()[-4000:])
        self.assertEqual(d.sanitizer_reports(), [])


class SmallBodyCache(Fixture):
    """600 deferred messages of 4 KB through spool.body_cache_size = 1M (a
    share of 512 KiB per worker, about 125 bodies): after a flush every one
    is read back from the spool as room frees up, and arrives intact."""

    def test_flush_through_a_small_cache(self):
        n = 600
        d = harness.Ringmaild(workers=2, tmp=self.tmp, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % self.rx.port, "min_backoff": "1h",
                         "max_backoff": "2h", "idle_timeout": "1s"},
            "spool": {"body_cache_size": "1M"},
        })
        self.addCleanup(d.stop)
        d.start()
        bodies = {}
        s = __import__("smtplib").SMTP(d.host, d.port, timeout=30)
        for i in range(n):
            body = ("Subject: cache %d\r\n\r\n" % i + ("line %d of a body\r\n" % i) * 200).encode()
            bodies["c%d@far.test" % i] = body
            s.sendmail("sender@origin.test", ["c%d@far.test" % i], body)
        s.quit()
        ok = wait_until(lambda: len([x for x in delivery_lines(d.log_text()) if x[2] == "deferred"]) == n,
                        120, 0.2)
        self.assertTrue(ok, d.log_text()[-3000:])
        self.handler.fail = False
        sock = os.path.join(self.tmp, "spool", "control.sock")
        subprocess.run([CTL, "queue", "flush", "--socket", sock], check=True, capture_output=True,
                       timeout=60)
        self.assertTrue(wait_until(lambda: len(self.handler.snapshot()) >= n, 120, 0.2),
                        "%d of %d delivered" % (len(self.handler.snapshot()), n))
        for m in self.handler.snapshot():
            self.assertEqual(len(m.rcpts), 1)
            self.assertTrue(m.content.endswith(bodies[m.rcpts[0]]), m.rcpts[0])
        self.assertEqual(d.stop(), 0, d.log_text()[-4000:])
        self.assertEqual(d.sanitizer_reports(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
