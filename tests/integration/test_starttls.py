"""test_starttls - inbound STARTTLS in ringmaild (issue 6, RFC 3207): openssl
s_client, Python smtplib, swaks, the plaintext injection case (CVE-2011-0411),
STARTTLS twice, a client that stops mid-handshake, a bad certificate refused
at start, and certificates re-read on SIGHUP. Then SMTP AUTH (RFC 4954) under
TLS: swaks --tls --auth, smtplib login, wrong password, AUTH before TLS,
the failure rate limit, and relaying by authenticated clients.

Certificates are made at test time with openssl. No timing asserts.
"""
import base64
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import (DaemonTestCase, RawClient, queue_id_of,  # noqa: E402
                            split_received, wait_for)


def make_cert(directory, name, cn):
    """make_cert - a self-signed P-256 certificate and key; returns the paths."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=" + cn],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def strict_eof_wrap(sock):
    """strict_eof_wrap - a TLS client socket on which an EOF without the
    server's close_notify raises ssl.SSLError (UNEXPECTED_EOF_WHILE_READING).
    Python's defaults hide exactly that: OpenSSL 3's OP_IGNORE_UNEXPECTED_EOF
    and suppress_ragged_eofs both make a bare EOF read as b""."""
    ctx = client_context()
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    tls = ctx.wrap_socket(sock, server_hostname="relay.test", suppress_ragged_eofs=False)
    tls.settimeout(30)
    return tls


def read_until_close_notify(test, tls):
    """read_until_close_notify - everything the server sends until it ends
    the TLS session with close_notify (RFC 5246 7.2.1); fails the test on a
    bare EOF."""
    got = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLError as e:
            test.fail("EOF without close_notify after %r: %s" % (got[-300:], e))
        if not chunk:
            return got
        got += chunk


def s_client_starttls(port, script, extra=()):
    """s_client_starttls - openssl s_client -starttls smtp, feeding script
    (the handshake summary is in the output); -ign_eof: it runs until
    the server closes after QUIT."""
    out = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % port,
         "-crlf", "-ign_eof", *extra],
        input=script, capture_output=True, timeout=60)
    return out.stdout + out.stderr


class StartTls(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmail-starttls-")
        cls.cert, cls.key = make_cert(cls.certs, "a", "relay.test")
        cls.cert2, cls.key2 = make_cert(cls.certs, "b", "reloaded.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def tls_daemon(self, extra=None, workers=2):
        settings = {"tls": {"cert_file": self.cert, "key_file": self.key}}
        settings.update(extra or {})
        return self.daemon(settings, workers=workers)

    def spool_bodies(self, d, qid):
        return self.spooled(d, qid)["record"]["body"]

    def test_not_offered_without_certificate(self):
        d = self.daemon()
        c = RawClient(d.host, d.port)
        c.reply()
        code, text = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", text)
        code, text = c.cmd("STARTTLS")
        self.assertEqual((code, text[0][:5]), (454, "4.7.0"), text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()
        self.finish(d)

    def test_s_client(self):
        d = self.tls_daemon()
        out = s_client_starttls(d.port, b"EHLO sclient.test\nQUIT\n")
        self.assertIn(b"Protocol  : TLSv1.2", out, out[-3000:])
        self.assertIn(b"250-relay.test", out, out[-3000:])
        self.assertIn(b"250 DSN", out, out[-3000:])
        self.assertIn(b"221 2.0.0", out, out[-3000:])
        # Under TLS STARTTLS is no longer offered.
        after = out.split(b"250-relay.test")[-1]
        self.assertNotIn(b"STARTTLS", after)
        self.finish(d)
        self.assertRegex(d.log_text(), r"event=tls client=\S+ protocol=TLSv1\.2 cipher=\S+")

    def test_close_notify_after_quit(self):
        # RFC 5246 7.2.1: the server ends the TLS session with close_notify
        # before closing, so its EOF is not a truncation: Python's ssl then
        # reads b"" instead of raising SSLEOFError, and s_client reports no
        # unexpected EOF.
        d = self.tls_daemon()
        c = RawClient(d.host, d.port)
        c.reply()
        c.cmd("EHLO close.test")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        tls = strict_eof_wrap(c.sock)
        tls.sendall(b"EHLO close.test\r\nQUIT\r\n")
        got = read_until_close_notify(self, tls)
        self.assertTrue(got.endswith(b"221 2.0.0 Bye\r\n"), got)
        tls.close()
        out = s_client_starttls(d.port, b"EHLO sclient.test\nQUIT\n")
        self.assertIn(b"221 2.0.0", out, out[-3000:])
        self.assertNotIn(b"unexpected eof", out.lower(), out[-400:])
        self.finish(d)

    def test_smtplib_starttls_and_send(self):
        d = self.tls_daemon()
        body = b"Subject: over tls\r\n\r\nsecret\r\n"
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=client_context())
            self.assertEqual(code, 220)
            self.assertEqual(s.sock.version(), "TLSv1.2")
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("starttls"))
            code, resp = s.mail("a@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("b@dest.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.data(body)
            self.assertEqual(code, 250, resp)
            qid = queue_id_of(resp)
        stored = self.spool_bodies(d, qid)
        header, rest = split_received(stored)
        self.assertIn(b"with ESMTPS id " + qid.encode(), header)
        self.assertEqual(rest, body)
        self.finish(d)

    def test_large_message_over_tls(self):
        # Several TLS records each way, and the reply pipelining path.
        d = self.tls_daemon()
        body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 300
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            refused = s.sendmail("a@src.test", ["b@dest.test", "c@dest.test"], body)
            self.assertEqual(refused, {})
        self.finish(d)

    def test_swaks_tls(self):
        d = self.tls_daemon()
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--tls",
             "--from", "a@src.test", "--to", "b@dest.test", "--helo", "swaks.test",
             "--body", "via swaks"], capture_output=True, timeout=60)
        text = out.stdout.decode("utf-8", "replace")
        self.assertEqual(out.returncode, 0, text + out.stderr.decode("utf-8", "replace"))
        self.assertIn("TLS started", text)
        self.assertRegex(text, r"250 2\.0\.0 Ok: queued as")
        self.finish(d)

    def test_plaintext_injection_is_discarded(self):
        d = self.tls_daemon()
        raw = socket.create_connection((d.host, d.port), timeout=20)
        f = raw.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220 "))
        raw.sendall(b"EHLO attacker.test\r\n")
        while True:
            line = f.readline()
            if line.startswith(b"250 "):
                break
        # One write: the RSET must be neither answered in clear nor run.
        raw.sendall(b"STARTTLS\r\nRSET\r\n")
        self.assertEqual(f.readline(), b"220 2.0.0 Ready to start TLS\r\n")
        with client_context().wrap_socket(raw, server_hostname="relay.test") as t:
            tf = t.makefile("rb")
            # The first reply under TLS is the answer to our first command
            # under TLS, not a 250 for the injected RSET; and the session
            # is back before EHLO (MAIL gets 503).
            t.sendall(b"MAIL FROM:<a@src.test>\r\n")
            self.assertEqual(tf.readline()[:9], b"503 5.5.1", "a reply to the injected RSET?")
            t.sendall(b"NOOP\r\n")
            self.assertEqual(tf.readline()[:3], b"250")
            t.sendall(b"QUIT\r\n")
            self.assertEqual(tf.readline()[:3], b"221")
        self.finish(d)

    def test_starttls_twice(self):
        d = self.tls_daemon()
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            code, resp = s.docmd("STARTTLS")
            self.assertEqual(code, 503, resp)
            self.assertTrue(resp.startswith(b"5.5.1"), resp)
            self.assertEqual(s.noop()[0], 250)
        self.finish(d)

    def test_stalled_handshake_is_closed(self):
        d = self.tls_daemon({"smtp": {"idle_timeout": "10s", "command_timeout": "1s"}},
                            workers=1)
        stuck = RawClient(d.host, d.port, timeout=60)
        stuck.reply()
        stuck.cmd("EHLO stuck.test")
        code, _ = stuck.cmd("STARTTLS")
        self.assertEqual(code, 220)
        # Half a ClientHello's worth of nothing: just stop. Meanwhile the
        # only worker still serves others, in clear and over TLS.
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.starttls(context=client_context())
            self.assertEqual(s.ehlo("other.test")[0], 250)
        data = stuck.read_until_closed(timeout=60)
        stuck.close()
        self.assertEqual(data, b"", "no cleartext may follow the 220")
        self.assertTrue(wait_for(lambda: "phase=tls_handshake" in d.log_text()),
                        d.log_text()[-2000:])
        self.finish(d)

    def test_garbage_handshake_is_closed(self):
        d = self.tls_daemon()
        c = RawClient(d.host, d.port, timeout=30)
        c.reply()
        c.cmd("EHLO bad.test")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.send(b"this is not a ClientHello\r\n" * 4)
        c.read_until_closed(timeout=30)
        c.close()
        self.assertTrue(wait_for(lambda: "event=tls_failed" in d.log_text()), d.log_text()[-2000:])
        self.finish(d)

    def test_bad_certificate_refused_at_start(self):
        bad = os.path.join(self.certs, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a certificate\n")
        tmp = tempfile.mkdtemp(dir=self.tmp)
        d = harness.Ringmaild(workers=1, tmp=tmp, extra={
            "tls": {"cert_file": bad, "key_file": self.key}})
        d.write_config()
        out = subprocess.run([os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
                             capture_output=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"tls.cert_file", out.stdout + out.stderr)

    def test_resumption_across_workers(self):
        d = self.tls_daemon(workers=2)
        sess = os.path.join(self.tmp, "session.pem")
        sess_id = os.path.join(self.tmp, "session-id.pem")
        out = s_client_starttls(d.port, b"QUIT\n", ["-sess_out", sess])
        self.assertIn(b"221 2.0.0", out, out[-2000:])
        reused = 0
        # Whichever worker gets each connection: one ticket key for all.
        for _ in range(4):
            out = s_client_starttls(d.port, b"QUIT\n", ["-sess_in", sess])
            reused += b"Reused, TLSv1.2" in out
        self.assertEqual(reused, 4)
        # Without tickets: the shared session-ID cache.
        out = s_client_starttls(d.port, b"QUIT\n", ["-no_ticket", "-sess_out", sess_id])
        for _ in range(4):
            out = s_client_starttls(d.port, b"QUIT\n", ["-no_ticket", "-sess_in", sess_id])
            self.assertIn(b"Reused, TLSv1.2", out, out[-2000:])
        self.finish(d)
        self.assertEqual(d.log_text().count("resumed=1"), 8, d.log_text()[-3000:])

    def test_reload_changes_certificate(self):
        d = self.tls_daemon()
        out = s_client_starttls(d.port, b"QUIT\n")
        self.assertIn(b"CN = relay.test", out, out[-2000:])
        d.settings["tls"] = {"cert_file": self.cert2, "key_file": self.key2}
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "result=ok" in d.log_text()), d.log_text()[-2000:])
        out = wait_for(lambda: (lambda o: o if b"CN = reloaded.test" in o else None)(
            s_client_starttls(d.port, b"QUIT\n")))
        self.assertIsNotNone(out)
        self.finish(d)


def sha512_crypt(password):
    """sha512_crypt - a $6$ hash from mkpasswd (package whois)."""
    out = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Auth(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("mkpasswd") is None:
            raise unittest.SkipTest("mkpasswd (package whois) is missing")
        cls.certs = tempfile.mkdtemp(prefix="ringmail-auth-")
        cls.cert, cls.key = make_cert(cls.certs, "a", "relay.test")
        cls.users = os.path.join(cls.certs, "users")
        with open(cls.users, "w") as f:
            f.write("# test users\nalice@src.test:{SHA512-CRYPT}%s\nbob:%s\n"
                    % (sha512_crypt("alice pw"), sha512_crypt("bob pw")))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def auth_daemon(self, smtp=None):
        # relay_networks empty: only authenticated clients may relay.
        settings = {"tls": {"cert_file": self.cert, "key_file": self.key},
                    "users": {"file": self.users}, "relay_networks": []}
        if smtp:
            settings["smtp"] = smtp
        return self.daemon(settings)

    def test_smtplib_login_relays(self):
        d = self.auth_daemon()
        body = b"Subject: authed\r\n\r\nhello\r\n"
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("auth"), "AUTH offered in clear")
            # Not authenticated: relaying is refused.
            s.mail("a@src.test")
            code, _ = s.rcpt("b@dest.test")
            self.assertEqual(code, 554)
            s.rset()
            s.starttls(context=client_context())
            s.ehlo("client.test")
            self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
            self.assertIn("LOGIN", s.esmtp_features.get("auth", ""))
            code, resp = s.login("alice@src.test", "alice pw")
            self.assertEqual(code, 235, resp)
            code, resp = s.mail("a@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("b@dest.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.data(body)
            self.assertEqual(code, 250, resp)
            qid = queue_id_of(resp)
        m = self.spooled(d, qid)
        self.assertEqual(m["record"]["auth_user"], "alice@src.test")
        header, rest = split_received(m["record"]["body"])
        self.assertIn(b"(Authenticated sender: alice@src.test)", header)
        self.assertIn(b"with ESMTPSA id", header)
        self.assertEqual(rest, body)
        self.finish(d)
        log = d.log_text()
        self.assertIn('user="alice@src.test" result=ok', log)
        self.assertIn("auth=alice@src.test", log)

    def test_login_mechanism(self):
        d = self.auth_daemon()
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            s.user, s.password = "bob", "bob pw"
            code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235, resp)
        self.finish(d)

    def test_swaks_tls_auth(self):
        d = self.auth_daemon()
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--tls",
             "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "bob pw",
             "--from", "bob@src.test", "--to", "x@elsewhere.test", "--helo", "swaks.test"],
            capture_output=True, timeout=60)
        text = out.stdout.decode("utf-8", "replace")
        self.assertEqual(out.returncode, 0, text + out.stderr.decode("utf-8", "replace"))
        self.assertIn("235 2.7.0", text)
        self.assertRegex(text, r"250 2\.0\.0 Ok: queued as")
        self.finish(d)

    def test_wrong_password_and_rate_limit(self):
        d = self.auth_daemon({"auth_max_failures": 2, "auth_failure_window": "1h"})
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            wrong = "PLAIN " + base64.b64encode(b"\0bob\0not it").decode()
            right = "PLAIN " + base64.b64encode(b"\0bob\0bob pw").decode()
            for _ in range(2):
                code, resp = s.docmd("AUTH", wrong)
                self.assertEqual(code, 535, resp)
                self.assertTrue(resp.startswith(b"5.7.8"), resp)
            # Over the budget: refused without checking, even when right.
            code, resp = s.docmd("AUTH", right)
            self.assertEqual(code, 454, resp)
            s.mail("bob@src.test")
            self.assertEqual(s.rcpt("x@elsewhere.test")[0], 554)
        self.finish(d)
        self.assertIn("reason=rate_limited", d.log_text())

    def test_rate_limit_holds_across_workers(self):
        # Issue 26: the budget was per worker; 16 wrong passwords from one
        # address over connections spread on 4 workers got 10 checks.
        settings = {"users": {"file": self.users}, "relay_networks": [],
                    "smtp": {"auth_plaintext": True, "auth_max_failures": 5,
                             "auth_failure_window": "1h"}}
        d = self.daemon(settings, workers=4)
        wrong = "PLAIN " + base64.b64encode(b"\0bob\0not it").decode()
        codes, lock = [], threading.Lock()

        def attempt():
            with smtplib.SMTP(d.host, d.port, timeout=60) as s:
                s.ehlo("client.test")
                code, _ = s.docmd("AUTH", wrong)
                with lock:
                    codes.append(code)
        threads = [threading.Thread(target=attempt) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with smtplib.SMTP(d.host, d.port, timeout=60) as s:
            s.ehlo("client.test")
            right = "PLAIN " + base64.b64encode(b"\0bob\0bob pw").decode()
            self.assertEqual(s.docmd("AUTH", right)[0], 454, "budget spent: refused unchecked")
        self.finish(d)
        self.assertEqual(sorted(codes), [454] * 11 + [535] * 5, codes)
        log = d.log_text()
        checked = [l for l in log.splitlines() if " event=auth " in l and "result=failed" in l
                   and "reason=" not in l]
        self.assertEqual(len(checked), 5, "password checks: %d" % len(checked))

    def test_auth_before_tls(self):
        d = self.auth_daemon()
        c = RawClient(d.host, d.port)
        c.reply()
        c.cmd("EHLO client.test")
        code, text = c.cmd("AUTH PLAIN AGJvYgBib2IgcHc=")
        self.assertEqual((code, text[0][:6]), (538, "5.7.11"), text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()
        self.finish(d)

    def test_auth_plaintext_allowed(self):
        d = self.auth_daemon({"auth_plaintext": True})
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("auth"))
            self.assertEqual(s.login("bob", "bob pw")[0], 235)
            s.mail("bob@src.test")
            code, resp = s.rcpt("x@elsewhere.test")
            self.assertEqual(code, 250, resp)
        self.finish(d)

    def test_client_gone_during_check(self):
        d = self.auth_daemon({"auth_plaintext": True})
        for _ in range(5):
            c = RawClient(d.host, d.port)
            c.reply()
            c.cmd("EHLO client.test")
            c.send(b"AUTH PLAIN AGJvYgBib2IgcHc=\r\n")
            c.close()
        self.assertTrue(wait_for(lambda: d.log_text().count("result=ok") >= 5), d.log_text()[-2000:])
        self.finish(d)


if __name__ == "__main__":
    unittest.main()
