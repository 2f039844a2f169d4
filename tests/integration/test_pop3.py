"""test_pop3 - local mailboxes and the POP3 endpoint (issue 7), end to end:
mail sent through ringmaild to a local user lands in its Maildir and is
fetched with Python's poplib, curl's pop3 client and mpop; DELE then QUIT
removes, DELE then a dropped connection does not; wrong passwords; one
session per mailbox ([IN-USE]); TOP; unknown local users get 550 5.1.1 at
RCPT.

The users file is made with ringmailctl (passwords on stdin). STLS is not
available yet, so the daemon allows plaintext logins on loopback.
"""
import glob
import os
import poplib
import signal
import smtplib
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, send_smtplib, wait_for  # noqa: E402

USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def message(subject, lines=("hello",)):
    body = "".join("%s\r\n" % line for line in lines)
    return ("From: sender@src.test\r\nTo: alice@local.test\r\nSubject: %s\r\n\r\n%s"
            % (subject, body)).encode()


class Pop3(DaemonTestCase):
    EXTRA = {}

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "mail")
        os.mkdir(self.root)
        self.users_file = os.path.join(self.tmp, "users")
        for name, password in USERS.items():
            r = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "users", "add",
                                "--file", self.users_file, name],
                               input=password + "\n", capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.pop_port = harness.free_port()
        settings = {
            "local_domains": ["local.test"],
            "mailbox": {"root": self.root},
            "users": {"file": self.users_file},
            "pop3": {"listen": ["127.0.0.1:%d" % self.pop_port], "allow_plaintext": True},
        }
        for key, value in self.EXTRA.items():
            settings[key].update(value)
        self.d = self.daemon(extra=settings)
        harness.wait_port("127.0.0.1", self.pop_port)

    def tearDown(self):
        if self.d.proc is not None:
            self.finish(self.d)
        super().tearDown()

    def deliver(self, subject, rcpt="alice@local.test", lines=("hello",), status="delivered"):
        """deliver - send one message and wait for its local delivery line."""
        qid = send_smtplib(self.d, "sender@src.test", [rcpt], message(subject, lines))
        want = "event=delivery id=%s rcpt=<%s> domain=local.test mx=local" % (qid, rcpt)
        line = wait_for(lambda: [x for x in self.d.log_text().splitlines() if want in x])
        self.assertTrue(line, "no delivery line for %s\n%s" % (qid, self.d.log_text()[-2000:]))
        self.assertIn("status=" + status, line[0])
        return line[0]

    def login(self, user="alice"):
        p = poplib.POP3("127.0.0.1", self.pop_port, timeout=30)
        p.user(user)
        p.pass_(USERS[user])
        return p

    def login_when_free(self, user="alice"):
        """login_when_free - log in once the server has let go of a dropped
        session's lock (it notices the drop asynchronously)."""
        def attempt():
            try:
                return self.login(user)
            except poplib.error_proto as e:
                if b"[IN-USE]" in e.args[0]:
                    return None
                raise
        p = wait_for(attempt, timeout=20)
        self.assertIsNotNone(p, "mailbox still locked")
        return p

    def test_poplib_retr_dele_quit(self):
        self.deliver("first")
        self.deliver("second")
        self.assertEqual(len(glob.glob(os.path.join(self.root, "alice", "new", "*"))), 2)
        p = self.login()
        count, _ = p.stat()
        self.assertEqual(count, 2)
        _, lines, _ = p.retr(1)
        text = b"\n".join(lines)
        self.assertIn(b"Return-Path: <sender@src.test>", text)
        self.assertIn(b"Delivered-To: alice@local.test", text)
        self.assertIn(b"Subject: first", text)
        self.assertIn(b"hello", text)
        uidls = p.uidl()[1]
        self.assertEqual(len(uidls), 2)
        p.dele(1)
        p.quit()
        p = self.login()
        self.assertEqual(p.stat()[0], 1)
        _, lines, _ = p.retr(1)
        self.assertIn(b"Subject: second", b"\n".join(lines))
        # The UIDL of the survivor did not change across sessions.
        self.assertEqual(p.uidl()[1][0].split()[1], uidls[1].split()[1])
        p.quit()

    def test_dele_then_drop_deletes_nothing(self):
        self.deliver("keep me")
        p = self.login()
        p.dele(1)
        p.sock.close()         # no QUIT: no UPDATE state
        p.file.close()
        p = self.login_when_free()
        self.assertEqual(p.stat()[0], 1)
        p.quit()

    def test_wrong_password(self):
        p = poplib.POP3("127.0.0.1", self.pop_port, timeout=30)
        p.user("alice")
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_("wrong")
        self.assertTrue(cm.exception.args[0].startswith(b"-ERR"), cm.exception.args)
        p.user("nosuchuser")
        with self.assertRaises(poplib.error_proto):
            p.pass_("whatever")
        p.quit()
        self.assertIn("event=pop3_login", self.d.log_text())

    def test_second_session_in_use(self):
        self.deliver("locked")
        p1 = self.login()
        p2 = poplib.POP3("127.0.0.1", self.pop_port, timeout=30)
        p2.user("alice")
        with self.assertRaises(poplib.error_proto) as cm:
            p2.pass_(USERS["alice"])
        self.assertIn(b"[IN-USE]", cm.exception.args[0])
        p2.close()
        # Another user's mailbox is not affected.
        p3 = self.login("bob")
        self.assertEqual(p3.stat()[0], 0)
        p3.quit()
        p1.quit()

    def test_top(self):
        self.deliver("top", lines=("one", "two", ".three", "four"))
        p = self.login()
        _, lines, _ = p.top(1, 2)
        blank = lines.index(b"")
        self.assertIn(b"Subject: top", lines[:blank])
        self.assertEqual(lines[blank + 1:], [b"one", b"two"])
        _, lines, _ = p.top(1, 3)
        self.assertEqual(lines[lines.index(b"") + 1:], [b"one", b"two", b".three"])
        p.quit()

    def test_unknown_local_user_rejected_at_rcpt(self):
        with smtplib.SMTP(self.d.host, self.d.port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("sender@src.test")
            code, resp = s.rcpt("nobody@local.test")
            self.assertEqual(code, 550, resp)
            self.assertIn(b"5.1.1", resp)
            code, resp = s.rcpt("Alice+news@LOCAL.test")
            self.assertEqual(code, 250, resp)
            s.rset()

    def test_sighup_reloads_users(self):
        r = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "users", "add",
                            "--file", self.users_file, "carol"],
                           input="carol-pw\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.send_signal(signal.SIGHUP)

        def carol_accepted():
            with smtplib.SMTP(self.d.host, self.d.port, timeout=30) as s:
                s.ehlo("client.test")
                s.mail("sender@src.test")
                code, _ = s.rcpt("carol@local.test")
                s.rset()
                return code == 250
        self.assertTrue(wait_for(carol_accepted, timeout=20), self.d.log_text()[-2000:])
        self.deliver("for carol", rcpt="carol@local.test")
        p = poplib.POP3("127.0.0.1", self.pop_port, timeout=30)
        p.user("carol")
        p.pass_("carol-pw")
        self.assertEqual(p.stat()[0], 1)
        p.quit()

    def test_curl(self):
        self.deliver("for curl", lines=("curl body line",))
        r = subprocess.run(["curl", "-sS", "--max-time", "30",
                            "pop3://127.0.0.1:%d/1" % self.pop_port, "-u", "alice:alice-pw"],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Subject: for curl", r.stdout)
        self.assertIn(b"curl body line", r.stdout)
        r = subprocess.run(["curl", "-sS", "--max-time", "30",
                            "pop3://127.0.0.1:%d/1" % self.pop_port, "-u", "alice:nope"],
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)

    def test_mpop(self):
        self.deliver("for mpop one")
        self.deliver("for mpop two")
        out = os.path.join(self.tmp, "fetched")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(out, sub))
        rc = os.path.join(self.tmp, "mpoprc")
        with open(rc, "w") as f:
            f.write("account default\nhost 127.0.0.1\nport %d\nuser alice\npassword %s\n"
                    "tls off\nauth user\ndelivery maildir %s\nuidls_file %s\n"
                    % (self.pop_port, USERS["alice"], out, os.path.join(self.tmp, "uidls")))
        os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)
        r = subprocess.run(["mpop", "-C", rc, "-q"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        fetched = sorted(glob.glob(os.path.join(out, "new", "*")))
        self.assertEqual(len(fetched), 2)
        subjects = set()
        for name in fetched:
            with open(name, "rb") as f:
                for line in f.read().splitlines():
                    if line.startswith(b"Subject: "):
                        subjects.add(line)
        self.assertEqual(subjects, {b"Subject: for mpop one", b"Subject: for mpop two"})
        # mpop deletes what it fetched (QUIT): the mailbox is empty now.
        p = self.login()
        self.assertEqual(p.stat()[0], 0)
        p.quit()

    def test_large_message_streams(self):
        lines = ["line %06d %s" % (i, "x" * 60) for i in range(20000)]   # about 1.4 MB
        lines[100] = ".a dot line"
        self.deliver("large", lines=lines)
        p = self.login()
        _, got, octets = p.retr(1)
        body = got[got.index(b"") + 1:]
        self.assertEqual(body, [x.encode() for x in lines])
        self.assertEqual(p.list(1).split()[2], str(octets).encode())
        p.quit()


class Pop3Quota(Pop3):
    """Over mailbox.quota: the delivery is deferred with 4.2.2, not lost."""
    EXTRA = {"mailbox": {"quota": 1024}}

    def test_quota_defers(self):
        self.deliver("fits")
        line = self.deliver("too big", lines=["y" * 70] * 40, status="deferred")
        self.assertIn("dsn=4.2.2", line)
        p = self.login()
        self.assertEqual(p.stat()[0], 1)
        p.quit()


def load_tests(loader, tests, pattern):
    """Only Pop3Quota's own test runs in Pop3Quota."""
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(Pop3))
    suite.addTest(Pop3Quota("test_quota_defers"))
    return suite


if __name__ == "__main__":
    unittest.main(verbosity=2)
