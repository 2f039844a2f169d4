"""test_proxy_protocol - PROXY protocol v1 and v2 (issue 17) on chosen
listeners (proxy_protocol.listeners), with a real HAProxy in front.

HAProxy (Debian's) listens on free loopback ports and forwards to ringmaild
with send-proxy (v1) and send-proxy-v2 (v2), TCP mode, one frontend per
version plus one passing implicit TLS through to smtps.listen. Clients
connect to HAProxy from 127.0.0.5, the only address in relay_networks
besides 192.0.2.0/24 (used by the raw clients' headers): mail to a remote
domain is relayed only if ringmaild takes the client's address from the
header, and the spooled record's client address and Received header must
name 127.0.0.5, not HAProxy's 127.0.0.1. A client from 127.0.0.6 through
the same HAProxy is refused relaying.

Raw clients: a good v1 header with the first command in the same packet,
a good v2 header (with TLVs), v2 LOCAL (keeps the socket's peer); a bad
header, plain SMTP on a proxied port, an oversized v2 header, a header cut
short by the client's close and one never sent are closed without a
greeting, logged and counted in the metrics, and nothing is queued. The
listener without proxy protocol still serves SMTP as before. A proxied
POP3 listener logs a failed login under the header's client. HAProxy is
started by the test and stopped by its PID. No timing asserts.
"""
import os
import re
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import (DaemonTestCase, RawClient, closed_delivery,  # noqa: E402
                            queue_id_of, spool_messages, split_received, wait_for)
from test_starttls import client_context, make_cert  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT = "127.0.0.5"          # the original client, allowed to relay
STRANGER = "127.0.0.6"        # another client, not allowed to relay
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def body(subject):
    return ("From: app@src.test\r\nTo: user@remote.test\r\nSubject: %s\r\n\r\nhello\r\n"
            % subject).encode()


def v2_header(cmd, fam, block):
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(block)) + block


def v2_inet(src, sport, dst, dport, tlvs=b""):
    block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2_header(1, 0x11, block + tlvs)


class HAProxy:
    """HAProxy - a haproxy -db (foreground) with the given config text,
    stopped by its PID."""

    def __init__(self, tmp, config_text, ports):
        self.path = os.path.join(tmp, "haproxy.cfg")
        with open(self.path, "w") as f:
            f.write(config_text)
        check = subprocess.run([HAPROXY, "-c", "-f", self.path], capture_output=True, text=True,
                               timeout=60)
        if check.returncode != 0:
            raise AssertionError("haproxy -c: %s %s" % (check.stdout, check.stderr))
        self.log = open(os.path.join(tmp, "haproxy.log"), "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.path],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for port in ports:
            harness.wait_port("127.0.0.1", port, proc=self.proc)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()


class ProxyProtocol(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(HAPROXY, os.X_OK):
            raise unittest.SkipTest("haproxy is not installed (tools/setup installs it)")
        cls.certs = tempfile.mkdtemp(prefix="ringmail-proxy-")
        cls.cert, cls.key = make_cert(cls.certs, "p", "relay.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.haproxy = None
        self.v1_port = harness.free_port()       # ringmaild, PROXY v1 expected
        self.v2_port = harness.free_port()       # ringmaild, PROXY v2 expected (either works)
        self.smtps_port = harness.free_port()    # ringmaild smtps, PROXY expected
        self.metrics_port = harness.free_port()
        self.pop3_port = harness.free_port()     # ringmaild POP3, PROXY expected
        mail_root = os.path.join(self.tmp, "mail")
        os.mkdir(mail_root)
        self.direct_port = harness.free_port()   # ringmaild, no proxy protocol
        settings = {
            "delivery": closed_delivery(),
            "listen": ["127.0.0.1:%d" % p for p in (self.direct_port, self.v1_port, self.v2_port)],
            "smtps": {"listen": ["127.0.0.1:%d" % self.smtps_port]},
            "tls": {"cert_file": self.cert, "key_file": self.key},
            "relay_networks": [CLIENT + "/32", "192.0.2.0/24"],
            "metrics": {"listen": ["127.0.0.1:%d" % self.metrics_port]},
            "local_domains": ["local.test"],
            "mailbox": {"root": mail_root},
            "pop3": {"listen": ["127.0.0.1:%d" % self.pop3_port], "allow_plaintext": True},
            "proxy_protocol": {
                "listeners": ["127.0.0.1:%d" % p for p in (self.v1_port, self.v2_port, self.smtps_port,
                                                           self.pop3_port)],
                "timeout": "1s",
            },
        }
        self.d = harness.Ringmaild(workers=2, port=self.direct_port, extra=settings,
                                   tmp=tempfile.mkdtemp(dir=self.tmp)).start()
        self.daemons.append(self.d)
        harness.wait_port("127.0.0.1", self.metrics_port)
        for port in (self.v1_port, self.v2_port, self.smtps_port, self.pop3_port):
            self.wait_proxied(port)

    def tearDown(self):
        if self.haproxy is not None:
            self.haproxy.stop()
        if self.d.proc is not None:
            self.finish(self.d)
        super().tearDown()

    def start_haproxy(self):
        """start_haproxy - frontends: v1 -> v1_port, v2 -> v2_port, TLS
        passed through with v2 -> smtps_port; health checks with the header
        (HAProxy sends the PROXY header on those too)."""
        self.hp_v1 = harness.free_port()
        self.hp_v2 = harness.free_port()
        self.hp_tls = harness.free_port()
        text = """global
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend fe_v1
    bind 127.0.0.1:%d
    default_backend be_v1

backend be_v1
    server ringmaild 127.0.0.1:%d send-proxy check inter 500ms

frontend fe_v2
    bind 127.0.0.1:%d
    default_backend be_v2

backend be_v2
    server ringmaild 127.0.0.1:%d send-proxy-v2 check inter 500ms

frontend fe_tls
    bind 127.0.0.1:%d
    default_backend be_tls

backend be_tls
    server ringmaild 127.0.0.1:%d send-proxy-v2
""" % (self.hp_v1, self.v1_port, self.hp_v2, self.v2_port, self.hp_tls, self.smtps_port)
        self.haproxy = HAProxy(self.tmp, text, (self.hp_v1, self.hp_v2, self.hp_tls))

    # ---- helpers ----------------------------------------------------------

    def wait_proxied(self, port):
        """wait_proxied - wait until a proxied listener accepts, with a
        valid header (v1 UNKNOWN, counted as kept_peer), so that the
        test's own bad-header counts are exact."""
        def try_once():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"PROXY UNKNOWN\r\n")
                    return True
            except OSError:
                return False
        self.assertTrue(wait_for(try_once, timeout=10), "nothing listens on %d" % port)

    def relay_through(self, port, source, subject, tls=False):
        """relay_through - one message to a remote domain from source via
        port; returns the queue id."""
        if tls:
            s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, source_address=(source, 0),
                                 context=client_context())
        else:
            s = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
        with s:
            s.ehlo("client.test")
            code, resp = s.mail("app@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("user@remote.test")
            self.assertEqual(code, 250, "RCPT from %s via %d: %d %r" % (source, port, code, resp))
            code, resp = s.data(body(subject))
            self.assertEqual(code, 250, resp)
            return queue_id_of(resp)

    def assert_client(self, qid, address):
        """assert_client - the spooled message came from address: its
        record's client address and its Received header say so."""
        m = self.spooled(self.d, qid)
        self.assertEqual(m["record"]["client_addr"], address)
        header, _ = split_received(m["record"]["body"])
        self.assertIn(("[%s]" % address).encode(), header)
        self.assertNotIn(b"[127.0.0.1]", header)

    def queued_count(self):
        return len(spool_messages(self.spool_dir(self.d)))

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=30) as r:
            text = r.read().decode()
        values = {}
        for m in re.finditer(r'^ringmail_proxy_headers_total\{result="(\w+)"\} (\d+)$', text, re.M):
            values[m.group(1)] = int(m.group(2))
        return values

    def assert_closed_without_greeting(self, data, port=None, send_close=False):
        """assert_closed_without_greeting - send data to a proxied port: the
        connection is closed and nothing at all is answered."""
        c = RawClient("127.0.0.1", port or self.v1_port, source=CLIENT)
        try:
            if data:
                c.send(data)
            if send_close:
                c.sock.shutdown(socket.SHUT_WR)
            got = c.read_until_closed(timeout=60)
        finally:
            c.close()
        self.assertEqual(got, b"", "got %r after %r, want a silent close" % (got[:100], data[:60]))

    # ---- tests ------------------------------------------------------------

    def test_haproxy_v1_and_v2_keep_client_address(self):
        self.start_haproxy()
        q1 = self.relay_through(self.hp_v1, CLIENT, "via v1")
        q2 = self.relay_through(self.hp_v2, CLIENT, "via v2")
        q3 = self.relay_through(self.hp_tls, CLIENT, "via v2 and implicit TLS", tls=True)
        for qid in (q1, q2, q3):
            self.assert_client(qid, CLIENT)
        # Another client through the same balancer is not a relay client:
        # the decision follows the header, not HAProxy's own address.
        for port in (self.hp_v1, self.hp_v2):
            with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(STRANGER, 0)) as s:
                s.ehlo("stranger.test")
                self.assertEqual(s.mail("x@src.test")[0], 250)
                code, resp = s.rcpt("user@remote.test")
                self.assertEqual(code // 100, 5, "RCPT from %s via %d: %d %r" % (STRANGER, port, code, resp))
        self.assertEqual(self.queued_count(), 3)
        # Relayed headers (and HAProxy's health checks) count as ok or
        # kept_peer, none as bad.
        v = wait_for(lambda: (lambda m: m if m.get("kept_peer", 0) >= 2 and m.get("ok", 0) >= 5 else None)(
            self.metrics()), timeout=60)
        self.assertIsNotNone(v, "metrics: %r" % self.metrics())
        self.assertEqual(v.get("bad"), 0, v)

    def test_direct_listener_unchanged(self):
        qid = self.relay_through(self.direct_port, CLIENT, "direct")
        self.assert_client(qid, CLIENT)
        c = RawClient("127.0.0.1", self.direct_port)
        try:
            code, _ = c.reply()
            self.assertEqual(code, 220)
            self.assertEqual(c.cmd("EHLO local.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
            code, texts = c.cmd("RCPT TO:<user@remote.test>")
            self.assertEqual(code // 100, 5, "127.0.0.1 is not in relay_networks: %r" % texts)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        finally:
            c.close()
        # A PROXY header on a listener without proxy protocol is just a bad command.
        c = RawClient("127.0.0.1", self.direct_port, source=CLIENT)
        try:
            self.assertEqual(c.reply()[0], 220)
            code, _ = c.cmd("PROXY TCP4 192.0.2.9 127.0.0.1 1000 25")
            self.assertEqual(code // 100, 5)
        finally:
            c.close()

    def test_raw_good_headers(self):
        # v1 with the first command in the same packet, from a stranger's
        # socket: the header's 192.0.2.10 is what relay_networks sees.
        c = RawClient("127.0.0.1", self.v1_port, source=STRANGER)
        try:
            c.send(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\nEHLO raw.test\r\n")
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@remote.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            code, texts = c.cmd(body("raw v1") + b".")
            self.assertEqual(code, 250, texts)
            q1 = queue_id_of(texts[0])
            c.cmd("QUIT")
        finally:
            c.close()
        self.assert_client(q1, "192.0.2.10")
        # v2 with TLVs (ALPN, a NOOP), sent a byte at a time.
        hdr = v2_inet("192.0.2.11", 40001, "127.0.0.1", 25,
                      tlvs=b"\x01\x00\x04smtp" + b"\x04\x00\x02\x00\x00")
        c = RawClient("127.0.0.1", self.v2_port, source=STRANGER)
        try:
            for i in range(len(hdr)):
                c.send(hdr[i:i + 1])
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO raw.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@remote.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            code, texts = c.cmd(body("raw v2") + b".")
            self.assertEqual(code, 250, texts)
            q2 = queue_id_of(texts[0])
        finally:
            c.close()
        self.assert_client(q2, "192.0.2.11")
        # v2 LOCAL keeps the socket's peer: 127.0.0.6 may not relay, and
        # v1 UNKNOWN keeps 127.0.0.5, which may.
        for hdr, source, want in ((v2_header(0, 0x00, b""), STRANGER, 5),
                                  (b"PROXY UNKNOWN\r\n", CLIENT, 2)):
            c = RawClient("127.0.0.1", self.v1_port, source=source)
            try:
                c.send(hdr)
                self.assertEqual(c.reply()[0], 220)
                self.assertEqual(c.cmd("EHLO raw.test")[0], 250)
                self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
                code, texts = c.cmd("RCPT TO:<user@remote.test>")
                self.assertEqual(code // 100, want, "%r from %s: %d %r" % (hdr, source, code, texts))
            finally:
                c.close()
        self.assertEqual(self.queued_count(), 2)
        v = wait_for(lambda: (lambda m: m if m.get("ok", 0) >= 2 and m.get("kept_peer", 0) >= 2 else None)(
            self.metrics()))
        self.assertIsNotNone(v, self.metrics())
        self.assertEqual(v.get("bad", 0), 0, v)

    def test_raw_header_and_client_hello_in_one_packet(self):
        """The bytes after the header are the TLS handshake's: header and
        ClientHello sent in one write to the implicit-TLS listener."""
        ctx = client_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing)
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        sock = socket.create_connection(("127.0.0.1", self.smtps_port), timeout=30,
                                        source_address=(STRANGER, 0))
        try:
            sock.sendall(v2_inet("192.0.2.12", 40002, "127.0.0.1", 465) + hello)

            def pump(step):
                while True:
                    try:
                        return step()
                    except ssl.SSLWantReadError:
                        pending = outgoing.read()
                        if pending:
                            sock.sendall(pending)
                        data = sock.recv(65536)
                        if not data:
                            raise EOFError("closed during TLS")
                        incoming.write(data)
            pump(tls.do_handshake)
            sock.sendall(outgoing.read())
            lines = b""
            while not re.search(rb"^220 .*\r\n", lines, re.M):
                lines += pump(lambda: tls.read(4096))
            self.assertTrue(lines.startswith(b"220 "), lines)
            for cmd, want in ((b"EHLO raw.test", 250), (b"MAIL FROM:<a@src.test>", 250),
                              (b"RCPT TO:<user@remote.test>", 250), (b"DATA", 354),
                              (body("tls raw") + b".", 250)):
                tls.write(cmd + b"\r\n")
                sock.sendall(outgoing.read())
                reply = b""
                while not re.search(rb"^\d{3} .*\r\n", reply, re.M):
                    reply += pump(lambda: tls.read(4096))
                self.assertEqual(int(re.findall(rb"^(\d{3}) ", reply, re.M)[-1]), want, reply)
            qid = queue_id_of(reply)
        finally:
            sock.close()
        self.assert_client(qid, "192.0.2.12")

    def test_pop3_listener(self):
        """POP3 shares the accept path: the header's client is the one a
        failed login is logged (and rate limited) for; a bad header closes."""
        c = RawClient("127.0.0.1", self.pop3_port, source=STRANGER)
        try:
            c.send(b"PROXY TCP4 192.0.2.30 127.0.0.1 41000 110\r\n")
            self.assertTrue(c.read_line().startswith(b"+OK"))
            c.send(b"USER nobody\r\n")
            self.assertTrue(c.read_line().startswith(b"+OK"))
            c.send(b"PASS wrong\r\n")
            self.assertTrue(c.read_line().startswith(b"-ERR"))
            c.send(b"QUIT\r\n")
            self.assertTrue(c.read_line().startswith(b"+OK"))
        finally:
            c.close()
        self.assertTrue(wait_for(lambda: "client=192.0.2.30:41000 user=nobody result=failed"
                                 in self.d.log_text()), self.d.log_text()[-2000:])
        self.assert_closed_without_greeting(b"USER nobody\r\n", port=self.pop3_port)

    def test_bad_headers_closed_nothing_queued(self):
        bad = [
            b"EHLO client.test\r\n",                                   # no header at all
            b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n",            # bad port
            b"PROXY TCP4 192.0.2.1 127.0.0.1 1 25\nEHLO x\r\n",         # LF without CR
            b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n",                  # v1 over 107 bytes
            V2_SIG + b"\x21\x11\xff\xff" + b"\0" * 64,                 # v2 over max_header_size
            V2_SIG + b"\x21\x11\x00\x0d" + b"\0" * 13,                 # a TLV cut short
            V2_SIG + b"\x31\x11\x00\x0c" + b"\0" * 12,                 # version 3
            b"\x16\x03\x01\x00\x05hello",                              # TLS without a header
        ]
        for data in bad:
            self.assert_closed_without_greeting(data)
        # A header cut short by the client's close, and one never sent.
        self.assert_closed_without_greeting(b"PROXY TCP4 192.0.2.1 127.0", send_close=True)
        self.assert_closed_without_greeting(b"")
        # Implicit TLS listener: plaintext SMTP instead of header + ClientHello.
        self.assert_closed_without_greeting(b"EHLO x\r\n", port=self.smtps_port)
        # Nothing queued, every one logged and counted; the daemon still serves.
        self.assertEqual(self.queued_count(), 0)
        v = wait_for(lambda: (lambda m: m if m.get("bad", 0) >= len(bad) + 2 else None)(self.metrics()))
        self.assertIsNotNone(v, self.metrics())
        self.assertGreaterEqual(v.get("timeout", 0), 1, v)
        self.assertEqual(v.get("ok", 0), 0, v)
        log = self.d.log_text()
        self.assertGreaterEqual(len(re.findall(r"proxy_header .*result=bad", log)), len(bad) + 2,
                                log[-3000:])
        self.assertRegex(log, r"proxy_header .*result=timeout")
        self.assertIn("reason=\"not a PROXY protocol header\"", log)
        qid = self.relay_through(self.direct_port, CLIENT, "still up")
        self.assert_client(qid, CLIENT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
