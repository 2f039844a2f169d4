#!/usr/bin/python3
"""test_webhooks - delivery events POSTed to a webhook receiver (issue 21,
docs/HTTP.md "Webhooks"), against a real ringmaild, an aiosmtpd receiver
that accepts, bounces (550) or defers (451) by recipient, and a Python
http.server webhook receiver.

- every event of the delivery log (delivered, bounced, deferred, expired,
  suppressed at RCPT) reaches the receiver at least once, never none,
  across a SIGTERM restart, a kill -9 and a 10 s outage of the receiver;
  each POST is a JSON array of the log's objects with "event" added;
- the events filter: a receiver of ["bounced", "suppressed"] gets those
  and nothing else; a receiver answering 500 gets the same batch again
  (backoff) until it answers 200; the metrics count sent events and
  failed posts;
- HTTP injection refuses a recipient on the suppression list (it goes to
  failed_recipients with the list's reason) and queues the others.
Loopback only; every process is stopped by PID.
"""
import hashlib
import http.client
import http.server
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
TOKEN = "rm-webhook-test-token"


class ByRecipient(mailnet.RecordingHandler):
    """reject* bounce (550 5.1.1), slow* defer (451), the rest are accepted."""

    def rcpt_reply(self, address):
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.startswith("slow"):
            return "451 4.2.0 <%s>: try again later" % address
        return None


class Hook:
    """Hook - a webhook receiver (http.server) on 127.0.0.1:port; answers
    500 to the first fail_first POSTs, 200 to the rest; can be stopped and
    started again on the same port."""

    def __init__(self, port, fail_first=0):
        self.port, self.fail_first = port, fail_first
        self.lock = threading.Lock()
        self.posts = 0
        self.batches = []           # accepted POSTs, parsed
        self.refused = []           # bodies answered 500
        self.bad = []               # what was not a JSON array of objects
        self.server = None
        self.conns = []

    def start(self):
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with hook.lock:
                    hook.conns.append(self.connection)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.posts += 1
                    fail = hook.posts <= hook.fail_first
                    try:
                        batch = json.loads(body)
                        ok = (self.headers.get("Content-Type") == "application/json" and
                              isinstance(batch, list) and batch and all(isinstance(e, dict) for e in batch))
                    except ValueError:
                        ok = False
                    if not ok:
                        hook.bad.append(body)
                    elif fail:
                        hook.refused.append(body)
                    else:
                        hook.batches.append(batch)
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """stop - no listener and no connection (curl keeps one alive)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def events(self):
        with self.lock:
            return [e for b in self.batches for e in b]

    @property
    def url(self):
        return "http://127.0.0.1:%d/events" % self.port


def key(e):
    """key - what makes one delivery log line one event."""
    return (e.get("ts"), e.get("queue_id"), e.get("recipient"), e.get("status"), e.get("attempt"))


def event_type(e):
    if e["status"] == "bounced" and e.get("enhanced_code") == "4.4.7":
        return "expired"
    if e["status"] == "suppressed" or (e["status"] == "bounced" and
                                       (e.get("reply") or "").startswith("Recipient address suppressed")):
        return "suppressed"
    return e["status"]


def log_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


class Webhooks(mailnet.NetTestCase, unittest.TestCase):
    def setup_net(self):
        net = mailnet.Addresses(1)
        dns = self.started(mailnet.Dnsmasq(self.tmp, mailnet.mx_zone("hook.test", [(10, "mx.hook.test", net.ips[0])])))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, ByRecipient()))
        return net, dns, rcv

    def daemon(self, net, dns, hooks, more=None, **delivery):
        settings = mailnet.relay_settings(net.port, dns.ns, **delivery)
        settings["webhooks"] = hooks
        # Bounces do not feed the list here: the same reject* address is
        # mailed again and again (the list is fed by hand below).
        settings["suppression"] = {"categories": ""}
        settings.update(more or {})
        d = harness.Ringmaild(workers=2, extra=settings, tmp=tempfile.mkdtemp(prefix="relay-", dir=self.tmp))
        d.delivery_file = os.path.join(d.tmp, "delivery.json")
        d.settings["log"]["delivery_file"] = d.delivery_file
        self.addCleanup(d.stop)
        return d.start()

    def send(self, d, rcpts, n, tag):
        msgs = [("app@src.test", rcpts, mailnet.make_message("%s-%d@src.test" % (tag, i), "app@src.test", rcpts), [], [])
                for i in range(n)]
        mailnet.submit(d.host, d.port, msgs, connections=2)

    def wait_finals(self, d, rcpt, n, timeout=60):
        """wait until rcpt has n final (delivered or bounced) lines in the log."""
        def count():
            return sum(1 for e in log_lines(d.delivery_file)
                       if e["recipient"] == rcpt and e["status"] in ("delivered", "bounced"))
        if not mailnet.wait_until(lambda: count() >= n, timeout, 0.2):
            self.fail("%s: %d of %d final lines\n%s" % (rcpt, count(), n, d.log_text()[-3000:]))

    def wait_all_sent(self, d, hook, timeout=60, types=None):
        """wait until every event of the delivery log (of types) is at the receiver."""
        def missing():
            want = {key(e) for e in log_lines(d.delivery_file) if types is None or event_type(e) in types}
            return want - {key(e) for e in hook.events()}
        ok = mailnet.wait_until(lambda: not missing(), timeout, 0.2)
        if not ok:
            self.fail("events never sent: %r\nlog tail:\n%s" % (sorted(missing())[:5], d.log_text()[-4000:]))

    def test_every_event_at_least_once_across_restarts_and_outage(self):
        net, dns, rcv = self.setup_net()
        hook = self.started(Hook(harness.free_port()))
        hooks = [{"url": hook.url, "batch": 7, "retry_min": "200ms", "retry_max": "1s", "timeout": "2s"}]
        d = self.daemon(net, dns, hooks, queue_lifetime="4s")

        # delivered, bounced, deferred then expired
        self.send(d, ["ok1@hook.test", "reject1@hook.test", "slow1@hook.test"], 10, "a")
        # suppressed at RCPT (the list, then a refusal by smtpd)
        p = subprocess.run([CTL, "--config", d.config_path, "suppression", "add", "gone@hook.test",
                            "--reason", "unsubscribed"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        def refused():
            s = smtplib.SMTP(d.host, d.port, timeout=30)
            try:
                s.ehlo("client.test")
                s.mail("app@src.test")
                return s.rcpt("gone@hook.test")[0] == 550
            finally:
                s.quit()
        self.assertTrue(mailnet.wait_until(refused, 20), "never refused at RCPT")
        self.assertTrue(mailnet.wait_until(
            lambda: {"delivered", "bounced", "deferred", "expired", "suppressed"} <=
            {event_type(e) for e in log_lines(d.delivery_file)}, 60),
            "not every kind of event in the log: %r" % {event_type(e) for e in log_lines(d.delivery_file)})
        self.wait_all_sent(d, hook)
        got = hook.events()
        self.assertEqual({e["event"] for e in got}, {"delivered", "bounced", "deferred", "expired", "suppressed"})
        for e in got:
            self.assertEqual(e["event"], event_type(e), e)
        b = [e for e in got if e["event"] == "bounced"][0]
        self.assertEqual((b["code"], b["enhanced_code"], b["category"]), (550, "5.1.1", "invalid_recipient"), b)
        s = [e for e in got if e["event"] == "suppressed"][0]
        self.assertEqual((s["recipient"], s["queue_id"], s["code"]), ("gone@hook.test", None, 550), s)
        self.assertIn("unsubscribed", s["reply"])
        self.assertTrue(all(len(batch) <= 7 for batch in hook.batches), [len(x) for x in hook.batches])

        # SIGTERM right after new mail: what was not sent goes after the restart.
        self.send(d, ["ok2@hook.test", "reject2@hook.test"], 10, "b")
        self.stop_relay(d)
        cursor = [f for f in os.listdir(d.settings["spool"]["dir"]) if f.startswith("webhook-")]
        self.assertEqual(len(cursor), 1, cursor)
        self.assertTrue(cursor[0].endswith(".cursor"), cursor)
        d.start()
        self.wait_finals(d, "ok2@hook.test", 10)
        self.wait_finals(d, "reject2@hook.test", 10)
        self.wait_all_sent(d, hook)

        # kill -9 with mail in flight.
        self.send(d, ["ok3@hook.test", "reject3@hook.test"], 15, "c")
        mailnet.wait_until(lambda: len(log_lines(d.delivery_file)) > 0, 5)
        d.kill9()
        d.start()
        self.wait_finals(d, "ok3@hook.test", 15)
        self.wait_finals(d, "reject3@hook.test", 15)
        self.wait_all_sent(d, hook)

        # A 10 s outage of the receiver: events wait, then all arrive.
        hook.stop()
        self.send(d, ["ok4@hook.test", "reject4@hook.test"], 10, "d")
        time.sleep(10)
        self.assertTrue(any(" event=webhook_failed " in x for x in d.log_text().splitlines()),
                        d.log_text()[-3000:])
        hook.start()
        self.wait_finals(d, "ok4@hook.test", 10)
        self.wait_finals(d, "reject4@hook.test", 10)
        self.wait_all_sent(d, hook)

        # Nothing the receiver got is made up: every event is a log line.
        lines = {key(e) for e in log_lines(d.delivery_file)}
        self.assertEqual({key(e) for e in hook.events()} - lines, set())
        self.assertEqual(hook.bad, [])
        self.stop_relay(d)

    def test_filter_and_500_retried(self):
        net, dns, rcv = self.setup_net()
        hook = self.started(Hook(harness.free_port(), fail_first=3))
        all_hook = self.started(Hook(harness.free_port()))
        token_file = os.path.join(self.tmp, "tokens")
        with open(token_file, "w") as f:
            f.write("app:%s:inject\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
        harness.give_to_daemon(token_file)
        http_port, metrics_port = harness.free_port(), harness.free_port()
        hooks = [{"url": hook.url, "events": ["bounced", "suppressed"], "retry_min": "300ms", "retry_max": "600ms"},
                 {"url": all_hook.url}]
        d = self.daemon(net, dns, hooks, more={
            "http": {"listen": ["127.0.0.1:%d" % http_port], "token_file": token_file},
            "metrics": {"listen": ["127.0.0.1:%d" % metrics_port]}})
        harness.wait_port("127.0.0.1", http_port)
        p = subprocess.run([CTL, "--config", d.config_path, "suppression", "add", "blocked@hook.test",
                            "--reason", "asked to stop"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        # HTTP injection applies the suppression list (every worker has it
        # within a loop pass: retry until refused).
        def inject():
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            req = {"envelope_sender": "app@src.test",
                   "recipients": [{"email": "ok@hook.test"}, {"email": "blocked@hook.test"},
                                  {"email": "reject@hook.test"}],
                   "content": "From: app@src.test\nSubject: hi\n\nhello\n"}
            c.request("POST", "/api/inject/v1", body=json.dumps(req),
                      headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
            r = c.getresponse()
            out = (r.status, json.loads(r.read()))
            c.close()
            return out
        got = []
        self.assertTrue(mailnet.wait_until(lambda: got.append(inject()) or got[-1][1]["fail_count"] == 1, 20),
                        got[-1:])
        status, reply = got[-1]
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["success_count"], 2, reply)
        self.assertEqual(reply["failed_recipients"], ["blocked@hook.test"], reply)
        self.assertIn("suppressed", reply["errors"][0])
        self.assertIn("asked to stop", reply["errors"][0])

        self.send(d, ["ok5@hook.test", "reject5@hook.test"], 4, "f")
        self.wait_finals(d, "ok5@hook.test", 4)
        self.wait_finals(d, "reject5@hook.test", 4)
        self.wait_all_sent(d, hook, types={"bounced", "suppressed"})
        self.wait_all_sent(d, all_hook)
        ev = hook.events()
        self.assertEqual({e["event"] for e in ev}, {"bounced", "suppressed"}, ev[:3])
        self.assertTrue(any(e["recipient"] == "blocked@hook.test" and e["status"] == "suppressed"
                            and e["sender"] == "app@src.test" for e in ev), ev)
        self.assertIn("delivered", {e["event"] for e in all_hook.events()})
        # The first three POSTs were answered 500; the same batch came again.
        self.assertEqual(len(hook.refused), 3)
        self.assertEqual(json.loads(hook.refused[0]), hook.batches[0])
        failed = [x for x in d.log_text().splitlines() if " event=webhook_failed " in x]
        self.assertTrue(failed and "status=500" in failed[0], failed[:1])
        self.assertIn('error="HTTP status 500"', failed[0])

        def metric(name, url):
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=10).read().decode()
            for line in text.splitlines():
                if line.startswith('%s{url="%s"} ' % (name, url)):
                    return int(line.split()[-1])
            return None
        # (events may still come: a DSN's bounce; compare with what arrived)
        self.assertTrue(mailnet.wait_until(
            lambda: metric("ringmail_webhook_events_sent_total", hook.url) == len(hook.events()), 20),
            (metric("ringmail_webhook_events_sent_total", hook.url), len(hook.events())))
        self.assertEqual(metric("ringmail_webhook_post_failures_total", hook.url), 3)
        self.assertEqual(metric("ringmail_webhook_post_failures_total", all_hook.url), 0)
        self.assertTrue(mailnet.wait_until(lambda: metric("ringmail_webhook_backlog_bytes", all_hook.url) == 0, 10))
        self.assertTrue(mailnet.wait_until(lambda: metric("ringmail_webhook_lag_seconds", hook.url) == 0, 10))
        self.assertEqual(hook.bad + all_hook.bad, [])
        self.stop_relay(d)

    def test_log_rotation_is_followed(self):
        net, dns, rcv = self.setup_net()
        hook = self.started(Hook(harness.free_port()))
        d = self.daemon(net, dns, [{"url": hook.url, "retry_min": "200ms", "retry_max": "1s"}])
        self.send(d, ["ok1@hook.test"], 5, "r1")
        self.wait_finals(d, "ok1@hook.test", 5)
        self.wait_all_sent(d, hook)
        first = log_lines(d.delivery_file)
        self.assertEqual(len(first), 5)
        # logrotate's way: rename, then SIGUSR1 reopens; mail in between
        # lands in the renamed file and must be sent too.
        os.rename(d.delivery_file, d.delivery_file + ".1")
        self.send(d, ["ok2@hook.test"], 5, "r2")
        mailnet.wait_until(lambda: len(log_lines(d.delivery_file + ".1")) == 10, 30)
        d.send_signal(signal.SIGUSR1)
        self.assertTrue(mailnet.wait_until(lambda: os.path.exists(d.delivery_file), 10))
        self.send(d, ["ok3@hook.test"], 5, "r3")
        self.assertTrue(mailnet.wait_until(lambda: len(log_lines(d.delivery_file)) == 5, 30))
        want = {key(e) for e in log_lines(d.delivery_file + ".1") + log_lines(d.delivery_file)}
        self.assertEqual(len(want), 15)
        ok = mailnet.wait_until(lambda: want <= {key(e) for e in hook.events()}, 30)
        self.assertTrue(ok, "missing %r\n%s" % (sorted(want - {key(e) for e in hook.events()})[:3],
                                               d.log_text()[-3000:]))
        self.assertIn("event=webhook_rotate", d.log_text())

        # SIGHUP: the same webhooks keep running; changed ones restart from
        # the cursor (nothing lost, nothing from the start again).
        d.send_signal(signal.SIGHUP)
        self.assertTrue(mailnet.wait_until(lambda: d.log_text().count("event=reload result=ok") == 1, 10))
        self.assertNotIn("event=webhook_reload", d.log_text())
        d.settings["webhooks"][0]["batch"] = 2
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(mailnet.wait_until(lambda: "event=webhook_reload webhooks=1 result=ok" in d.log_text(), 10))
        before = len(hook.events())
        self.send(d, ["ok4@hook.test"], 4, "r4")
        self.wait_finals(d, "ok4@hook.test", 4)
        self.wait_all_sent(d, hook)
        self.assertEqual(len(hook.events()), before + 4, "nothing sent twice")
        self.assertTrue(all(len(b) <= 2 for b in hook.batches[-2:]), hook.batches[-2:])
        self.stop_relay(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
