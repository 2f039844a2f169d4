#!/usr/bin/python3
"""test_relay_matrix - open-relay attempts from a client outside
relay_networks (issue 10), one row per trick.

The client connects from 127.0.0.2; relay_networks is 127.0.0.1/32 and
local_domains is local.test. Every recipient that names or routes to
another domain must be refused with 554 5.7.1 (or a 5xx syntax error), and
every message that is accepted must be stored with local recipients only
(checked in `ringmailctl spool dump --json`). A second case runs RCPT after
a failed AUTH (users.file and smtp.auth_plaintext, no TLS needed).
"""
import base64
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, RawClient, queue_id_of  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
OUTSIDE = "127.0.0.2"
POLICY = {"relay_networks": ["127.0.0.1/32"], "local_domains": ["local.test"]}

# (RCPT argument, expected reply code, the address stored if accepted).
# 554 rows must carry 5.7.1; other 5xx rows are refusals of another kind
# (also fine: nothing relays).
ROWS = [
    ("<victim@remote.test>", 554, None),
    ("<victim%remote.test@relay.test>", 554, None),
    ("<victim%remote.test@local.test>", 250, "victim%remote.test@local.test"),
    ("<remote.test!victim@other.test>", 554, None),
    ("<remote.test!victim@local.test>", 250, "remote.test!victim@local.test"),
    ("<@remote.test:victim@remote.test>", 554, None),
    ("<@local.test:victim@remote.test>", 554, None),
    ("<@remote.test:user@local.test>", 250, "user@local.test"),
    ("<@local.test,@remote.test:victim@remote.test>", 554, None),
    ('<"victim@remote.test"@other.test>', 554, None),
    # No mailbox can be named so (not a valid Maildir name): unknown user.
    ('<"victim@remote.test"@local.test>', 550, None),
    ('<"user@local.test"@remote.test>', 554, None),
    ("<victim@[127.0.0.1]>", 554, None),
    ("<victim@[127.0.0.2]>", 554, None),
    ("<victim@[IPv6:::1]>", 554, None),
    ("<victim@REMOTE.TEST.>", 554, None),
    ("<victim@remote.test.>", 554, None),
    ("<victim@Remote.Test>", 554, None),
    ("<user@LOCAL.TEST.>", 250, "user@local.test"),
    ("<user@Local.Test>", 250, "user@local.test"),
    ("<user@local.test.evil.test>", 554, None),
    ("<user@evil-local.test>", 554, None),
    ("<user@sub.local.test>", 554, None),
    ("<user@local.test.>", 250, "user@local.test"),
]


def spool_dump(spool_dir):
    r = subprocess.run([CTL, "spool", "dump", "--json", spool_dir], capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError("ringmailctl spool dump: exit %d %r" % (r.returncode, r.stderr))
    return [json.loads(line) for line in r.stdout.decode("utf-8", "surrogateescape").splitlines()
            if line.strip()]


class RelayMatrix(DaemonTestCase):
    def check_spool_local_only(self, d, want):
        """check_spool_local_only - the spool holds exactly the queue ids of
        want (dict qid -> [addresses]) and no recipient outside local.test."""
        got = {m["queue_id"]: [r["address"] for r in m["recipients"]]
               for m in spool_dump(self.spool_dir(d))}
        self.assertEqual(got, want, "got spool %r, want %r" % (got, want))
        for qid, rcpts in got.items():
            for r in rcpts:
                self.assertTrue(r.lower().endswith("@local.test"),
                                "got non-local recipient %r in %s, want only local" % (r, qid))

    def test_matrix(self):
        d = self.daemon(POLICY)
        want = {}
        failures = []
        for arg, code_want, stored in ROWS:
            # One transaction per row: a row's verdict cannot hide behind another.
            c = RawClient(d.host, d.port, source=OUTSIDE)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO outside.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<o@outside.test>")[0], 250)
            code, text = c.cmd("RCPT TO:%s" % arg)
            print("relay_matrix: RCPT TO:%-48s -> %d %s" % (arg, code, text[0]), flush=True)
            if code != code_want:
                failures.append("RCPT TO:%s: got %d %s, want %d" % (arg, code, text, code_want))
            elif code == 554 and not text[0].startswith("5.7.1"):
                failures.append("RCPT TO:%s: got %s, want 5.7.1" % (arg, text))
            if code == 250:
                self.assertEqual(c.cmd("DATA")[0], 354)
                code, text = c.cmd(b"Subject: row\r\n\r\nrow\r\n.")
                self.assertEqual(code, 250, text)
                want[queue_id_of(text[0])] = [stored]
            c.cmd("QUIT")
            c.close()
        self.assertEqual(failures, [])
        self.check_spool_local_only(d, want)
        self.finish(d)

    def test_rcpt_after_failed_auth(self):
        users = os.path.join(self.tmp, "users")
        r = subprocess.run([CTL, "users", "add", "--file", users, "alice"],
                           input="right-password\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        extra = dict(POLICY)
        extra["users"] = {"file": users}
        extra["smtp"] = {"auth_plaintext": True}
        d = self.daemon(extra)
        c = RawClient(d.host, d.port, source=OUTSIDE)
        self.assertEqual(c.reply()[0], 220)
        code, ext = c.cmd("EHLO outside.test")
        self.assertTrue(any(e.startswith("AUTH") for e in ext), ext)
        bad = base64.b64encode(b"\0alice\0wrong-password").decode()
        code, text = c.cmd("AUTH PLAIN " + bad)
        self.assertEqual(code, 535, text)
        code, text = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0mallory\0x").decode())
        self.assertEqual(code, 535, text)
        self.assertEqual(c.cmd("MAIL FROM:<alice@local.test>")[0], 250)
        for arg in ("<victim@remote.test>", "<victim%remote.test@relay.test>",
                    "<@local.test:victim@remote.test>", "<victim@[127.0.0.1]>"):
            code, text = c.cmd("RCPT TO:%s" % arg)
            self.assertEqual(code, 554, "after failed AUTH, RCPT TO:%s got %d %s, want 554"
                             % (arg, code, text))
            self.assertTrue(text[0].startswith("5.7.1"), text)
        self.assertEqual(c.cmd("RCPT TO:<alice@local.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        code, text = c.cmd(b"Subject: after auth\r\n\r\nx\r\n.")
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        c.cmd("QUIT")
        c.close()
        self.check_spool_local_only(d, {qid: ["alice@local.test"]})
        self.finish(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
