#!/usr/bin/python3
"""test_smarthost_routes - the loose ends of issue 17 (smart host), against
the real daemon:

- ringmailctl queue ... --domain D (list, summary, hold, release, flush,
  delete) and domains --domain D also cover mail queued under a sender
  route for D (shown "D via HOP"; JSON has "sender_route");
- delivery.sender_routes[].tls: implicit TLS to a second ringmaild's smtps
  listener (AUTH required there) through a sender route while the
  recipient domain's policy is the default;
- a reload (SIGHUP, ringmailctl reload) moves delivery.relayhost,
  domains[].route and delivery.sender_routes to their new hops for the
  next messages, and a deferred message whose hop changed goes to the new
  hop at once instead of waiting for its backoff;
- a reload while the old hop's DNS lookup hangs: the lookup is cancelled
  and the mail goes to the new hop at once;
- a ringmailctl resolve still waiting for DNS when the daemon stops: the
  lookup is cancelled, nothing leaks (run under the ASan build:
  RINGMAIL_BIN=build-asan/bin RINGMAIL_SANITIZE=1).

Every process is stopped by PID; the daemons must exit 0 without sanitizer
reports.
"""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
import test_smarthost as smarthost  # noqa: E402
from inbound_common import DaemonTestCase, closed_port, send_smtplib, wait_for  # noqa: E402
from test_starttls import make_cert  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")


def message(subject, rcpt="bob@dest.test"):
    return ("From: app@src.test\r\nTo: %s\r\nSubject: %s\r\n\r\nhello %s\r\n"
            % (rcpt, subject, subject)).encode()


class Routes(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.receivers = []

    def tearDown(self):
        for r in self.receivers:
            r.stop()
        super().tearDown()

    def receiver(self):
        r = mailnet.Receiver("127.0.0.1", harness.free_port()).start()
        self.receivers.append(r)
        return r

    def relay(self, delivery, extra=None):
        settings = {"delivery": dict({"min_backoff": "1h", "max_backoff": "2h"}, **delivery)}
        settings.update(extra or {})
        return self.daemon(extra=settings)

    def ctl(self, d, *args, check=True):
        sock = os.path.join(d.settings["spool"]["dir"], "control.sock")
        p = subprocess.run([CTL, "--socket", sock] + list(args), capture_output=True, text=True,
                           timeout=120)
        if check:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def items(self, d, *args):
        out = self.ctl(d, "queue", "list", "--json", *args).stdout
        return [json.loads(line) for line in out.splitlines()]

    def delivery_lines(self, d, qid):
        want = "event=delivery id=%s " % qid
        return [x for x in d.log_text().splitlines() if want in x]

    def wait_received(self, receiver, subject, timeout=60):
        got = wait_for(lambda: [m for m in receiver.handler.snapshot()
                                if ("Subject: %s" % subject).encode() in m.content], timeout=timeout)
        self.assertTrue(got, "%s never reached the receiver on port %d" % (subject, receiver.port))
        return got[0]

    def subjects(self, receiver):
        out = []
        for m in receiver.handler.snapshot():
            head = m.content.decode("utf-8", "replace").split("\r\n\r\n", 1)[0]
            out += [x[9:] for x in head.split("\r\n") if x.startswith("Subject: ")]
        return sorted(out)

    def reload(self, d):
        d.write_config()
        self.assertIn("reloaded", self.ctl(d, "reload").stderr)

    # --- 1. queue commands with --domain see the sender route's queue ---------

    def test_queue_domain_covers_sender_routes(self):
        hop = "127.0.0.1:%d" % closed_port()
        relay = self.relay({"relayhost": "[127.0.0.1]:%d" % closed_port(),
                            "sender_routes": [{"sender": "tenant-a.test", "route": hop}]})
        q_routed = send_smtplib(relay, "app@tenant-a.test", ["bob@dest.test"], message("routed"))
        q_plain = send_smtplib(relay, "app@other.test", ["carol@dest.test"], message("plain"))
        send_smtplib(relay, "app@tenant-a.test", ["x@elsewhere.test"], message("elsewhere"))
        ok = wait_for(lambda: len([i for i in self.items(relay) if i["state"] == "deferred"]) == 3, 60)
        self.assertTrue(ok, self.items(relay))

        items = {i["queue_id"]: i for i in self.items(relay, "--domain", "Dest.test")}
        self.assertEqual(sorted(items), sorted([q_routed, q_plain]), items)
        self.assertEqual(items[q_routed]["sender_route"], hop)
        self.assertEqual(items[q_routed]["domain"], "dest.test")
        self.assertIsNone(items[q_plain]["sender_route"])
        text = self.ctl(relay, "queue", "list", "--domain", "dest.test").stdout
        self.assertIn("dest.test via %s" % hop, text)
        self.assertEqual(len(self.items(relay, "--domain", "dest.test", "--deferred")), 2)

        rows = [json.loads(x) for x in self.ctl(relay, "domains", "--domain", "dest.test", "--json").stdout.splitlines()]
        self.assertEqual(sorted((r["domain"], r["sender_route"] or "-") for r in rows),
                         sorted([("dest.test", "-"), ("dest.test", hop)]), rows)
        summary = [json.loads(x) for x in
                   self.ctl(relay, "queue", "summary", "--domain", "dest.test", "--json").stdout.splitlines()]
        self.assertEqual(summary[0]["domain"], "TOTAL")
        self.assertEqual(summary[0]["total"], 2, summary)
        self.assertIn("dest.test via %s" % hop, [r["domain"] for r in summary])

        self.assertIn("held 2 of 2", self.ctl(relay, "queue", "hold", "--domain", "dest.test").stderr)
        self.assertEqual(len(self.items(relay, "--domain", "dest.test", "--held")), 2)
        self.assertIn("released 2 of 2", self.ctl(relay, "queue", "release", "--domain", "dest.test").stderr)
        wait_for(lambda: all(i["state"] == "deferred" for i in self.items(relay, "--domain", "dest.test")), 30)
        attempts = {i["queue_id"]: i["attempts"] for i in self.items(relay, "--domain", "dest.test")}
        flushed = self.ctl(relay, "queue", "flush", "dest.test").stderr
        self.assertIn("flushed 2 of 2", flushed)
        # The flushed items are tried again (the closed port refuses them).
        ok = wait_for(lambda: all(i["state"] == "deferred" and i["attempts"] > attempts[i["queue_id"]]
                                  for i in self.items(relay, "--domain", "dest.test")), 60)
        self.assertTrue(ok, self.items(relay, "--domain", "dest.test"))
        self.assertIn("deleted 2 of 2", self.ctl(relay, "queue", "delete", "--domain", "dest.test").stderr)
        self.assertEqual(self.items(relay, "--domain", "dest.test"), [])
        left = self.items(relay)
        self.assertEqual([i["domain"] for i in left], ["elsewhere.test"], left)
        self.assertEqual(left[0]["sender_route"], hop)
        self.finish(relay)

    # --- 2. a sender route's tls ----------------------------------------------

    def test_sender_route_tls_implicit(self):
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)
        cert, key = make_cert(certs, "up", "upstream.test")
        final = self.receiver()
        users = os.path.join(self.tmp, "upstream-users")
        r = subprocess.run([CTL, "users", "add", "--file", users, smarthost.USER],
                           input=smarthost.PASSWORD + "\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        smtps_port = harness.free_port()
        up = self.daemon(extra={
            "tls": {"cert_file": cert, "key_file": key},
            "users": {"file": users},
            "relay_networks": [],
            "smtps": {"listen": ["127.0.0.1:%d" % smtps_port]},
            "delivery": {"relayhost": "[127.0.0.1]:%d" % final.port, "min_backoff": "1s",
                         "max_backoff": "2s"},
        })
        harness.wait_port("127.0.0.1", smtps_port)
        hop = "[127.0.0.1]:%d" % smtps_port
        auth = os.path.join(self.tmp, "auth")
        with open(auth, "w") as f:
            f.write("%s %s:%s\n" % (hop, smarthost.USER, smarthost.PASSWORD))
        os.chmod(auth, 0o600)
        # The recipient domain's policy is the default (may): without the
        # route's tls, the client would wait for a greeting in clear.
        relay = self.relay({"relayhost": "[127.0.0.1]:%d" % closed_port(), "auth_file": auth,
                            "sender_routes": [{"sender": "tenant-a.test", "route": hop, "tls": "implicit"}]})
        qid = send_smtplib(relay, "app@tenant-a.test", ["bob@dest.test"], message("route tls"))
        lines = wait_for(lambda: self.delivery_lines(relay, qid), 60)
        self.assertTrue(lines, relay.log_text()[-3000:])
        self.assertIn("status=delivered", lines[0])
        self.assertIn("tls=TLSv1.2", lines[0])
        self.wait_received(final, "route tls")
        self.assertIn("implicit=1", up.log_text())
        self.assertNotIn(smarthost.PASSWORD, relay.log_text())
        self.finish(relay)
        self.finish(up)

    def test_sender_route_tls_none_still_never_sends_credentials_in_clear(self):
        port = harness.free_port()
        hop_server = smarthost.NoTLSHop("127.0.0.1", port)
        try:
            hop = "[127.0.0.1]:%d" % port
            auth = os.path.join(self.tmp, "auth")
            with open(auth, "w") as f:
                f.write("%s %s:%s\n" % (hop, smarthost.USER, smarthost.PASSWORD))
            os.chmod(auth, 0o600)
            relay = self.relay({"auth_file": auth,
                                "sender_routes": [{"sender": "tenant-a.test", "route": hop, "tls": "none"}]})
            qid = send_smtplib(relay, "app@tenant-a.test", ["bob@dest.test"], message("no tls"))
            lines = wait_for(lambda: self.delivery_lines(relay, qid), 60)
            self.assertTrue(lines, relay.log_text()[-3000:])
            self.assertIn("status=deferred", lines[0])
            self.assertIn("dsn=4.7.4", lines[0])
            seen = hop_server.bytes()
            self.assertIn(b"EHLO", seen)
            self.assertNotIn(b"AUTH", seen)
            self.assertNotIn(b"MAIL FROM", seen)
            self.finish(relay)
        finally:
            hop_server.stop()

    # --- 3. a reload moves the next hops ----------------------------------------

    def test_reload_moves_relayhost_routes_and_sender_routes(self):
        a, b = self.receiver(), self.receiver()
        stuck = closed_port()
        relay = self.relay(
            {"relayhost": "[127.0.0.1]:%d" % a.port, "idle_timeout": "30s",
             "sender_routes": [{"sender": "tenant-a.test", "route": "127.0.0.1:%d" % a.port}]},
            {"domains": [{"name": ".routed.test", "route": "[127.0.0.1]:%d" % a.port},
                         {"name": "stuck.test", "route": "127.0.0.1:%d" % stuck}]})
        before = (("app@src.test", "x@dest.test", "relayhost 1"),
                  ("app@src.test", "y@sub.routed.test", "route 1"),
                  ("app@tenant-a.test", "z@dest.test", "sender route 1"))
        for sender, rcpt, subject in before:
            send_smtplib(relay, sender, [rcpt], message(subject, rcpt))
        for _, _, subject in before:
            self.wait_received(a, subject)
        # One that waits for its backoff (an hour) at a closed port.
        q_stuck = send_smtplib(relay, "app@src.test", ["s@stuck.test"], message("stuck", "s@stuck.test"))
        lines = wait_for(lambda: self.delivery_lines(relay, q_stuck), 60)
        self.assertTrue(lines and "status=deferred" in lines[0], relay.log_text()[-3000:])

        relay.settings["delivery"]["relayhost"] = "127.0.0.1:%d" % b.port
        relay.settings["delivery"]["sender_routes"] = [{"sender": "tenant-a.test",
                                                        "route": "[127.0.0.1]:%d" % b.port}]
        relay.settings["domains"] = [{"name": ".routed.test", "route": "127.0.0.1:%d" % b.port},
                                     {"name": "stuck.test", "route": "[127.0.0.1]:%d" % b.port}]
        self.reload(relay)
        after = (("app@src.test", "x@dest.test", "relayhost 2"),
                 ("app@src.test", "y@sub.routed.test", "route 2"),
                 ("app@tenant-a.test", "z@dest.test", "sender route 2"))
        for sender, rcpt, subject in after:
            send_smtplib(relay, sender, [rcpt], message(subject, rcpt))
        for _, _, subject in after:
            self.wait_received(b, subject)
        # The deferred one moved with its domain, long before its backoff.
        self.wait_received(b, "stuck", timeout=30)
        self.assertEqual(self.subjects(a), sorted(s for _, _, s in before))
        self.assertEqual(self.subjects(b), sorted([s for _, _, s in after] + ["stuck"]))
        self.assertIn("event=domain_rerouted", relay.log_text())
        self.assertNotIn("status=bounced", relay.log_text())
        self.finish(relay)

    def test_reload_moves_deferred_sender_route_mail(self):
        b = self.receiver()
        relay = self.relay(
            {"sender_routes": [{"sender": "tenant-a.test", "route": "127.0.0.1:%d" % closed_port()}]})
        qid = send_smtplib(relay, "app@tenant-a.test", ["bob@dest.test"], message("tenant deferred"))
        lines = wait_for(lambda: self.delivery_lines(relay, qid), 60)
        self.assertTrue(lines and "status=deferred" in lines[0], relay.log_text()[-3000:])
        relay.settings["delivery"]["sender_routes"] = [{"sender": "tenant-a.test",
                                                        "route": "127.0.0.1:%d" % b.port}]
        self.reload(relay)
        got = self.wait_received(b, "tenant deferred", timeout=30)
        self.assertEqual(got.rcpts, ["bob@dest.test"])
        self.assertIn("items_moved=1", relay.log_text())
        self.finish(relay)

    # --- 4. lookups cancelled --------------------------------------------------

    def test_reload_cancels_the_old_hops_lookup(self):
        """The relayhost's lookup never answers (a blackhole nameserver,
        30 s timeout): a reload to an IP next hop cancels it, and the mail
        goes there without waiting for the timeout (which would defer it
        for an hour)."""
        hole = mailnet.Blackhole()
        try:
            b = self.receiver()
            relay = self.relay({"relayhost": "slow.test:25"},
                               {"dns": {"nameservers": [hole.ns], "timeout": "30s", "tries": 1}})
            send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("was slow"))
            self.assertTrue(wait_for(lambda: hole.queries > 0, timeout=30))
            relay.settings["delivery"]["relayhost"] = "127.0.0.1:%d" % b.port
            self.reload(relay)
            self.wait_received(b, "was slow", timeout=20)
            self.assertNotIn("status=deferred", relay.log_text())
            self.finish(relay)
        finally:
            hole.stop()

    def test_resolve_pending_at_shutdown(self):
        """ringmailctl resolve waits for a lookup that never answers; the
        daemon stops meanwhile: the control session is closed, its lookup
        cancelled and the session freed (ASan's leak check at exit)."""
        hole = mailnet.Blackhole()
        try:
            relay = self.relay({"relayhost": "slow.test:25"},
                               {"dns": {"nameservers": [hole.ns], "timeout": "30s", "tries": 1}})
            sock = os.path.join(relay.settings["spool"]["dir"], "control.sock")
            p = subprocess.Popen([CTL, "--socket", sock, "resolve", "any.where"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.assertTrue(wait_for(lambda: hole.queries > 0, timeout=30))
                relay.send_signal(signal.SIGTERM)
                self.finish(relay)
            finally:
                p.wait(60)
                p.stdout.close()
                p.stderr.close()
        finally:
            hole.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
