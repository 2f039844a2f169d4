"""test_http_inject - the HTTP injection API (issue 21, docs/HTTP.md) with
real clients: curl and Python's http.client.

- a raw RFC 5322 message injected with curl reaches a ringmail-sink as sent
  (line ends made CRLF, a Received header in front);
- structured content with attachments and per-recipient substitutions to
  1,000 recipients: every message the sink receives parses with Python's
  email package and holds that recipient's subject, bodies and attachments;
  a raw message to 1,000 recipients is delivered to each of them;
- bad JSON, a missing field, a too-large body, no token, an unknown token,
  a token without "inject", a wrong path, method or content type: 4xx with
  a JSON error, and nothing is queued;
- keep-alive and pipelined requests are answered in order on one
  connection; a request that stalls gets 408;
- SIGHUP re-reads http.token_file;
- kill -9 right after 200s: every queue id acknowledged with 200 is in
  the spool after a restart.
"""
import base64
import email
import email.policy
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, closed_delivery, spool_messages, split_received, wait_for  # noqa: E402

TOKEN = "rm-test-token-6f1d2c"
READONLY = "rm-readonly-token-9a"
PATH = "/api/inject/v1"


def token_line(name, token, perms):
    return "%s:%s:%s\n" % (name, hashlib.sha256(token.encode()).hexdigest(), perms)


class HttpInject(DaemonTestCase):
    def http_daemon(self, delivery=None, http_extra=None, workers=2, tokens=None, more=None):
        token_file = os.path.join(self.tmp, "tokens-%d" % len(self.daemons))
        with open(token_file, "w") as f:
            f.write(tokens or (token_line("app1", TOKEN, "inject") + token_line("mon", READONLY, "")))
        self.http_port = harness.free_port()
        http = {"listen": ["127.0.0.1:%d" % self.http_port], "token_file": token_file}
        http.update(http_extra or {})
        extra = {"http": http}
        extra.update(more or {})
        if delivery is not None:
            extra["delivery"] = delivery
        d = self.daemon(extra, workers=workers)
        harness.wait_port("127.0.0.1", self.http_port)
        d.token_file = token_file
        return d

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)

    def post(self, c, body, token=TOKEN, content_type="application/json", path=PATH, method="POST"):
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if content_type is not None:
            headers["Content-Type"] = content_type
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        self.assertEqual(r.getheader("Content-Type"), "application/json", raw)
        return r.status, json.loads(raw), r

    def delivered(self, d):
        return set(re.findall(r"event=delivery id=\S+ rcpt=<([^>]+)>.* status=delivered", d.log_text()))

    def test_raw_message_with_curl(self):
        sink = self.sink()
        d = self.http_daemon(delivery={"relayhost": sink.address})
        raw = "From: App <app@src.test>\nTo: r@dest.test\nSubject: raw\nMessage-ID: <raw-1@src.test>\n\nline 1\nline 2\n"
        req = {"envelope_sender": "bounce@src.test", "recipients": [{"email": "r@dest.test"}], "content": raw}
        out = subprocess.run(["curl", "-sS", "-i", "-X", "POST", "http://127.0.0.1:%d%s" % (self.http_port, PATH),
                              "-H", "Authorization: Bearer " + TOKEN, "-H", "Content-Type: application/json",
                              "--data-binary", json.dumps(req)], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        reply = json.loads(body)
        self.assertEqual(reply["success_count"], 1)
        self.assertEqual(reply["fail_count"], 0)
        self.assertEqual(reply["failed_recipients"], [])
        self.assertEqual(len(reply["queue_ids"]), 1)
        sink.wait_messages(1)
        stored = sink.stored()
        self.assertEqual(len(stored), 1)
        env, data = stored[0]
        self.assertIn("X-Sink-Envelope-From: <bounce@src.test>", env)
        self.assertIn("X-Sink-Envelope-To: <r@dest.test>", env)
        header, rest = split_received(data)
        self.assertIn(b"with HTTP id " + reply["queue_ids"][0].encode(), header)
        self.assertEqual(rest, raw.replace("\n", "\r\n").encode())
        self.finish(d)

    def test_errors_are_json_and_queue_nothing(self):
        mport = harness.free_port()
        d = self.http_daemon(delivery=closed_delivery(), http_extra={"max_body_size": "4k"},
                             more={"smtp": {"max_message_size": "2k"},
                                   "metrics": {"listen": ["127.0.0.1:%d" % mport]}})
        good = {"envelope_sender": "s@src.test", "recipients": [{"email": "r@dest.test"}],
                "content": "Subject: x\r\n\r\nbody\r\n"}
        c = self.conn()
        cases = [
            (b"{not json", TOKEN, "application/json", PATH, "POST", 400, "invalid JSON"),
            ({"recipients": [{"email": "r@dest.test"}], "content": "S: x"}, TOKEN, "application/json", PATH,
             "POST", 400, "envelope_sender: missing"),
            ({"envelope_sender": "s@src.test", "recipients": [{"email": "r@dest.test"}]}, TOKEN,
             "application/json", PATH, "POST", 400, "content: missing"),
            ({"envelope_sender": "s@src.test", "recipients": [{"name": "x"}], "content": "S: x"}, TOKEN,
             "application/json", PATH, "POST", 400, "recipients[0].email: missing"),
            ({"envelope_sender": "not an address", "recipients": [{"email": "r@dest.test"}], "content": "S: x"},
             TOKEN, "application/json", PATH, "POST", 400, "envelope_sender"),
            ({"envelope_sender": "s@src.test", "recipients": [{"email": "bad@@x"}], "content": "S: x"},
             TOKEN, "application/json", PATH, "POST", 422, "not a valid address"),
            (dict(good, content="no header line\r\n\r\nbody"), TOKEN, "application/json", PATH, "POST", 400,
             "RFC 5322"),
            (good, None, "application/json", PATH, "POST", 401, "bearer token is required"),
            (good, "wrong-token", "application/json", PATH, "POST", 401, "not valid"),
            (good, READONLY, "application/json", PATH, "POST", 403, "may not inject"),
            (good, TOKEN, "text/plain", PATH, "POST", 415, "application/json"),
            (good, TOKEN, "application/json", "/api/other", "POST", 404, "no such endpoint"),
            (b"", TOKEN, None, PATH, "GET", 405, "use POST"),
        ]
        for body, token, ctype, path, method, want, text in cases:
            status, reply, r = self.post(c, body, token=token, content_type=ctype, path=path, method=method)
            self.assertEqual(status, want, "%r: %r" % (body, reply))
            self.assertIn("error" if status != 422 else "errors", reply)
            self.assertIn(text, json.dumps(reply), reply)
            if status == 401:
                self.assertIn("Bearer", r.getheader("WWW-Authenticate"))
            if status == 422:
                self.assertEqual(reply["success_count"], 0)
                self.assertEqual(reply["failed_recipients"], ["bad@@x"])
        c.close()
        # Too large: refused from its Content-Length, before the body.
        c = self.conn()
        big = dict(good, content="Subject: x\r\n\r\n" + "a" * 5000)
        status, reply, r = self.post(c, big)
        self.assertEqual(status, 413, reply)
        self.assertIn("http.max_body_size", reply["error"])
        self.assertEqual(r.getheader("Connection"), "close")
        c.close()
        # A too-large message inside an acceptable body: smtp.max_message_size.
        c = self.conn()
        status, reply, _ = self.post(c, dict(good, content="Subject: x\r\n\r\n" + ("a" * 70 + "\r\n") * 30))
        self.assertEqual(status, 413, reply)
        self.assertIn("smtp.max_message_size", reply["error"])
        c.close()
        self.assertEqual(spool_messages(self.spool_dir(d)), [], "an error queued something")
        status, reply, _ = self.post(self.conn(), good)
        self.assertEqual(status, 200, reply)
        self.assertEqual(len(spool_messages(self.spool_dir(d))), 1)
        # The metrics count what happened (published once a second or so).
        def metric(name):
            text = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % mport],
                                  capture_output=True, timeout=30).stdout.decode()
            m = re.search(r"^%s (\d+)$" % name, text, re.M)
            return int(m.group(1)) if m else -1
        # Each worker publishes its own counters, so wait for all of them.
        want = {"ringmail_http_injected_messages_total": 1,
                "ringmail_http_unauthorized_total": 2,
                "ringmail_http_forbidden_total": 1,
                "ringmail_http_injected_recipients_total": 1}
        wait_for(lambda: all(metric(k) == v for k, v in want.items()), 20)
        for name, value in want.items():
            self.assertEqual(metric(name), value, name)
        self.assertGreaterEqual(metric("ringmail_http_responses_4xx_total"), 14)
        self.finish(d)

    def test_keep_alive_and_pipelining(self):
        d = self.http_daemon(delivery=closed_delivery())
        c = self.conn()
        ids = []
        for i in range(20):
            status, reply, r = self.post(c, {"envelope_sender": "s@src.test",
                                             "recipients": [{"email": "r%d@dest.test" % i}],
                                             "content": "Subject: ka %d\r\n\r\nbody\r\n" % i})
            self.assertEqual(status, 200, reply)
            ids += reply["queue_ids"]
        c.close()
        # Three requests in one write: three answers, in order.
        bodies = [json.dumps({"envelope_sender": "s@src.test", "recipients": [{"email": "p%d@dest.test" % i}],
                              "content": "Subject: p%d\r\n\r\nx\r\n" % i}).encode() for i in range(3)]
        wire = b"".join(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (PATH.encode(), TOKEN.encode(), len(b), b) for b in bodies)
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=60)
        s.sendall(wire)
        answers = []
        got = b""
        while len(answers) < 3:
            head, sep, rest = got.partition(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head) if sep else None
            if length is not None and len(rest) >= int(length.group(1)):
                n = int(length.group(1))
                self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
                answers.append(json.loads(rest[:n]))
                got = rest[n:]
                continue
            chunk = s.recv(65536)
            self.assertTrue(chunk, "closed after %r" % got)
            got += chunk
        s.close()
        self.assertEqual([a["success_count"] for a in answers], [1, 1, 1])
        ids += [a["queue_ids"][0] for a in answers]
        spooled = {m["queue_id"]: m for m in spool_messages(self.spool_dir(d))}
        self.assertEqual(set(ids), set(spooled))
        for i, a in enumerate(answers):
            self.assertEqual(spooled[a["queue_ids"][0]]["recipients"][0]["address"], "p%d@dest.test" % i)
        self.finish(d)

    def test_stalled_request_gets_408(self):
        d = self.http_daemon(delivery=closed_delivery(), http_extra={"request_timeout": "2s"})
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=60)
        s.sendall(b"POST /api/inject/v1 HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"env")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 408 "), got)
        self.assertIn(b"http.request_timeout", got)
        self.assertEqual(spool_messages(self.spool_dir(d)), [])
        self.finish(d)

    def test_sighup_rereads_tokens(self):
        d = self.http_daemon(delivery=closed_delivery())
        good = {"envelope_sender": "s@src.test", "recipients": [{"email": "r@dest.test"}],
                "content": "Subject: x\r\n\r\nbody\r\n"}
        self.assertEqual(self.post(self.conn(), good)[0], 200)
        with open(d.token_file, "w") as f:
            f.write(token_line("app2", "new-token-123", "inject"))
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=reload result=ok" in d.log_text(), 20)
        self.assertEqual(self.post(self.conn(), good)[0], 401)
        self.assertEqual(self.post(self.conn(), good, token="new-token-123")[0], 200)
        self.finish(d)

    def structured_request(self, n):
        pdf = bytes(range(256)) * 40
        return pdf, {
            "envelope_sender": "bounce@src.test",
            "recipients": [{"email": "u%04d@dest.test" % i, "name": "Üser %d" % i,
                            "substitutions": {"first": "Zoë%d" % i, "n": i}} for i in range(n)],
            "substitutions": {"shop": "Café & Co"},
            "content": {
                "from": {"email": "news@src.test", "name": "Nëws, Desk"},
                "reply_to": {"email": "help@src.test", "name": "Help"},
                "subject": "Hello {{ first }}, from {{shop}} ✓",
                "text_body": "Dear {{first}},\nyour number is {{ n }}.\n" + "long line " * 30 + "\n",
                "html_body": "<p>Dear {{first}} — {{shop}}</p>",
                "headers": {"X-Campaign": "spring-2027"},
                "attachments": [
                    {"data": base64.b64encode(pdf).decode(), "content_type": "application/pdf",
                     "file_name": "réport.pdf"},
                    {"data": base64.b64encode(b"a,b\r\n1,2\r\n").decode(), "content_type": "text/csv",
                     "file_name": "data.csv"},
                ],
            },
        }

    def check_structured(self, msg, i, pdf):
        self.assertEqual(str(msg["Subject"]), "Hello Zoë%d, from Café & Co ✓" % i)
        self.assertEqual(msg["From"].addresses[0].display_name, "Nëws, Desk")
        self.assertEqual(msg["From"].addresses[0].addr_spec, "news@src.test")
        self.assertEqual(msg["To"].addresses[0].display_name, "Üser %d" % i)
        self.assertEqual(msg["To"].addresses[0].addr_spec, "u%04d@dest.test" % i)
        self.assertEqual(str(msg["Reply-To"]), "Help <help@src.test>")
        self.assertEqual(str(msg["X-Campaign"]), "spring-2027")
        self.assertIsNotNone(msg["Message-ID"])
        self.assertIsNotNone(msg["Date"].datetime)
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        self.assertEqual(msg.defects, [])
        # The parts' line breaks are CRLF on the wire; compare as text.
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        self.assertEqual(text, "Dear Zoë%d,\nyour number is %d.\n" % (i, i) + "long line " * 30 + "\n")
        html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
        self.assertEqual(html, "<p>Dear Zoë%d — Café & Co</p>" % i)
        atts = list(msg.iter_attachments())
        self.assertEqual([a.get_filename() for a in atts], ["réport.pdf", "data.csv"])
        self.assertEqual(atts[0].get_content_type(), "application/pdf")
        self.assertEqual(atts[0].get_content(), pdf)
        self.assertEqual(atts[1].get_payload(decode=True), b"a,b\r\n1,2\r\n")
        for part in msg.walk():
            self.assertEqual(part.defects, [], part)

    def test_structured_to_1000_recipients(self):
        sink = self.sink()
        d = self.http_daemon(delivery={"relayhost": sink.address})
        pdf, req = self.structured_request(1000)
        status, reply, _ = self.post(self.conn(), req)
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["success_count"], 1000)
        self.assertEqual(len(reply["queue_ids"]), 1000, "one message per recipient (substitutions)")
        self.assertEqual(sink.wait_messages(1000, timeout=240), 1000)
        seen = set()
        for env, data in sink.stored():
            rcpt = [e for e in env if e.startswith("X-Sink-Envelope-To: ")]
            self.assertEqual(len(rcpt), 1)
            i = int(re.search(r"<u(\d{4})@dest.test>", rcpt[0]).group(1))
            _, rest = split_received(data)
            for line in rest.split(b"\r\n"):
                self.assertLessEqual(len(line), 998)
            msg = email.message_from_bytes(rest, policy=email.policy.default)
            self.check_structured(msg, i, pdf)
            seen.add(i)
        self.assertEqual(seen, set(range(1000)))
        self.finish(d)

    def test_raw_to_1000_recipients(self):
        sink = self.sink()
        d = self.http_daemon(delivery={"relayhost": sink.address})
        raw = "From: a@src.test\r\nSubject: to many\r\n\r\none copy, many recipients\r\n"
        req = {"envelope_sender": "a@src.test",
               "recipients": [{"email": "m%04d@dest.test" % i} for i in range(1000)], "content": raw}
        status, reply, _ = self.post(self.conn(), req)
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["success_count"], 1000)
        self.assertEqual(len(reply["queue_ids"]), 1, "one message without substitutions")
        want = {"m%04d@dest.test" % i for i in range(1000)}
        self.assertTrue(wait_for(lambda: want <= self.delivered(d), 240), len(self.delivered(d)))
        for _, data in sink.stored():
            self.assertEqual(split_received(data)[1], raw.encode())
        self.finish(d)

    def test_kill9_after_200_loses_nothing(self):
        extra = closed_delivery()
        d = self.http_daemon(delivery=extra)
        acked = {}
        stop = threading.Event()
        errors = []

        def sender(k):
            c = self.conn()
            n = 0
            try:
                while not stop.is_set():
                    tag = "crash-%d-%d" % (k, n)
                    c.request("POST", PATH, body=json.dumps({
                        "envelope_sender": "s@src.test", "recipients": [{"email": "r@dest.test"}],
                        "content": "Subject: %s\r\n\r\nbody\r\n" % tag}),
                        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
                    r = c.getresponse()
                    reply = json.loads(r.read())
                    if r.status != 200:
                        errors.append(reply)
                        return
                    acked[reply["queue_ids"][0]] = tag
                    n += 1
            except (OSError, http.client.HTTPException, ValueError):
                if not stop.is_set():
                    errors.append("sender %d failed before the kill" % k)

        threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 300 or errors, 120, 0.01)
        stop.set()
        d.kill9()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        again = harness.Ringmaild(workers=2, port=d.port, tmp=d.tmp)
        again.settings = d.settings
        spooled = {m["queue_id"]: m for m in spool_messages(self.spool_dir(d))}
        missing = [q for q in acked if q not in spooled]
        self.assertEqual(missing, [], "%d acknowledged messages lost" % len(missing))
        for q, tag in acked.items():
            self.assertIn(("Subject: %s\r\n" % tag).encode(), spooled[q]["record"]["body"])
        print("http kill -9: %d acknowledged, %d in the spool" % (len(acked), len(spooled)), file=sys.stderr)
        # The restarted daemon recovers them.
        self.daemons.append(again.start())
        self.finish(again)


if __name__ == "__main__":
    unittest.main(verbosity=2)
