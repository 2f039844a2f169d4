"""test_listeners - listeners with roles (issues 6 and 7): implicit-TLS SMTP
(smtps.listen, RFC 8314) with curl and smtplib.SMTP_SSL; submission
(submission.listen, RFC 6409): MAIL before AUTH gets 530 5.7.0, after
STARTTLS and AUTH 250; POP3 STLS (RFC 2595) with poplib and openssl
s_client -starttls pop3; implicit-TLS POP3 (pop3s.listen) with
poplib.POP3_SSL and curl; a plaintext client on an implicit-TLS port gets
no greeting; implicit TLS without a certificate is a config error.

Certificates are made at test time with openssl; the users file with
ringmailctl (passwords on stdin). No timing asserts.
"""
import os
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import (DaemonTestCase, RawClient, queue_id_of,  # noqa: E402
                            send_smtplib, wait_for)
from test_starttls import (client_context, make_cert,  # noqa: E402
                           read_until_close_notify, strict_eof_wrap)

USERS = {"alice": "alice-pw"}


def message(subject):
    return ("From: sender@src.test\r\nTo: alice@local.test\r\nSubject: %s\r\n\r\nhello\r\n"
            % subject).encode()


class Listeners(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmail-listeners-")
        cls.cert, cls.key = make_cert(cls.certs, "l", "relay.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

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
        self.smtps_port = harness.free_port()
        self.sub_port = harness.free_port()
        self.pop_port = harness.free_port()
        self.pops_port = harness.free_port()
        self.d = self.daemon(extra={
            "tls": {"cert_file": self.cert, "key_file": self.key},
            "users": {"file": self.users_file},
            "local_domains": ["local.test"],
            "mailbox": {"root": self.root},
            "smtps": {"listen": ["127.0.0.1:%d" % self.smtps_port]},
            "submission": {"listen": ["127.0.0.1:%d" % self.sub_port]},
            "pop3": {"listen": ["127.0.0.1:%d" % self.pop_port]},
            "pop3s": {"listen": ["127.0.0.1:%d" % self.pops_port]},
        })
        for port in (self.smtps_port, self.sub_port, self.pop_port, self.pops_port):
            harness.wait_port("127.0.0.1", port)

    def tearDown(self):
        if self.d.proc is not None:
            self.finish(self.d)
        super().tearDown()

    def queued_line(self, qid=None, sender=None):
        """queued_line - the log line of a queued message, by id or sender."""
        want = ("event=queued id=%s " % qid) if qid else ("from=<%s>" % sender)
        lines = wait_for(lambda: [x for x in self.d.log_text().splitlines()
                                  if "event=queued" in x and want in x])
        self.assertTrue(lines, "nothing queued (%s)\n%s" % (want, self.d.log_text()[-2000:]))
        return lines[0]

    def deliver_local(self, subject):
        """deliver_local - a message for alice over plain SMTP, delivered."""
        qid = send_smtplib(self.d, "sender@src.test", ["alice@local.test"], message(subject))
        want = "event=delivery id=%s rcpt=<alice@local.test>" % qid
        line = wait_for(lambda: [x for x in self.d.log_text().splitlines() if want in x])
        self.assertTrue(line, "no local delivery of %s\n%s" % (qid, self.d.log_text()[-2000:]))
        self.assertIn("status=delivered", line[0])

    # --- SMTP ------------------------------------------------------------

    def test_curl_smtps(self):
        body = os.path.join(self.tmp, "mail.txt")
        with open(body, "wb") as f:
            f.write(b"From: curl@src.test\r\nSubject: curl smtps\r\n\r\nover implicit tls\r\n")
        out = subprocess.run(
            ["curl", "-sS", "--ssl-reqd", "--insecure", "smtps://127.0.0.1:%d" % self.smtps_port,
             "--mail-from", "curl@src.test", "--mail-rcpt", "rcpt@dest.test", "-T", body],
            capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        line = self.queued_line(sender="curl@src.test")
        qid = line.split("id=")[1].split()[0]
        record = self.spooled(self.d, qid)["record"]
        self.assertIn(b"over implicit tls", record["body"])
        self.assertRegex(self.d.log_text(), r"event=tls client=\S+ protocol=TLSv1\.2 cipher=\S+ "
                         r"resumed=0 implicit=1")

    def test_smtplib_smtp_ssl(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, timeout=30,
                              context=client_context()) as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertEqual(s.sock.version(), "TLSv1.2")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered under implicit TLS")
            self.assertTrue(s.has_extn("auth"), "AUTH not offered under implicit TLS")
            s.login("alice", USERS["alice"])
            code, resp = s.mail("alice@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("x@dest.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.data(b"Subject: smtp_ssl\r\n\r\nhi\r\n")
            self.assertEqual(code, 250, resp)
            qid = queue_id_of(resp)
        line = self.queued_line(qid=qid)
        self.assertIn("auth=alice", line)

    def test_plaintext_client_on_smtps_gets_no_greeting(self):
        c = RawClient("127.0.0.1", self.smtps_port)
        c.send(b"EHLO plain.test\r\n")
        data = c.read_until_closed()
        c.close()
        self.assertFalse(data.startswith(b"220"), "greeting in clear: %r" % data[:100])
        self.assertIn("event=tls_failed", self.d.log_text())

    def test_submission_requires_auth(self):
        with smtplib.SMTP("127.0.0.1", self.sub_port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"), "submission without STARTTLS")
            code, resp = s.mail("alice@src.test")
            self.assertEqual((code, resp[:5]), (530, b"5.7.0"), resp)
            s.starttls(context=client_context())
            s.ehlo("client.test")
            code, resp = s.mail("alice@src.test")
            self.assertEqual(code, 530, resp)
            s.rset()
            s.login("alice", USERS["alice"])
            code, resp = s.mail("alice@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("x@dest.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.data(b"Subject: submission\r\n\r\nhi\r\n")
            self.assertEqual(code, 250, resp)
            qid = queue_id_of(resp)
        self.assertIn("auth=alice", self.queued_line(qid=qid))

    def test_plain_listen_unchanged(self):
        # The trusted loopback client still relays without AUTH on "listen".
        qid = send_smtplib(self.d, "a@src.test", ["b@dest.test"], b"Subject: plain\r\n\r\nhi\r\n")
        self.queued_line(qid=qid)

    # --- POP3 ------------------------------------------------------------

    def test_poplib_stls(self):
        self.deliver_local("over stls")
        p = poplib.POP3("127.0.0.1", self.pop_port, timeout=30)
        self.assertIn("STLS", p.capa())
        with self.assertRaises(poplib.error_proto) as cm:
            p.user("alice")      # pop3.allow_plaintext is false
        self.assertIn(b"Plaintext", cm.exception.args[0])
        p.stls(context=client_context())
        self.assertNotIn("STLS", p.capa())
        p.user("alice")
        p.pass_(USERS["alice"])
        self.assertEqual(p.stat()[0], 1)
        lines = p.retr(1)[1]
        self.assertIn(b"Subject: over stls", lines)
        p.quit()
        self.assertIn("event=pop3_tls", self.d.log_text())

    def test_stls_discards_plaintext_injection(self):
        # CVE-2011-0411 class: USER pipelined in clear after STLS must not
        # count once TLS is up, so PASS under TLS has no user.
        c = RawClient("127.0.0.1", self.pop_port)
        self.assertTrue(c.read_line().startswith(b"+OK"))
        c.send(b"STLS\r\nUSER alice\r\n")
        self.assertTrue(c.read_line().startswith(b"+OK"))
        tls = client_context().wrap_socket(c.sock)
        tls.sendall(b"PASS " + USERS["alice"].encode() + b"\r\n")
        reply = tls.recv(4096)
        self.assertTrue(reply.startswith(b"-ERR"), reply)
        tls.sendall(b"USER alice\r\nPASS " + USERS["alice"].encode() + b"\r\n")
        got = b""
        while got.count(b"\r\n") < 2:
            chunk = tls.recv(4096)
            self.assertTrue(chunk, "closed after %r" % got)
            got += chunk
        self.assertEqual([x[:3] for x in got.split(b"\r\n")[:2]], [b"+OK", b"+OK"], got)
        tls.sendall(b"QUIT\r\n")
        tls.close()

    def test_poplib_pop3_ssl(self):
        self.deliver_local("over pop3s")
        p = poplib.POP3_SSL("127.0.0.1", self.pops_port, timeout=30, context=client_context())
        self.assertNotIn("STLS", p.capa())
        p.user("alice")
        p.pass_(USERS["alice"])
        self.assertEqual(p.stat()[0], 1)
        self.assertIn(b"Subject: over pop3s", p.retr(1)[1])
        p.quit()

    def test_close_notify_after_quit(self):
        # RFC 5246 7.2.1 on the implicit-TLS ports: after the goodbye the
        # server sends close_notify before it closes (SMTPS 221, POP3S +OK).
        tls = strict_eof_wrap(socket.create_connection(("127.0.0.1", self.smtps_port), timeout=30))
        tls.sendall(b"EHLO close.test\r\nQUIT\r\n")
        got = read_until_close_notify(self, tls)
        self.assertTrue(got.startswith(b"220 ") and got.endswith(b"221 2.0.0 Bye\r\n"), got)
        tls.close()
        tls = strict_eof_wrap(socket.create_connection(("127.0.0.1", self.pops_port), timeout=30))
        tls.sendall(b"QUIT\r\n")
        got = read_until_close_notify(self, tls)
        self.assertTrue(got.startswith(b"+OK") and got.count(b"\r\n+OK") == 1, got)
        tls.close()

    def test_curl_pop3s(self):
        self.deliver_local("curl pop3s")
        out = subprocess.run(["curl", "-sS", "--insecure", "pop3s://127.0.0.1:%d/1" % self.pops_port,
                              "-u", "alice:" + USERS["alice"]],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"Subject: curl pop3s", out.stdout)
        out = subprocess.run(["curl", "-sS", "--insecure", "pop3s://127.0.0.1:%d/1" % self.pops_port,
                              "-u", "alice:wrong"], capture_output=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)

    def test_s_client_starttls_pop3(self):
        self.deliver_local("s_client")
        out = subprocess.run(
            ["openssl", "s_client", "-starttls", "pop3", "-connect", "127.0.0.1:%d" % self.pop_port,
             "-crlf", "-ign_eof"],
            input=b"USER alice\nPASS " + USERS["alice"].encode() + b"\nSTAT\nQUIT\n",
            capture_output=True, timeout=60)
        text = out.stdout + out.stderr
        self.assertIn(b"Protocol  : TLSv1.2", text, text[-3000:])
        self.assertIn(b"+OK 1 ", text, text[-3000:])
        self.assertNotIn(b"-ERR", text, text[-3000:])


class StalledHandshakes(Listeners):
    """A client that connects to an implicit-TLS port (or sends STLS) and
    then never finishes the handshake is closed by the command timer, with
    nothing said in clear; the worker goes on serving others."""
    TIMEOUTS = {"smtp": {"command_timeout": "1s"}, "pop3": {"command_timeout": "1s"}}

    def daemon(self, extra=None, workers=2):
        for key, value in self.TIMEOUTS.items():
            extra.setdefault(key, {}).update(value)
        return super().daemon(extra, workers)

    def test_stalled_handshakes_are_closed(self):
        stalled = []
        for port in (self.smtps_port, self.pops_port):
            c = RawClient("127.0.0.1", port)
            c.send(b"\x16\x03\x01")        # the start of a record, then nothing
            stalled.append(c)
        c = RawClient("127.0.0.1", self.pop_port)
        self.assertTrue(c.read_line().startswith(b"+OK"))
        c.send(b"STLS\r\n")
        self.assertTrue(c.read_line().startswith(b"+OK"))
        stalled.append(c)
        for c in stalled:
            self.assertEqual(c.read_until_closed(timeout=60), b"")
            c.close()
        # Others are still served.
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, timeout=30,
                              context=client_context()) as s:
            self.assertEqual(s.noop()[0], 250)
        text = self.d.log_text()
        self.assertIn("event=timeout", text)
        self.assertIn("phase=tls_handshake", text)

    def test_stop_during_handshake(self):
        c = RawClient("127.0.0.1", self.smtps_port)
        c2 = RawClient("127.0.0.1", self.pops_port)
        self.finish(self.d)      # exit 0, nothing left behind
        c.close()
        c2.close()


def load_tests(loader, tests, pattern):
    """StalledHandshakes runs only its own tests."""
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(Listeners))
    for name in ("test_stalled_handshakes_are_closed", "test_stop_during_handshake"):
        suite.addTest(StalledHandshakes(name))
    suite.addTests(loader.loadTestsFromTestCase(ImplicitTlsNeedsCertificate))
    return suite


class ImplicitTlsNeedsCertificate(unittest.TestCase):
    def test_config_error_names_key(self):
        tmp = tempfile.mkdtemp(prefix="ringmail-listeners-")
        try:
            for key in ("smtps", "pop3s"):
                d = harness.Ringmaild(workers=1, tmp=tmp, extra={
                    key: {"listen": ["127.0.0.1:%d" % harness.free_port()]}})
                d.write_config()
                out = subprocess.run([os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
                                     capture_output=True, timeout=30)
                self.assertNotEqual(out.returncode, 0)
                self.assertIn(key.encode() + b".listen needs tls.cert_file", out.stdout + out.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
