#!/usr/bin/python3
"""test_suppression - bounce categories and the suppression list end to end.

A receiver (aiosmtpd) answers 550 5.1.1 to reject* recipients. The bounce
is classified (invalid_recipient in the delivery line and the DSN), puts
the address on the suppression list, and the next message to it is refused
at RCPT with 550 5.7.1 and the reason, also after a restart; ringmailctl
lists, removes, adds, imports and exports entries; with
suppression.check = "delivery" a queued recipient on the list bounces
instead of being sent. Loopback only; every process is stopped by PID.
"""
import email
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")


class Rejecting(mailnet.RecordingHandler):
    def rcpt_reply(self, address):
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        return None


def of(lines, rcpt):
    return [x for x in lines if x["rcpt"] == rcpt]


def rcpt_reply(d, rcpt):
    """rcpt_reply - (code, text) of RCPT TO:<rcpt> in a fresh session."""
    s = smtplib.SMTP(d.host, d.port, timeout=30)
    try:
        s.ehlo("client.test")
        s.mail("a@client.test")
        code, text = s.rcpt(rcpt)
        s.rset()
        return code, text.decode()
    finally:
        s.quit()


class Suppression(mailnet.NetTestCase, unittest.TestCase):
    def ctl(self, d, *args, stdin=None, ok=True):
        p = subprocess.run([CTL, "--config", d.config_path, "suppression"] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=60)
        if ok:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def setup_net(self):
        net = mailnet.Addresses(2)
        zone = (mailnet.mx_zone("sup.test", [(10, "mx.sup.test", net.ips[0])]) +
                mailnet.mx_zone("senders.test", [(10, "mx.senders.test", net.ips[1])]))
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, Rejecting()))
        home = self.started(mailnet.Receiver(net.ips[1], net.port))
        return net, dns, rcv, home

    def test_hard_bounce_suppresses_next_rcpt(self):
        net, dns, rcv, home = self.setup_net()
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        msg = mailnet.make_message("m1@client.test", "alice@senders.test", ["reject1@sup.test"])
        mailnet.submit(d.host, d.port, [("alice@senders.test", ["reject1@sup.test", "ok@sup.test"], msg, [], [])],
                       connections=1)
        lines = self.wait_log(d, lambda ls: any(x["status"] == "bounced" for x in of(ls, "reject1@sup.test")),
                              60, "the bounce")
        b = [x for x in of(lines, "reject1@sup.test") if x["status"] == "bounced"][0]
        self.assertEqual((b["code"], b["dsn"], b["category"]), ("550", "5.1.1", "invalid_recipient"), b)
        ok = [x for x in of(lines, "ok@sup.test")]
        self.assertEqual([(x["status"], x["category"]) for x in ok], [("delivered", "-")], ok)

        # The list reaches every worker within a loop pass: poll RCPT.
        got = []
        self.assertTrue(mailnet.wait_until(lambda: got.append(rcpt_reply(d, "Reject1@sup.test")) or
                                           got[-1][0] == 550, 20),
                        "never refused: %r\n%s" % (got[-3:], d.log_text()[-3000:]))
        code, text = got[-1]
        self.assertIn("5.7.1", text)
        self.assertIn("suppressed", text)
        self.assertIn("550 5.1.1", text)    # the reason: the bounce's reply
        # Every SMTP worker refuses it (connections spread over them).
        for _ in range(6):
            self.assertEqual(rcpt_reply(d, "reject1@sup.test")[0], 550)
        self.assertEqual(rcpt_reply(d, "ok@sup.test")[0], 250)
        # The DSN says the category.
        self.assertTrue(mailnet.wait_until(lambda: len(home.handler.snapshot()) >= 1, 30), "no DSN")
        dsn = home.handler.snapshot()[0].content.decode()
        self.assertIn("X-Ringmail-Bounce-Category: invalid_recipient", dsn)
        self.assertIn("(category: invalid_recipient)", dsn)

        listing = self.ctl(d, "list", "--json").stdout.splitlines()
        rows = [json.loads(x) for x in listing]
        self.assertEqual([r["address"] for r in rows], ["reject1@sup.test"], listing)
        self.assertEqual(rows[0]["expires"], 0)
        self.assertIn("5.1.1", rows[0]["reason"])
        self.stop_relay(d)

        # Durable: a restart on the same spool still refuses it.
        d.start()
        self.assertEqual(rcpt_reply(d, "reject1@sup.test")[0], 550)
        self.ctl(d, "remove", "reject1@sup.test")
        self.assertTrue(mailnet.wait_until(lambda: rcpt_reply(d, "reject1@sup.test")[0] == 250, 20),
                        "still refused after remove")
        p = self.ctl(d, "remove", "reject1@sup.test", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not on the list", p.stderr)
        text = self.stop_relay(d)
        self.assertIn("event=suppression_add", text)
        # The receiver saw the refused address once (the first message), never again.
        self.assertEqual(sum(1 for m in rcv.handler.snapshot() for r in m.rcpts if r == "reject1@sup.test"), 0)
        self.assertEqual(rcv.handler.rcpt_attempts["reject1@sup.test"], 1)

    def test_ctl_add_import_export_expire(self):
        d = self.relay({})
        self.ctl(d, "add", "Person@Example.test", "--reason", "asked to stop, by phone")
        # Long enough to be in the export on a slow (sanitizer) run.
        self.ctl(d, "add", "brief@example.test", "--expire", "15s")
        csv_in = ("address,created,expires,reason\n"
                  "one@import.test,1700000000,,\"complained, twice\"\n"
                  "two@import.test,,4102444800,list hygiene\n")
        p = self.ctl(d, "import", "-", stdin=csv_in)
        self.assertIn("imported 2", p.stderr)
        bad = self.ctl(d, "import", "-", stdin="ok@import.test,1,2,x\nnot-an-address,1,,x\n", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("line 2: not an address", bad.stderr)

        def refused(addr):
            return rcpt_reply(d, addr)[0] == 550
        self.assertTrue(mailnet.wait_until(lambda: refused("two@import.test"), 20))
        code, text = rcpt_reply(d, "person@example.test")
        self.assertEqual(code, 550)
        self.assertIn("asked to stop, by phone", text)
        self.assertEqual(rcpt_reply(d, "ok@import.test")[0], 250)   # the failed import kept nothing

        out = os.path.join(self.tmp, "export.csv")
        self.ctl(d, "export", out)
        with open(out) as f:
            exported = f.read().splitlines()
        self.assertEqual(exported[0], "address,created,expires,reason")
        by_addr = {x.split(",")[0]: x for x in exported[1:]}
        self.assertEqual(sorted(by_addr), ["brief@example.test", "one@import.test",
                                           "person@example.test", "two@import.test"])
        self.assertEqual(by_addr["one@import.test"], 'one@import.test,1700000000,,"complained, twice"')
        self.assertTrue(by_addr["two@import.test"].startswith("two@import.test,"), by_addr)
        self.assertIn(",4102444800,list hygiene", by_addr["two@import.test"])

        # An entry that expired is as good as gone.
        self.assertTrue(mailnet.wait_until(lambda: not refused("brief@example.test"), 40))
        single = self.ctl(d, "list", "brief@example.test", ok=False)
        self.assertEqual(single.returncode, 1)
        self.assertEqual(self.ctl(d, "list", "one@import.test").stdout.split()[0], "one@import.test")
        self.stop_relay(d)

    def test_check_at_delivery_bounces_queued_mail(self):
        net, dns, rcv, home = self.setup_net()
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["suppression"] = {"check": "delivery"}
        d = self.relay(settings)
        self.ctl(d, "add", "blocked@sup.test", "--reason", "unsubscribed")
        time.sleep(0.5)
        # Accepted at RCPT (the check is at delivery) ...
        msg = mailnet.make_message("m2@client.test", "alice@senders.test", ["blocked@sup.test"])
        mailnet.submit(d.host, d.port, [("alice@senders.test", ["blocked@sup.test", "fine@sup.test"], msg, [], [])],
                       connections=1)
        lines = self.wait_log(d, lambda ls: of(ls, "blocked@sup.test") and of(ls, "fine@sup.test"), 60,
                              "both recipients")
        b = of(lines, "blocked@sup.test")
        self.assertEqual([(x["status"], x["code"], x["dsn"]) for x in b], [("bounced", "550", "5.7.1")], b)
        self.assertEqual([x["status"] for x in of(lines, "fine@sup.test")], ["delivered"])
        self.stop_relay(d)
        # ... and never sent.
        self.assertNotIn("blocked@sup.test", rcv.handler.rcpt_attempts)


if __name__ == "__main__":
    unittest.main()
