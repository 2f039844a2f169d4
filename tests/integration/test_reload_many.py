#!/usr/bin/python3
"""test_reload_many - 1,000 SIGHUPs while mail flows (issue 26, "Reloads").

Until configs were reference counted, ringmaild kept every config it ever
loaded and refused every reload from the 64th on. Here a ringmaild relays
to an aiosmtpd receiver (a bare-IP relayhost) while a client thread submits
messages over STARTTLS, several per connection, so connections opened
under one config carry on across many reloads. The main thread rewrites
the config 1,000 times, each with another hostname, and sends SIGHUP,
waiting for each reload's log line before the next signal.

Asserts: every reload applied (1,000 "result=ok" lines with increasing
serials, the greeting and the last messages' Received fields name the last
hostname), none refused or rejected; every message delivered exactly once;
the daemon's RSS does not grow with the number of reloads (< +40 MB from
the 100th to the 1,000th reload; not under ASan, whose quarantine keeps
freed memory) and the live config count stays small
(old configs are freed); at exit every config is freed (configs_live=0),
the daemon exits 0 without sanitizer reports. No timing asserts.
"""
import os
import re
import signal
import smtplib
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from inbound_common import wait_for  # noqa: E402
from test_starttls import client_context, make_cert  # noqa: E402

RELOADS = 1000
WARMUP = 100             # RSS is compared from here on (allocator warm-up)
RSS_GROWTH_MAX_KB = 40 * 1024
LIVE_MAX = 12            # workers + connections that opened under an older config
MESSAGES_MAX = 3000      # the client stops here even if reloads are slower


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class LogTail:
    """LogTail - the daemon's log read incrementally (1,000 waits must not
    re-read the whole file each time)."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.pending = b""

    def lines(self):
        data = self.pending + self.f.read()
        *done, self.pending = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in done]

    def close(self):
        self.f.close()


class Submitter(threading.Thread):
    """Submitter - messages over STARTTLS, five per connection, until told
    to stop; each has a unique subject. Keeps what got a 250."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.stop_flag = threading.Event()
        self.accepted = []
        self.errors = []

    def run(self):
        n = 0
        while not self.stop_flag.is_set() and n < MESSAGES_MAX:
            try:
                with smtplib.SMTP(self.host, self.port, timeout=30) as s:
                    s.ehlo("client.test")
                    s.starttls(context=client_context())
                    s.ehlo("client.test")
                    for _ in range(5):
                        subject = "reload-%d" % n
                        n += 1
                        body = ("From: app@src.test\r\nTo: bob@dest.test\r\nSubject: %s\r\n"
                                "Message-ID: <%s@src.test>\r\n\r\nhello %s\r\n"
                                % (subject, subject, subject))
                        s.sendmail("app@src.test", ["bob@dest.test"], body)
                        self.accepted.append(subject)
                        if self.stop_flag.is_set():
                            break
                        time.sleep(0.005)
            except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
                self.errors.append(repr(e))
                time.sleep(0.05)


class ReloadManyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringmail-reload-")
        harness.give_to_daemon(self.tmp)
        self.cert, self.key = make_cert(self.tmp, "relay", "relay.test")
        harness.give_to_daemon(self.cert)
        harness.give_to_daemon(self.key)
        net = mailnet.Addresses(1)
        self.receiver = mailnet.Receiver(net.ips[0], net.port).start()
        self.addCleanup(self.receiver.stop)
        self.mport = harness.free_port()
        self.d = harness.Ringmaild(workers=2, tmp=self.tmp, extra={
            "metrics": {"listen": ["127.0.0.1:%d" % self.mport]},
            "hostname": "relay-0.test",
            "tls": {"cert_file": self.cert, "key_file": self.key},
            "delivery": {"relayhost": "[%s]:%d" % (net.ips[0], net.port)},
        })
        self.d.start()
        self.addCleanup(self.d.stop)

    def write_config_atomically(self):
        """The daemon must never read a half-written file: write, rename."""
        text = harness.render_config(self.d.settings)
        tmp = self.d.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.d.config_path)

    def test_thousand_reloads_under_load(self):
        tail = LogTail(self.d.log_path)
        self.addCleanup(tail.close)
        pid = self.d.proc.pid
        sender = Submitter(self.d.host, self.d.port)
        sender.start()
        serials, live = [], []
        rss_warm = None
        for i in range(1, RELOADS + 1):
            self.d.settings["hostname"] = "relay-%d.test" % i
            self.write_config_atomically()
            self.d.send_signal(signal.SIGHUP)
            found = wait_for(lambda: [ln for ln in tail.lines()
                                      if "event=reload" in ln and "result=" in ln],
                             timeout=30, interval=0.002)
            self.assertTrue(found, "reload %d: no result line" % i)
            line = found[-1]
            self.assertIn("result=ok", line, "reload %d: %s" % (i, line))
            m = re.search(r"serial=(\d+) configs_live=(\d+)", line)
            self.assertIsNotNone(m, line)
            serials.append(int(m.group(1)))
            live.append(int(m.group(2)))
            if i == WARMUP:
                rss_warm = rss_kb(pid)
        rss_end = rss_kb(pid)
        sender.stop_flag.set()
        sender.join(60)
        self.assertFalse(sender.is_alive())

        # Every reload applied, in order, each a new config.
        self.assertEqual(len(serials), RELOADS)
        self.assertEqual(serials, sorted(set(serials)))
        self.assertLessEqual(max(live), LIVE_MAX, "old configs are not freed: %r" % live[-20:])
        grown = rss_end - rss_warm
        print("RSS after %d reloads: %d kB, after %d: %d kB (%+d kB); configs_live max %d; "
              "messages %d" % (WARMUP, rss_warm, RELOADS, rss_end, grown, max(live),
                               len(sender.accepted)), file=sys.stderr)
        # Under ASan freed memory sits in its quarantine (256 MB by
        # default) instead of being reused, so RSS says nothing there; the
        # live config count above is the sanitizer build's measure.
        if not harness.SANITIZED:
            self.assertLess(grown, RSS_GROWTH_MAX_KB, "RSS grew %d kB over %d reloads"
                            % (grown, RELOADS - WARMUP))
        self.assertEqual(sender.errors, [])
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport, timeout=30) as r:
            gauge = re.search(rb"^ringmail_configs_live (\d+)$", r.read(), re.M)
        self.assertIsNotNone(gauge)
        self.assertLessEqual(int(gauge.group(1)), LIVE_MAX)
        # The last config is the one in use: in the EHLO reply and in the
        # Received field of a message sent now.
        with smtplib.SMTP(self.d.host, self.d.port, timeout=30) as s:
            self.assertIn(b"relay-%d.test" % RELOADS, s.ehlo("client.test")[1])
            s.sendmail("app@src.test", ["bob@dest.test"],
                       "From: app@src.test\r\nSubject: reload-last\r\n\r\nlast\r\n")
        sender.accepted.append("reload-last")

        # Every accepted message arrives exactly once.
        accepted = set(sender.accepted)
        self.assertGreater(len(accepted), 20, "too little mail flowed: %r" % sender.errors[:5])

        def subjects():
            return Counter(re.search(rb"Subject: (reload-\w+)", m.content).group(1).decode()
                           for m in self.receiver.handler.snapshot())
        got = wait_for(lambda: set(subjects()) >= accepted and subjects(), timeout=120)
        self.assertTrue(got, "missing: %r" % sorted(accepted - set(subjects()))[:10])
        dup = [k for k, v in subjects().items() if v > 1]
        self.assertEqual(dup, [], "delivered twice")
        self.assertEqual(set(subjects()), accepted)
        last = [m for m in self.receiver.handler.snapshot() if b"Subject: reload-last" in m.content]
        self.assertIn(b"by relay-%d.test" % RELOADS, last[0].content)

        rc = self.d.stop()
        self.assertEqual(rc, 0)
        text = self.d.log_text()
        self.assertNotIn("result=refused", text)
        self.assertNotIn("result=rejected", text)
        self.assertEqual(text.count("event=reload result=ok"), RELOADS)
        self.assertRegex(text, r"event=exit status=0 configs_live=0")
        self.assertEqual(self.d.sanitizer_reports(), [])


if __name__ == "__main__":
    unittest.main()
