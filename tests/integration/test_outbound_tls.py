#!/usr/bin/python3
"""test_outbound_tls - outbound STARTTLS under each delivery.tls policy.

Receivers are aiosmtpd with a tls_context (STARTTLS, RFC 3207), a plain
aiosmtpd, and a small socket server whose STARTTLS handshake always breaks.
Certificates are made at test time with openssl: a test CA signs the
certificate of mx.tls.test; a second CA signs nothing we meet, so "verify"
with it must fail. Every process is stopped by PID; ringmaild must exit 0
without sanitizer reports. No timing asserts.
"""
import os
import socket
import ssl
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402

MX = "mx.tls.test"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def make_pki(tmp):
    """make_pki - {ca, other_ca, cert, key} paths: a CA, a server
    certificate for MX signed by it (SAN DNS:MX), and an unrelated CA."""
    d = os.path.join(tmp, "pki")
    os.makedirs(d)
    for name in ("ca", "other"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
                "-subj", "/CN=ringmail test %s" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + MX, cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % MX)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return {"ca": os.path.join(d, "ca.pem"), "other_ca": os.path.join(d, "other.pem"),
            "cert": os.path.join(d, "server.pem"), "key": os.path.join(d, "server.key")}


class TLSRecorder(mailnet.RecordingHandler):
    """TLSRecorder - also notes, per message, whether it came over TLS."""

    def __init__(self):
        super().__init__()
        self.over_tls = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.over_tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


class TLSReceiver(mailnet.Receiver):
    """TLSReceiver - aiosmtpd offering STARTTLS with ctx."""

    def __init__(self, ip, port, ctx):
        self.handler = TLSRecorder()
        self.controller = Controller(self.handler, hostname=ip, port=port,
                                     server_hostname=MX, ready_timeout=10, tls_context=ctx)
        self.ip, self.port = ip, port


class BrokenTLS(mailnet.LineServer):
    """BrokenTLS - an SMTP server that offers STARTTLS, answers 220 and then
    sends garbage (mode "garbage") or hangs up (mode "close"), or sends
    cleartext right behind the 220 (mode "inline"), or refuses
    it with 454 (mode "refuse"); without STARTTLS it takes mail like any
    server and keeps it."""

    def __init__(self, ip, port, mode):
        self.mode = mode
        self.starttls = 0
        self.messages = []
        super().__init__(ip, port, backlog=16)

    @property
    def connections(self):
        with self.lock:
            return len(self.accepted)

    def serve(self, c):
        data = None
        try:
            c.sendall(b"220 broken.tls.test ESMTP\r\n")
            for line in self.lines(c):
                if data is not None:
                    if line == b".":
                        with self.lock:
                            self.messages.append(b"\r\n".join(data) + b"\r\n")
                        data = None
                        c.sendall(b"250 2.0.0 stored\r\n")
                    else:
                        data.append(line)
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-broken.tls.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                elif verb == b"STAR":
                    with self.lock:
                        self.starttls += 1
                    if self.mode == "refuse":
                        c.sendall(b"454 4.7.0 TLS not available now\r\n")
                        continue
                    if self.mode == "inline":    # cleartext in the same segment
                        c.sendall(b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
                        return
                    c.sendall(b"220 2.0.0 go ahead\r\n")
                    if self.mode == "garbage":
                        c.sendall(b"this is not a TLS record at all\r\n" * 8)
                    return
                elif verb == b"DATA":
                    data = []
                    c.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            c.close()

    def snapshot(self):
        with self.lock:
            return list(self.messages), self.starttls


class CloseNotifyReceiver(mailnet.LineServer):
    """CloseNotifyReceiver - a STARTTLS receiver on Python's ssl that notes
    how each TLS session ended after its 221: "close_notify" (the client's
    alert came, RFC 5246 7.2.1) or "eof" (a bare EOF). OpenSSL 3's
    OP_IGNORE_UNEXPECTED_EOF and suppress_ragged_eofs are off, else both
    would read as b""."""

    def __init__(self, ip, port, ctx):
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self.ctx = ctx
        self.ends = []
        self.messages = 0
        super().__init__(ip, port, backlog=16)

    @staticmethod
    def read_line(s, state):
        while b"\r\n" not in state[0]:
            chunk = s.recv(4096)
            if not chunk:
                return None
            state[0] += chunk
        line, _, state[0] = state[0].partition(b"\r\n")
        return line

    def serve(self, c):
        c.settimeout(30)
        s, state, data = c, [b""], None
        try:
            s.sendall(b"220 %s ESMTP\r\n" % MX.encode())
            while True:
                line = self.read_line(s, state)
                if line is None:
                    return
                if data is not None:
                    if line == b".":
                        data = None
                        with self.lock:
                            self.messages += 1
                        s.sendall(b"250 2.0.0 stored\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    s.sendall(b"250-%s\r\n250-PIPELINING\r\n%s" % (
                        MX.encode(), b"250 STARTTLS\r\n" if s is c else b"250 8BITMIME\r\n"))
                elif verb == b"STAR" and s is c:
                    s.sendall(b"220 2.0.0 go ahead\r\n")
                    s, state = self.ctx.wrap_socket(c, server_side=True,
                                                    suppress_ragged_eofs=False), [b""]
                elif verb == b"DATA":
                    data = []
                    s.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    s.sendall(b"221 2.0.0 bye\r\n")
                    try:
                        end = "close_notify" if s.recv(4096) == b"" else "data"
                    except ssl.SSLError:
                        end = "eof"
                    with self.lock:
                        self.ends.append(end)
                    return
                else:
                    s.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            if s is not c:
                s.close()
            c.close()


class OutboundTLS(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.pki = make_pki(self.tmp)
        self.net = mailnet.Addresses(1)
        zone = mailnet.mx_zone("tls.test", [(10, MX, self.net.ips[0])])
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, zone))

    def server_ctx(self, tls13_only=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki["cert"], self.pki["key"])
        if tls13_only:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3   # mbedTLS 2.28 has 1.2 only
        return ctx

    def relay_for(self, policy, ca=None):
        extra = mailnet.relay_settings(self.net.port, self.dns.ns, tls=policy,
                                       tls_ca_file=ca if ca is not None else self.pki["ca"])
        return self.relay(extra)

    def send(self, d, rcpt="bob@tls.test", mid="tls@client.test"):
        msg = mailnet.make_message(mid, "alice@client.test", [rcpt])
        mailnet.submit(d.host, d.port, [("alice@client.test", [rcpt], msg, [], [])],
                       connections=1)

    def delivered_over_tls(self, policy, ca=None):
        rcv = self.started(TLSReceiver(self.net.ips[0], self.net.port, self.server_ctx()))
        d = self.relay_for(policy, ca)
        self.send(d)
        lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls),
                              60, "a delivery")
        text = self.stop_relay(d)
        got = rcv.handler.snapshot()
        self.assertEqual(len(got), 1, text[-3000:])
        self.assertIn(b"Message-ID: <tls@client.test>", got[0].content)
        self.assertEqual(rcv.handler.over_tls, [True], "the receiver saw no TLS")
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0]["tls"], r"^TLSv1\.2/TLS-ECDHE-", lines[0])
        self.assertEqual(lines[0]["mx"], MX)
        self.assertEqual(len(mailnet.events(text, "delivery_tls")), 1, text[-3000:])
        return text

    def test_close_notify_after_quit(self):
        # The pooled session is closed after delivery.idle_timeout with QUIT;
        # after the 221 ringmaild ends the TLS session with close_notify.
        rcv = self.started(CloseNotifyReceiver(self.net.ips[0], self.net.port, self.server_ctx()))
        d = self.relay_for("encrypt")
        self.send(d)
        self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls), 60, "a delivery")
        ended = mailnet.wait_until(lambda: list(rcv.ends) or None, 30)
        text = self.stop_relay(d)
        self.assertEqual(rcv.messages, 1, text[-3000:])
        self.assertEqual(ended, ["close_notify"], text[-3000:])

    def test_may_delivers_over_tls(self):
        text = self.delivered_over_tls("may")
        self.assertIn("policy=may", mailnet.events(text, "delivery_tls")[0])

    def test_encrypt_delivers_over_tls(self):
        self.delivered_over_tls("encrypt")

    def test_verify_with_the_right_ca_and_name_delivers(self):
        text = self.delivered_over_tls("verify")
        self.assertIn("verified=1", mailnet.events(text, "delivery_tls")[0])

    def deferred_not_sent(self, rcv, d, status, handler_messages):
        """deferred_not_sent - the first attempt is deferred with status and
        the receiver got no mail (and, for aiosmtpd, no MAIL command)."""
        self.send(d)
        lines = self.wait_log(d, lambda ls: any(x["status"] == "deferred" for x in ls),
                              60, "a deferral")
        text = self.stop_relay(d)
        self.assertEqual([x for x in lines if x["status"] == "delivered"], [], lines)
        first = [x for x in lines if x["status"] == "deferred"][0]
        self.assertEqual(first["dsn"], status, first)
        self.assertEqual(handler_messages(), [], "mail went out in clear")
        self.assertEqual(rcv.handler.rcpt_attempts, {}, "the envelope went out")
        return first, text

    def test_verify_with_another_ca_is_deferred_not_sent(self):
        rcv = self.started(TLSReceiver(self.net.ips[0], self.net.port, self.server_ctx()))
        d = self.relay_for("verify", ca=self.pki["other_ca"])
        first, text = self.deferred_not_sent(rcv, d, "4.7.5", rcv.handler.snapshot)
        self.assertIn("TLS failed", first["reply"])
        self.assertTrue(any("result=tls_failed" in x and "next=next_host" in x
                            for x in mailnet.events(text, "delivery_connection")), text[-3000:])

    def test_encrypt_against_a_plaintext_receiver_is_deferred_not_sent(self):
        rcv = self.started(mailnet.Receiver(self.net.ips[0], self.net.port))
        d = self.relay_for("encrypt")
        first, text = self.deferred_not_sent(rcv, d, "4.7.4", rcv.handler.snapshot)
        self.assertIn("STARTTLS not offered", first["reply"])
        self.assertGreaterEqual(rcv.handler.quits, 1, "no QUIT")

    def test_none_never_starts_tls(self):
        rcv = self.started(TLSReceiver(self.net.ips[0], self.net.port, self.server_ctx()))
        d = self.relay_for("none")
        self.send(d)
        lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls),
                              60, "a delivery")
        self.stop_relay(d)
        self.assertEqual(rcv.handler.over_tls, [False])
        self.assertEqual(lines[0]["tls"], "none", lines[0])

    def test_may_retries_in_clear_when_the_handshake_fails(self):
        # aiosmtpd offering TLS 1.3 only: the handshake fails on versions.
        rcv = self.started(TLSReceiver(self.net.ips[0], self.net.port,
                                       self.server_ctx(tls13_only=True)))
        d = self.relay_for("may")
        self.send(d)
        lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls),
                              60, "a delivery")
        text = self.stop_relay(d)
        self.assertEqual(rcv.handler.over_tls, [False])
        self.assertEqual([x["tls"] for x in lines], ["none"], lines)
        self.assertTrue(any("result=tls_failed" in x and "next=retry_without_tls" in x
                            for x in mailnet.events(text, "delivery_connection")), text[-3000:])

    def test_may_retries_in_clear_after_garbage_or_hang_up(self):
        for mode in ("garbage", "close", "inline"):
            with self.subTest(mode=mode):
                net = mailnet.Addresses(1)
                zone = mailnet.mx_zone("tls.test", [(10, MX, net.ips[0])])
                dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
                srv = self.started(BrokenTLS(net.ips[0], net.port, mode))
                d = self.relay(mailnet.relay_settings(net.port, dns.ns, tls="may"))
                self.send(d, mid="broken-%s@client.test" % mode)
                lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls),
                                      60, "a delivery")
                text = self.stop_relay(d)
                messages, starttls = srv.snapshot()
                self.assertEqual(len(messages), 1, text[-3000:])
                self.assertIn(b"broken-%s@client.test" % mode.encode(), messages[0])
                self.assertEqual(starttls, 1, "STARTTLS once, then in clear")
                self.assertEqual([x["tls"] for x in lines], ["none"], lines)
                self.assertEqual(lines[0]["attempt"], "1", lines)
                srv.stop()
                dns.stop()

    def test_refused_starttls_goes_on_in_clear_under_may_and_defers_under_encrypt(self):
        for policy in ("may", "encrypt"):
            with self.subTest(policy=policy):
                net = mailnet.Addresses(1)
                zone = mailnet.mx_zone("tls.test", [(10, MX, net.ips[0])])
                dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
                srv = self.started(BrokenTLS(net.ips[0], net.port, "refuse"))
                d = self.relay(mailnet.relay_settings(net.port, dns.ns, tls=policy))
                self.send(d, mid="refused-%s@client.test" % policy)
                want = "delivered" if policy == "may" else "deferred"
                lines = self.wait_log(d, lambda ls: any(x["status"] == want for x in ls),
                                      60, "a %s line" % want)
                text = self.stop_relay(d)
                messages, starttls = srv.snapshot()
                self.assertTrue(any("result=starttls_refused" in x
                                    for x in mailnet.events(text, "delivery_connection")),
                                text[-3000:])
                if policy == "may":
                    self.assertEqual(len(messages), 1, text[-3000:])
                    self.assertEqual(starttls, 1)
                    self.assertEqual(srv.connections, 1, "went on over the same connection")
                    self.assertEqual([x["tls"] for x in lines], ["none"], lines)
                else:
                    self.assertEqual(messages, [], "mail went out in clear")
                    self.assertEqual(lines[0]["dsn"], "4.7.4", lines[0])
                    self.assertIn("STARTTLS refused", lines[0]["reply"])
                srv.stop()
                dns.stop()


if __name__ == "__main__":
    unittest.main()
