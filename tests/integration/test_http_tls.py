"""test_http_tls - the HTTP API over TLS (issue 21: http.tls_listen with
tls.cert_file and tls.key_file, docs/HTTP.md) with real clients:

- curl --cacert injects a raw and a structured message over HTTPS; the sink
  gets both, and the structured one parses with Python's email package;
  the plain http.listen next to it still answers;
- Python's http.client with an ssl context keeps one TLS connection alive
  for many requests; three pipelined requests in one TLS write are
  answered in order; "Connection: close" ends with close_notify;
- plain HTTP sent to the TLS port fails cleanly: the connection closes,
  nothing is queued, and the listener serves TLS clients afterwards;
- SIGHUP with a new certificate: new connections are served the new
  certificate (its DER and subject), a connection made before goes on;
- --check-config refuses http.tls_listen without a certificate, naming
  the key.
Certificates are made at test time with openssl. No timing asserts.
"""
import email
import email.policy
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, closed_delivery, spool_messages, split_received, wait_for  # noqa: E402

TOKEN = "rm-tls-token-3b7e91"
PATH = "/api/inject/v1"
RINGMAILD = os.path.join(harness.BIN, "ringmaild")


def make_cert(directory, name, cn):
    """make_cert - a self-signed P-256 certificate for cn and 127.0.0.1."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % cn],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def der_subject_serial(der):
    """der_subject_serial - openssl x509's subject and serial lines of a DER certificate."""
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-serial"],
                         input=der, capture_output=True, check=True, timeout=30)
    return out.stdout.decode()


def request_bytes(body, close=False):
    data = json.dumps(body).encode()
    return (b"POST %s HTTP/1.1\r\nHost: relay.test\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (PATH.encode(), TOKEN.encode(), len(data), b"Connection: close\r\n" if close else b"", data))


def read_response(sock):
    """read_response - one whole HTTP answer (head and Content-Length body)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            return got
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def simple(i, prefix="t"):
    return {"envelope_sender": "s@src.test", "recipients": [{"email": "%s%d@dest.test" % (prefix, i)}],
            "content": "Subject: %s %d\r\n\r\nbody\r\n" % (prefix, i)}


class HttpTls(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.cert, self.key = make_cert(self.tmp, "a", "relay.test")
        self.cert2, self.key2 = make_cert(self.tmp, "b", "reloaded.test")

    def tls_daemon(self, delivery=None, plain=False):
        token_file = os.path.join(self.tmp, "tokens")
        with open(token_file, "w") as f:
            f.write("app1:%s:inject\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
        self.port = harness.free_port()
        http = {"tls_listen": ["127.0.0.1:%d" % self.port], "token_file": token_file}
        if plain:
            self.plain_port = harness.free_port()
            http["listen"] = ["127.0.0.1:%d" % self.plain_port]
        extra = {"http": http, "tls": {"cert_file": self.cert, "key_file": self.key},
                 "delivery": delivery if delivery is not None else closed_delivery()}
        d = self.daemon(extra)
        harness.wait_port("127.0.0.1", self.port)
        return d

    def context(self, cafile=None):
        return ssl.create_default_context(cafile=cafile or self.cert)

    def tls_socket(self, cafile=None, strict=False, name="relay.test"):
        ctx = self.context(cafile)
        if strict:
            ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        tls = ctx.wrap_socket(raw, server_hostname=name, suppress_ragged_eofs=not strict)
        tls.settimeout(30)
        return tls

    def curl(self, body):
        out = subprocess.run(["curl", "-sS", "-i", "--cacert", self.cert, "-X", "POST",
                              "https://127.0.0.1:%d%s" % (self.port, PATH),
                              "-H", "Authorization: Bearer " + TOKEN, "-H", "Content-Type: application/json",
                              "--data-binary", json.dumps(body)], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, rest = out.stdout.partition(b"\r\n\r\n")
        return head, json.loads(rest)

    def test_curl_injects_raw_and_structured(self):
        sink = self.sink()
        d = self.tls_daemon(delivery={"relayhost": sink.address}, plain=True)
        raw = "From: App <app@src.test>\nTo: r@dest.test\nSubject: raw over tls\n\nline 1\n"
        head, reply = self.curl({"envelope_sender": "bounce@src.test", "recipients": [{"email": "r@dest.test"}],
                                 "content": raw})
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual((reply["success_count"], reply["fail_count"]), (1, 0), reply)
        structured = {"envelope_sender": "bounce@src.test",
                      "recipients": [{"email": "s@dest.test", "substitutions": {"name": "Zoë"}}],
                      "content": {"subject": "Hello {{name}}", "text_body": "Hi {{name}}, over TLS.\n",
                                  "from": {"email": "app@src.test", "name": "App"},
                                  "attachments": [{"data": "AAECAwQF", "content_type": "application/octet-stream",
                                                   "file_name": "six.bin"}]}}
        head, reply = self.curl(structured)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(reply["success_count"], 1, reply)
        # The plain listener next to it answers too.
        c = http.client.HTTPConnection("127.0.0.1", self.plain_port, timeout=60)
        c.request("POST", PATH, body=json.dumps(simple(0, "plain")),
                  headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        sink.wait_messages(3)
        got = {}
        for env, data in sink.stored():
            rcpt = "\n".join(env).split("X-Sink-Envelope-To: <", 1)[1].split(">", 1)[0]
            got[rcpt] = split_received(data)[1]
        self.assertEqual(got["r@dest.test"], raw.replace("\n", "\r\n").encode())
        msg = email.message_from_bytes(got["s@dest.test"], policy=email.policy.default)
        self.assertEqual(msg["Subject"], "Hello Zoë")
        self.assertEqual(msg.get_body(("plain",)).get_content().replace("\r\n", "\n"), "Hi Zoë, over TLS.\n")
        att = [p for p in msg.iter_attachments()]
        self.assertEqual([(p.get_filename(), p.get_content()) for p in att], [("six.bin", b"\0\1\2\3\4\5")])
        self.assertIn("plain0@dest.test", got)
        self.finish(d)

    def test_keep_alive_pipelining_and_close_notify(self):
        d = self.tls_daemon()
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60, context=self.context())
        ids = []
        sock = None
        for i in range(60):
            c.request("POST", PATH, body=json.dumps(simple(i, "ka")),
                      headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
            r = c.getresponse()
            reply = json.loads(r.read())
            self.assertEqual(r.status, 200, reply)
            self.assertEqual(r.getheader("Connection"), "keep-alive")
            ids += reply["queue_ids"]
            if sock is None:
                sock = c.sock
                self.assertEqual(sock.version(), "TLSv1.2")
            self.assertIs(c.sock, sock, "request %d needed a new connection" % i)
        c.close()
        self.assertEqual(len(set(ids)), 60)
        # Three requests in one TLS write, the last with Connection: close:
        # three answers in order, then close_notify (no bare EOF).
        tls = self.tls_socket(strict=True)
        tls.sendall(request_bytes(simple(0, "p")) + request_bytes(simple(1, "p")) +
                    request_bytes(simple(2, "p"), close=True))
        got = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except ssl.SSLError as e:
                self.fail("EOF without close_notify after %r: %s" % (got[-300:], e))
            except TimeoutError:
                self.fail("no close after %r\n%s" % (got, d.log_text()[-3000:]))
            if not chunk:
                break
            got += chunk
        tls.close()
        self.assertEqual(got.count(b"HTTP/1.1 200 OK\r\n"), 3, got)
        self.assertIn(b"Connection: close\r\n", got.rsplit(b"HTTP/1.1 200", 1)[1])
        bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])
                  for part in got.split(b"HTTP/1.1 200 OK\r\n")[1:]]
        self.assertEqual([b["success_count"] for b in bodies], [1, 1, 1])
        self.assertEqual(len(spool_messages(self.spool_dir(d))), 63)
        self.finish(d)

    def test_plain_http_to_tls_port_fails_cleanly(self):
        d = self.tls_daemon()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(request_bytes(simple(0, "clear")))
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        s.close()
        self.assertNotIn(b"HTTP/1.1 200", got)
        # curl speaking plain HTTP to it fails, quickly, and queues nothing.
        out = subprocess.run(["curl", "-sS", "-m", "20", "-X", "POST", "http://127.0.0.1:%d%s" % (self.port, PATH),
                              "-H", "Authorization: Bearer " + TOKEN, "-H", "Content-Type: application/json",
                              "--data-binary", json.dumps(simple(1, "clear"))], capture_output=True, timeout=60)
        self.assertNotEqual(out.returncode, 0, out.stdout)
        self.assertNotEqual(out.returncode, 28, "curl timed out instead of seeing the connection end")
        self.assertEqual(spool_messages(self.spool_dir(d)), [])
        self.assertIn("tls_failed", d.log_text())
        # The listener still serves TLS clients.
        head, reply = self.curl(simple(2, "after"))
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(len(spool_messages(self.spool_dir(d))), 1)
        self.finish(d)

    def test_sighup_serves_new_certificate(self):
        d = self.tls_daemon()
        old = self.tls_socket()
        self.assertEqual(old.getpeercert(binary_form=True), cert_der(self.cert))
        self.assertIn("CN = relay.test", der_subject_serial(old.getpeercert(binary_form=True)))
        old.sendall(request_bytes(simple(0, "before")))
        self.assertIn(b"HTTP/1.1 200 OK", read_response(old))
        d.settings["tls"] = {"cert_file": self.cert2, "key_file": self.key2}
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "result=ok" in d.log_text()), d.log_text()[-2000:])

        want = cert_der(self.cert2)

        def new_cert():
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                with ctx.wrap_socket(raw, server_hostname="reloaded.test") as s:
                    der = s.getpeercert(binary_form=True)
                    return der if der == want else None
        der = wait_for(new_cert)
        self.assertIsNotNone(der, "the old certificate is still served after SIGHUP")
        info = der_subject_serial(der)
        self.assertIn("CN = reloaded.test", info)
        self.assertEqual(info.split("serial=")[1].strip(),
                         der_subject_serial(want).split("serial=")[1].strip())
        # A new connection verifying against the new certificate injects.
        s = self.tls_socket(cafile=self.cert2, name="reloaded.test")
        s.sendall(request_bytes(simple(1, "after"), close=True))
        self.assertIn(b"HTTP/1.1 200 OK", read_response(s))
        s.close()
        # The connection made before the reload goes on with its session.
        old.sendall(request_bytes(simple(2, "old")))
        self.assertIn(b"HTTP/1.1 200 OK", read_response(old))
        old.close()
        self.assertEqual(len(spool_messages(self.spool_dir(d))), 3)
        self.finish(d)

    def test_check_config_needs_certificate(self):
        token_file = os.path.join(self.tmp, "tokens")
        with open(token_file, "w") as f:
            f.write("app1:%s:inject\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
        base = {"spool": {"dir": os.path.join(self.tmp, "spool-check")},
                "http": {"tls_listen": ["127.0.0.1:%d" % harness.free_port()], "token_file": token_file}}

        def check(settings):
            path = os.path.join(self.tmp, "check-%d.conf" % len(os.listdir(self.tmp)))
            with open(path, "w") as f:
                f.write(harness.render_config(settings))
            return subprocess.run([RINGMAILD, "--check-config", path], capture_output=True, text=True, timeout=60)
        r = check(base)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("http.tls_listen needs tls.cert_file and tls.key_file", r.stdout + r.stderr)
        r = check(dict(base, http={"tls_listen": base["http"]["tls_listen"]},
                       tls={"cert_file": self.cert, "key_file": self.key}))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("http.tls_listen needs http.token_file", r.stdout + r.stderr)
        r = check(dict(base, tls={"cert_file": self.cert, "key_file": self.key}))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
