#!/usr/bin/python3
"""test_local_crash - kill -9 ringmaild in the middle of local (Maildir)
delivery, start it again on the same spool, and count the duplicates: a
message written to a mailbox whose DELIVERED outcome was not yet in the
spool at the kill is delivered again. Every acknowledged message must be in
a mailbox at least once, and the duplicates are bounded by what the local
worker may have in flight (mailbox.delivery_window items, one recipient
each here, plus the one being written).

A backlog is built first: with mailbox.quota at 1 byte every delivery is
deferred (4.2.2); once all N messages are accepted, a reload lifts the
quota and the retries flow (backoff 1 to 2 s). The kill comes once a
quarter of them are in the mailboxes. Every process is stopped by PID.
"""
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

N_MSGS = 2000
USERS = ["u%d" % i for i in range(4)]
WINDOW = 8
MID = re.compile(rb"(?im)^Message-ID:\s*<([^>\r\n]*)>")


class LocalCrash(unittest.TestCase):
    def setUp(self):
        harness.raise_fd_limit()
        self.tmp = tempfile.mkdtemp(prefix="ringmail-localcrash-")
        self.root = os.path.join(self.tmp, "mail")
        os.mkdir(self.root)
        self.users_file = os.path.join(self.tmp, "users")
        for name in USERS:
            r = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "users", "add",
                                "--file", self.users_file, name],
                               input="secret\n", capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.extra = {
            "local_domains": ["local.test"],
            "mailbox": {"root": self.root, "quota": 1, "delivery_window": WINDOW},
            "users": {"file": self.users_file},
            "delivery": {"min_backoff": "1s", "max_backoff": "2s", "backoff_jitter": 0},
        }

    def daemon(self):
        d = harness.Ringmaild(workers=2, tmp=self.tmp, extra=self.extra)
        self.addCleanup(d.stop)
        return d.start()

    def mailbox_ids(self):
        """mailbox_ids - Counter of Message-IDs in every user's new/."""
        got = collections.Counter()
        for user in os.listdir(self.root):
            new = os.path.join(self.root, user, "new")
            if not os.path.isdir(new):
                continue
            for name in os.listdir(new):
                try:
                    with open(os.path.join(new, name), "rb") as f:
                        m = MID.search(f.read())
                except FileNotFoundError:
                    continue
                if m:
                    got[m.group(1).decode()] += 1
        return got

    def test_kill9_during_local_delivery(self):
        d = self.daemon()
        want = set()
        msgs = []
        for i in range(N_MSGS):
            rcpt = "%s@local.test" % USERS[i % len(USERS)]
            mid = "local%d@client.test" % i
            want.add(mid)
            msgs.append(("sender@client.test", [rcpt],
                         mailnet.make_message(mid, "sender@client.test", [rcpt]), [], []))
        mailnet.submit(d.host, d.port, msgs, connections=8)
        self.assertEqual(sum(self.mailbox_ids().values()), 0, "the quota let mail through")

        # Lift the quota: the deferred backlog flows; kill -9 a quarter in.
        d.settings["mailbox"]["quota"] = 0
        d.write_config()
        d.send_signal(signal.SIGHUP)
        at_kill = mailnet.wait_until(
            lambda: (lambda n: n if n >= N_MSGS // 4 else 0)(sum(self.mailbox_ids().values())),
            120, 0.01)
        d.kill9()
        self.assertIsNotNone(at_kill, "local delivery did not start:\n" + d.log_text()[-3000:])
        before = self.mailbox_ids()
        print("\nlocal crash: kill -9 with %d of %d in the mailboxes" % (sum(before.values()), N_MSGS),
              flush=True)
        self.assertLess(sum(before.values()), N_MSGS - 100, "delivery finished before the kill")

        # Restart with no quota; it drains.
        self.extra["mailbox"]["quota"] = 0
        d2 = self.daemon()
        drained = mailnet.wait_until(lambda: set(self.mailbox_ids()) >= want, 180, 0.2)
        got = self.mailbox_ids()
        missing = want - set(got)
        self.assertFalse(missing, "lost %d, e.g. %s" % (len(missing), sorted(missing)[:5]))
        self.assertTrue(drained)
        dups = sum(n - 1 for n in got.values())
        print("local crash: %d delivered, %d duplicates (window %d)" % (len(got), dups, WINDOW),
              flush=True)
        # In flight at the kill: the window's items plus the one being written.
        self.assertLessEqual(dups, WINDOW + 1, "duplicates: %d" % dups)
        rc = d2.stop()
        self.assertEqual(rc, 0, d2.log_text()[-4000:])
        self.assertEqual(d2.sanitizer_reports(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
