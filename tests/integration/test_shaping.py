#!/usr/bin/python3
"""test_shaping - response rules and site suspension end to end.

Three domains share one MX host (a "site" by its MX suffix). The receiver
(aiosmtpd) answers RCPT with 421 4.7.28 while its storm is on. The first
such reply suspends the site: no connection reaches the receiver while
`ringmailctl shaping status` says suspended (counted at the receiver),
mail for every domain of the site waits, and it is delivered after
`ringmailctl shaping resume` or when the suspension runs out. Other rules:
bounce now, suppress. Loopback only; every process is stopped by PID.
"""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
DOMAINS = ["a.test", "b.test", "c.test"]


class Storm(mailnet.RecordingHandler):
    def __init__(self):
        super().__init__()
        self.storm = True
        self.storm_replies = 0

    def rcpt_reply(self, address):
        if address.startswith("deferme"):
            return "451 4.3.0 <%s>: try later, we are moving" % address
        if address.startswith("blockme"):
            return "550 5.7.1 <%s>: blocked for complaints" % address
        if self.storm:
            self.storm_replies += 1
            return "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"
        return None

    def connections(self):
        with self.lock:
            return self.sessions


SHAPING = """
sites = (
  { name = "bigmail"; mx = [ ".bigmail.test" ]; }
);
responses = (
  { code = "421"; enhanced = "4.7.28"; text = "unusual rate|rate limit"; action = "suspend";
    scope = "site"; duration = "%s"; },
  { code = "4xx"; enhanced = "4.3.0"; text = "we are moving"; action = "bounce"; },
  { code = "5xx"; enhanced = "5.7.1"; text = "complaints"; action = "suppress"; }
);
"""


class Shaping(mailnet.NetTestCase, unittest.TestCase):
    def ctl(self, d, *args, ok=True):
        p = subprocess.run([CTL, "--config", d.config_path] + list(args), capture_output=True, text=True,
                           timeout=60)
        if ok:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def status(self, d):
        rows = [json.loads(x) for x in self.ctl(d, "shaping", "status", "--json").stdout.splitlines()]
        return {r["site"]: r for r in rows}

    def setup_relay(self, duration):
        net = mailnet.Addresses(1)
        zone = []
        for dom in DOMAINS:
            zone += mailnet.mx_zone(dom, [(10, "mx.bigmail.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, Storm()))
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write(SHAPING % duration)
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["shaping"] = {"file": path}
        d = self.relay(settings)
        return d, rcv

    def storm_then_wait(self, d, rcv):
        """The first message meets the storm; then mail for every domain of
        the site is queued while it is suspended. Returns the recipients."""
        first = "first@a.test"
        mailnet.submit(d.host, d.port, [("s@client.test", [first], mailnet.make_message(
            "f@client.test", "s@client.test", [first]), [], [])], connections=1)
        self.assertTrue(mailnet.wait_until(lambda: mailnet.events(d.log_text(), "shaping_action"), 30),
                        "no suspension:\n" + d.log_text()[-3000:])
        rcv.handler.storm = False
        line = mailnet.events(d.log_text(), "shaping_action")[0]
        self.assertIn("action=suspend scope=site site=bigmail", line)
        rcpts = ["r%d@%s" % (i, dom) for dom in DOMAINS for i in range(3)]
        mailnet.submit(d.host, d.port, [("s@client.test", [r], mailnet.make_message(
            "m%s@client.test" % r, "s@client.test", [r]), [], []) for r in rcpts], connections=3)
        return [first] + rcpts

    def assert_quiet_while_suspended(self, d, rcv, polls):
        """Poll the status: while it says suspended, the receiver's count of
        connections must not move. Returns how many polls saw it suspended."""
        base = rcv.handler.connections()
        seen = 0
        for _ in range(polls):
            before = rcv.handler.connections()
            st = self.status(d)["bigmail"]
            if st["state"] != "suspended":
                break
            self.assertEqual(before, base, "a connection reached the receiver during the suspension")
            seen += 1
            time.sleep(0.2)
        return seen

    def test_storm_suspends_site_until_resumed(self):
        d, rcv = self.setup_relay("1h")
        rcpts = self.storm_then_wait(d, rcv)
        # Every domain of the site got parked (b and c never had a 421).
        self.assertTrue(mailnet.wait_until(lambda: all(
            any("domain=%s site=bigmail" % dom in x for x in mailnet.events(d.log_text(), "shaping_parked"))
            for dom in DOMAINS), 30), d.log_text()[-4000:])
        seen = self.assert_quiet_while_suspended(d, rcv, 10)
        self.assertEqual(seen, 10, "the 1h suspension ended by itself")
        st = self.status(d)["bigmail"]
        self.assertEqual(st["suspensions"], 1, st)
        self.assertGreater(st["remaining_s"], 3000, st)
        self.assertEqual(rcv.handler.snapshot(), [])
        self.assertEqual(rcv.handler.storm_replies, 1, "one 421, then no more tries")

        p = self.ctl(d, "shaping", "resume", "bigmail")
        self.assertIn("bigmail resumed", p.stderr)
        self.assertTrue(mailnet.wait_until(
            lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == sorted(rcpts), 60),
            "not delivered after resume:\n" + d.log_text()[-4000:])
        self.assertEqual(self.status(d)["bigmail"]["state"], "active")
        bad = self.ctl(d, "shaping", "resume", "nosuch", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("no site named nosuch", bad.stderr)
        text = self.stop_relay(d)
        self.assertIn("event=shaping_resumed", text)

    def test_suspension_runs_out_by_itself(self):
        d, rcv = self.setup_relay("3s")
        rcpts = self.storm_then_wait(d, rcv)
        self.assert_quiet_while_suspended(d, rcv, 100)
        self.assertTrue(mailnet.wait_until(
            lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == sorted(rcpts), 60),
            "not delivered after the suspension:\n" + d.log_text()[-4000:])
        self.stop_relay(d)

    def test_suspension_survives_a_restart(self):
        """A suspension goes to spool.dir/shaping.state; the restarted relay
        keeps it (no connection to the receiver) until it is resumed."""
        d, rcv = self.setup_relay("1h")
        rcpts = self.storm_then_wait(d, rcv)
        state = os.path.join(d.settings["spool"]["dir"], "shaping.state")

        def saved():
            try:
                with open(state) as f:
                    return f.read()
            except OSError:
                return ""
        self.assertTrue(mailnet.wait_until(lambda: "bigmail suspend " in saved(), 10), saved())
        until = int(saved().split("bigmail suspend ")[1].split()[0])
        self.assertAlmostEqual(until / 1000.0, time.time() + 3600, delta=60)
        self.stop_relay(d)
        base = rcv.handler.connections()
        d.start()
        self.assertIn("event=shaping_state_load", d.log_text())
        st = self.status(d)["bigmail"]
        self.assertEqual(st["state"], "suspended", st)
        self.assertGreater(st["remaining_s"], 3000, st)
        self.assertEqual(self.assert_quiet_while_suspended(d, rcv, 15), 15, "the suspension ended")
        self.assertEqual(rcv.handler.connections(), base, "a connection during the restored suspension")
        self.assertEqual(rcv.handler.snapshot(), [])
        self.ctl(d, "shaping", "resume", "bigmail")
        self.assertTrue(mailnet.wait_until(
            lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == sorted(rcpts), 60),
            "not delivered after resume:\n" + d.log_text()[-4000:])
        self.assertTrue(mailnet.wait_until(lambda: "bigmail suspend" not in saved(), 10), saved())
        self.stop_relay(d)
        # Restarted again: nothing to restore, mail flows at once.
        d.start()
        self.assertEqual(self.status(d)["bigmail"]["state"], "active")
        self.stop_relay(d)

    def test_bounce_and_suppress_rules(self):
        d, rcv = self.setup_relay("1h")
        rcv.handler.storm = False
        mailnet.submit(d.host, d.port, [("s@client.test", ["deferme@a.test", "blockme@b.test"],
                                         mailnet.make_message("x@client.test", "s@client.test", ["x"]), [], [])],
                       connections=1)
        lines = self.wait_log(d, lambda ls: len([x for x in ls if x["status"] == "bounced" and x["domain"] != "client.test"]) == 2, 30,
                              "two bounces")
        by = {x["rcpt"]: x for x in lines if x["domain"] != "client.test"}
        self.assertEqual((by["deferme@a.test"]["code"], by["deferme@a.test"]["attempt"]), ("451", "1"))
        self.assertEqual(by["blockme@b.test"]["category"], "policy")
        # The suppress rule put blockme on the list (policy is not in suppression.categories).
        self.assertTrue(mailnet.wait_until(lambda: self.ctl(d, "suppression", "list", "blockme@b.test",
                                                            ok=False).returncode == 0, 20))
        self.assertFalse(self.ctl(d, "suppression", "list", "deferme@a.test", ok=False).returncode == 0)
        text = self.stop_relay(d)
        self.assertIn("action=bounce", text)
        self.assertIn("action=suppress rcpt=<blockme@b.test>", text)


if __name__ == "__main__":
    unittest.main()
