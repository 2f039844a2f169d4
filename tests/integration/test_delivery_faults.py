#!/usr/bin/python3
"""test_delivery_faults - outbound delivery when things go wrong: temporary
and permanent refusals, dead primary MX, stalling servers, DNS failures.

Loopback only: dnsmasq for *.test, aiosmtpd receivers and ringmail-sink on
127.x.y.z addresses with one common port. Retries are made fast with
delivery.min_backoff/max_backoff = 1s/2s. Every process is stopped by PID;
ringmaild must exit 0 without sanitizer reports.
"""
import email
import email.policy
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402


def of(lines, rcpt):
    return [x for x in lines if x["rcpt"] == rcpt]


class TempThenOk(mailnet.RecordingHandler):
    """451 to the first RCPT of each tempfail-rcpt* address, and to the
    first DATA of each transaction holding a tempfail-data* address."""

    def __init__(self):
        super().__init__()
        self.data_failed = set()

    def rcpt_reply(self, address):
        if address.startswith("tempfail-rcpt") and self.rcpt_attempts[address] == 1:
            return "451 4.7.1 Try again later"
        return None

    def data_reply(self, envelope):
        for r in envelope.rcpt_tos:
            if r.startswith("tempfail-data") and r not in self.data_failed:
                self.data_failed.add(r)
                return "451 4.3.0 Not now"
        return None


class Rejecting(mailnet.RecordingHandler):
    def rcpt_reply(self, address):
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: no such user" % address
        return None


def status_blocks(part):
    """status_blocks - the message/delivery-status part as field dicts."""
    return [dict((k.lower(), str(v)) for k, v in block.items()) for block in part.get_payload()]


class Faults(mailnet.NetTestCase, unittest.TestCase):
    def network(self, zone_domains, n_ips):
        """network - n_ips addresses, dnsmasq for zone_domains(ips)."""
        net = mailnet.Addresses(n_ips)
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone_domains(net.ips)))
        return net, dns

    def test_tempfail_then_retry_delivers(self):
        net, dns = self.network(lambda ips: mailnet.mx_zone("temp.test", [(10, "mx.temp.test", ips[0])]), 1)
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, TempThenOk()))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        rcpts = ["tempfail-rcpt@temp.test", "tempfail-data@temp.test"]
        mailnet.submit(d.host, d.port, [
            ("a@client.test", [r], mailnet.make_message("t%d@client.test" % i, "a@client.test", [r]), [], [])
            for i, r in enumerate(rcpts)], connections=1)
        lines = self.wait_log(d, lambda ls: all(any(x["status"] == "delivered" for x in of(ls, r))
                                                for r in rcpts), 60, "delivery after retry")
        self.stop_relay(d)
        for r in rcpts:
            mine = of(lines, r)
            self.assertEqual([(x["status"], x["attempt"]) for x in mine],
                             [("deferred", "1"), ("delivered", "2")], mine)
            self.assertEqual(mine[0]["code"], "451", mine[0])
            self.assertTrue(mine[0]["dsn"].startswith("4."), mine[0])
        got = rcv.handler.snapshot()
        self.assertEqual(sorted(r for m in got for r in m.rcpts), sorted(rcpts))

    def test_permfail_bounces_to_sender_and_dsn_rules(self):
        def zone(ips):
            return (mailnet.mx_zone("perm.test", [(10, "mx.perm.test", ips[0])]) +
                    mailnet.mx_zone("senders.test", [(10, "mx.senders.test", ips[1])]))
        net, dns = self.network(zone, 2)
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, Rejecting()))
        home = self.started(mailnet.Receiver(net.ips[1], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        original = mailnet.make_message("bounce-me@client.test", "alice@senders.test",
                                        ["reject1@perm.test", "ok@perm.test"], "will bounce")
        mailnet.submit(d.host, d.port, [
            ("alice@senders.test", ["reject1@perm.test", "ok@perm.test"], original, [], []),
            ("", ["reject2@perm.test"], mailnet.make_message("null@client.test", "", ["x"]), [], []),
            ("never@senders.test", ["reject3@perm.test"],
             mailnet.make_message("never@client.test", "never@senders.test", ["x"]), [], ["NOTIFY=NEVER"]),
        ], connections=1)
        want = ["reject1@perm.test", "reject2@perm.test", "reject3@perm.test"]
        lines = self.wait_log(d, lambda ls: all(any(x["status"] == "bounced" for x in of(ls, r))
                                                for r in want), 60, "three bounces")
        self.assertTrue(mailnet.wait_until(lambda: len(home.handler.snapshot()) >= 1, 30),
                        "no DSN arrived:\n" + d.log_text()[-4000:])
        time.sleep(1.5)   # room for a wrong second DSN to show up
        text = self.stop_relay(d)
        for r in want:
            b = [x for x in of(lines, r) if x["status"] == "bounced"][0]
            self.assertEqual((b["code"], b["dsn"], b["attempt"]), ("550", "5.1.1", "1"), b)
        self.assertEqual([x["status"] for x in of(lines, "ok@perm.test")], ["delivered"])

        dsns = home.handler.snapshot()
        self.assertEqual(len(dsns), 1, [m.rcpts for m in dsns])
        dsn = dsns[0]
        self.assertEqual(dsn.sender, "<>")
        self.assertEqual(dsn.rcpts, ["alice@senders.test"])
        dsn_stats = sum(int(v) for v in mailnet.re.findall(r"event=delivery_stats .*? dsn=(\d+)", text))
        self.assertEqual(dsn_stats, 1, "DSNs built (sender <> and NOTIFY=NEVER want none)")

        _, body = mailnet.split_first_header(dsn.content) if dsn.content.startswith(b"Received:") \
            else (None, dsn.content)
        msg = email.message_from_bytes(body, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(str(msg["To"]).strip("<>"), "alice@senders.test")
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        blocks = status_blocks(parts[1])
        self.assertEqual(len(blocks), 2, blocks)    # per message, one failed recipient
        self.assertIn("reporting-mta", blocks[0])
        r = blocks[1]
        self.assertEqual(r["final-recipient"].replace(" ", ""), "rfc822;reject1@perm.test")
        self.assertEqual(r["action"], "failed")
        self.assertRegex(r["status"], r"^5\.\d{1,3}\.\d{1,3}$")
        self.assertEqual(r["status"], "5.1.1")
        self.assertIn("550", r["diagnostic-code"])
        self.assertTrue(r["diagnostic-code"].startswith("smtp;"), r)
        self.assertIn("mx.perm.test", r.get("remote-mta", ""))
        inner = parts[2].get_payload()[0]
        self.assertEqual(str(inner["Message-ID"]), "<bounce-me@client.test>")
        self.assertNotIn("ok@perm.test", str(parts[1]))

    def test_dead_primary_mx_falls_back_to_secondary(self):
        def zone(ips):
            return mailnet.mx_zone("two.test", [(10, "mx1.two.test", ips[0]),
                                                (20, "mx2.two.test", ips[1])])
        net, dns = self.network(zone, 2)
        sink = self.started(mailnet.Sink(self.tmp, [net.ips[1]], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        rcpts = ["u%d@two.test" % i for i in range(5)]
        mailnet.submit(d.host, d.port, [
            ("a@client.test", [r], mailnet.make_message("two%d@client.test" % i, "a@client.test", [r]), [], [])
            for i, r in enumerate(rcpts)], connections=1)
        lines = self.wait_log(d, lambda ls: sum(x["status"] == "delivered" for x in ls) >= len(rcpts),
                              60, "delivery through the secondary")
        text = self.stop_relay(d)
        self.assertEqual(sink.stop(), 0)
        for x in lines:
            self.assertEqual((x["status"], x["mx"], x["ip"], x["attempt"]),
                             ("delivered", "mx2.two.test", net.ips[1], "1"), x)
        self.assertRegex(text, r"event=delivery_connection domain=two\.test mx=mx1\.two\.test ip=%s "
                               r"result=connect_failed" % net.ips[0].replace(".", r"\."))
        self.assertEqual(sink.stats()["messages"], len(rcpts))

    def test_silent_server_greeting_timeout_then_delivered(self):
        net, dns = self.network(lambda ips: mailnet.mx_zone("slow.test", [(10, "mx.slow.test", ips[0])]), 1)
        staller = self.started(mailnet.Sink(self.tmp, [net.ips[0]], net.port, "--stall", store=False))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, greeting_timeout="1s"))
        mailnet.submit(d.host, d.port, [("a@client.test", ["u@slow.test"],
                                         mailnet.make_message("slow@client.test", "a@client.test",
                                                              ["u@slow.test"]), [], [])])
        timeout_line = "event=delivery_connection domain=slow.test mx=mx.slow.test ip=%s result=failed" % net.ips[0]
        self.assertTrue(mailnet.wait_until(lambda: timeout_line in d.log_text(), 60),
                        "no greeting timeout:\n" + d.log_text()[-3000:])
        # The failed attempt counts: deferred, never delivered or bounced.
        self.assertTrue(mailnet.wait_until(lambda: mailnet.deliveries(d.log_text()), 10))
        self.assertEqual({x["status"] for x in mailnet.deliveries(d.log_text())}, {"deferred"})
        self.assertEqual(staller.stop(), 0)
        self.assertGreaterEqual(staller.stats()["sessions"], 1)
        sink = self.started(mailnet.Sink(self.tmp, [net.ips[0]], net.port))
        lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls), 60,
                              "delivery once a working server listens")
        text = self.stop_relay(d)
        self.assertEqual(sink.stop(), 0)
        self.assertIn('reply="timeout waiting for the server"', text)
        # Every attempt before the working server was a deferral; one delivery.
        statuses = [x["status"] for x in lines]
        self.assertEqual(statuses[-1], "delivered")
        self.assertEqual(set(statuses[:-1]), {"deferred"})
        self.assertGreaterEqual(len(statuses), 2)
        self.assertEqual(sink.stats()["messages"], 1)

    def test_server_stalling_after_ehlo_command_timeout_then_delivered(self):
        net, dns = self.network(lambda ips: mailnet.mx_zone("slow.test", [(10, "mx.slow.test", ips[0])]), 1)
        staller = self.started(mailnet.Staller(net.ips[0], net.port, greet=True))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, command_timeout="1s"))
        mailnet.submit(d.host, d.port, [("a@client.test", ["u@slow.test"],
                                         mailnet.make_message("slow@client.test", "a@client.test",
                                                              ["u@slow.test"]), [], [])])
        self.wait_log(d, lambda ls: any(x["status"] == "deferred" for x in ls), 60,
                      "a deferral after the command timeout")
        staller.stop()
        self.assertTrue(any(c.upper().startswith(b"MAIL FROM:") for c in staller.commands),
                        staller.commands)
        sink = self.started(mailnet.Sink(self.tmp, [net.ips[0]], net.port))
        lines = self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls), 60,
                              "delivery once a working server listens")
        text = self.stop_relay(d)
        self.assertEqual(sink.stop(), 0)
        first = lines[0]
        self.assertEqual((first["status"], first["attempt"]), ("deferred", "1"), first)
        self.assertIn("timeout", first["reply"], first)
        self.assertTrue(first["dsn"].startswith("4."), first)
        self.assertEqual([x["status"] for x in lines[:-1]], ["deferred"] * (len(lines) - 1))
        self.assertEqual(lines[-1]["status"], "delivered")
        self.assertEqual(int(lines[-1]["attempt"]), len(lines))
        self.assertNotIn("status=bounced", text)
        self.assertEqual(sink.stats()["messages"], 1)

    # Every MX host of a domain refuses: each attempt is a deferral of its
    # own (logged, counted), and the queue lifetime ends it with a bounce.
    def test_unreachable_domain_defers_and_expires(self):
        def zone(ips):
            return (mailnet.mx_zone("dead.test", [(10, "mx.dead.test", ips[0])]) +
                    mailnet.mx_zone("senders.test", [(10, "mx.senders.test", ips[1])]))
        net, dns = self.network(zone, 2)   # nothing listens on ips[0]
        home = self.started(mailnet.Receiver(net.ips[1], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, queue_lifetime="3s"))
        mailnet.submit(d.host, d.port, [("a@senders.test", ["u@dead.test"],
                                         mailnet.make_message("dead@client.test", "a@senders.test",
                                                              ["u@dead.test"]), [], [])])
        try:
            lines = self.wait_log(d, lambda ls: any(x["status"] == "bounced" for x in ls), 12,
                                  "a bounce after the queue lifetime")
            self.assertTrue(mailnet.wait_until(lambda: home.handler.snapshot(), 20), "no DSN")
        finally:
            self.stop_relay(d)
        self.assertEqual((lines[0]["status"], lines[0]["attempt"]), ("deferred", "1"), lines[0])
        dead = [x for x in lines if x["rcpt"] == "u@dead.test"]
        self.assertEqual(dead[-1]["status"], "bounced", dead)
        self.assertEqual(dead[-1]["dsn"], "4.4.7", dead[-1])
        self.assertEqual({x["status"] for x in dead[:-1]}, {"deferred"}, dead)

    def test_dns_nxdomain_and_null_mx_bounce(self):
        def zone(ips):
            return (mailnet.mx_zone("senders.test", [(10, "mx.senders.test", ips[0])]) +
                    ["mx-host=nullmx.test,.,0"])
        net, dns = self.network(zone, 1)
        home = self.started(mailnet.Receiver(net.ips[0], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        mailnet.submit(d.host, d.port, [
            ("alice@senders.test", ["x@nx.test"], mailnet.make_message("nx@client.test", "alice@senders.test", ["x@nx.test"]), [], []),
            ("bob@senders.test", ["y@nullmx.test"], mailnet.make_message("nm@client.test", "bob@senders.test", ["y@nullmx.test"]), [], []),
        ], connections=1)
        lines = self.wait_log(d, lambda ls: of(ls, "x@nx.test") and of(ls, "y@nullmx.test"), 60,
                              "both DNS failures")
        self.assertTrue(mailnet.wait_until(lambda: len(home.handler.snapshot()) >= 2, 30),
                        "DSNs: %d of 2\n%s" % (len(home.handler.snapshot()), d.log_text()[-4000:]))
        self.stop_relay(d)
        nx = of(lines, "x@nx.test")[0]
        self.assertEqual((nx["status"], nx["attempt"]), ("bounced", "1"), nx)
        self.assertEqual(nx["code"][0], "5", nx)
        self.assertTrue(nx["dsn"].startswith("5.1."), nx)
        nm = of(lines, "y@nullmx.test")[0]
        self.assertEqual((nm["status"], nm["code"], nm["dsn"]), ("bounced", "556", "5.1.10"), nm)
        by_rcpt = {}
        for m in home.handler.snapshot():
            self.assertEqual(m.sender, "<>")
            msg = email.message_from_bytes(m.content, policy=email.policy.default)
            self.assertEqual(msg.get_content_type(), "multipart/report")
            by_rcpt[m.rcpts[0]] = status_blocks(msg.get_payload()[1])[1]
        self.assertEqual(set(by_rcpt), {"alice@senders.test", "bob@senders.test"})
        self.assertEqual(by_rcpt["bob@senders.test"]["status"], "5.1.10")
        self.assertEqual(by_rcpt["bob@senders.test"]["action"], "failed")
        self.assertIn("x@nx.test", by_rcpt["alice@senders.test"]["final-recipient"])

    def test_dns_no_answer_defers(self):
        hole = self.started(mailnet.Blackhole())
        settings = mailnet.relay_settings(2525, hole.ns)
        settings["dns"].update({"timeout": "1s", "tries": 1})
        d = self.relay(settings)
        mailnet.submit(d.host, d.port, [("a@client.test", ["u@quiet.test"],
                                         mailnet.make_message("q@client.test", "a@client.test",
                                                              ["u@quiet.test"]), [], [])])
        lines = self.wait_log(d, lambda ls: of(ls, "u@quiet.test"), 60, "a DNS deferral")
        self.assertGreater(hole.queries, 0)
        text = self.stop_relay(d)
        x = lines[0]
        self.assertEqual((x["status"], x["attempt"]), ("deferred", "1"), x)
        self.assertEqual(x["code"][0], "4", x)
        self.assertTrue(x["dsn"].startswith("4.4."), x)
        self.assertNotIn("status=bounced", text)
        self.assertNotIn("event=dsn_queued", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
