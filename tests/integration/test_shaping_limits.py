#!/usr/bin/python3
"""test_shaping_limits - shaping limits, "lower" rules and egress sources
end to end, measured at the receiver (aiosmtpd on loopback).

- A site of three domains on one MX host with max_connections = 2: the
  receiver never sees more than two sessions at once, and all mail arrives.
- A site with message_rate = "5/s": the receiver's DATA times over ~20 s
  give 5/s within 10%.
- A pool of two sources (127.a.b.11 weight 3, 127.a.b.12 weight 1), one
  message per connection: the receiver sees the peers in that proportion,
  each with its source's EHLO name.
- A "lower" rule on a 421: `shaping status` shows the lowered rate, and
  `shaping resume` restores it.
Every process is stopped by PID; each test stays well under a minute.
"""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
DOMAINS = ["a.test", "b.test", "c.test"]


class Counting(mailnet.RecordingHandler):
    """Counting - sessions from EHLO to QUIT (the relay always says QUIT),
    the most open at once, DATA times, and each message's EHLO name; DATA
    is slow so that sessions overlap when they may."""

    def __init__(self, data_delay=0.0):
        super().__init__()
        self.open = 0
        self.most = 0
        self.times = []
        self.ehlo_of = []
        self.data_delay = data_delay
        self.slow = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.open -= 1
        return await super().handle_QUIT(server, session, envelope)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            slow = self.slow
            self.slow = None
        if slow is not None:
            return slow
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.times.append(time.monotonic())
            self.ehlo_of.append((session.peer[0], session.host_name))
        return await super().handle_DATA(server, session, envelope)


class Limits(mailnet.NetTestCase, unittest.TestCase):
    def ctl(self, d, *args, ok=True):
        p = subprocess.run([CTL, "--config", d.config_path] + list(args), capture_output=True, text=True,
                           timeout=60)
        if ok:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def status(self, d):
        rows = [json.loads(x) for x in self.ctl(d, "shaping", "status", "--json").stdout.splitlines()]
        return {r.get("site") or "source:" + r["source"]: r for r in rows}

    def start(self, shaping, handler, domains=DOMAINS, nips=1, **delivery):
        net = mailnet.Addresses(nips)
        zone = []
        for dom in domains:
            zone += mailnet.mx_zone(dom, [(10, "mx.bigmail.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, handler))
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write(shaping % {"ip1": net.ips[min(1, nips - 1)], "ip2": net.ips[-1]})
        settings = mailnet.relay_settings(net.port, dns.ns, **delivery)
        settings["shaping"] = {"file": path}
        return self.relay(settings), rcv

    def send(self, d, rcpts, connections=4):
        try:
            mailnet.submit(d.host, d.port, [("s@client.test", [r], mailnet.make_message(
                "m%d@client.test" % i, "s@client.test", [r]), [], []) for i, r in enumerate(rcpts)],
                connections=connections)
        except AssertionError:
            print(d.log_text()[-4000:], file=sys.stderr)
            raise

    def delivered(self, rcv, rcpts, timeout):
        want = sorted(rcpts)
        return mailnet.wait_until(lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == want,
                                  timeout)

    def test_site_of_three_domains_shares_max_connections(self):
        shaping = """
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; max_connections = 2;
            max_messages_per_connection = 3; } );
"""
        d, rcv = self.start(shaping, Counting(data_delay=0.15))
        rcpts = ["r%d@%s" % (i, dom) for i in range(12) for dom in DOMAINS]
        self.send(d, rcpts, connections=6)
        self.assertTrue(self.delivered(rcv, rcpts, 50), "not all delivered:\n" + d.log_text()[-3000:])
        self.assertLessEqual(rcv.handler.most, 2, "more than max_connections at once")
        self.assertEqual(rcv.handler.most, 2, "the limit was never even reached")
        # 36 messages, at most 3 per connection: at least 12 sessions, reused across the domains.
        self.assertGreaterEqual(rcv.handler.sessions, 12)
        st = self.status(d)["bigmail"]
        self.assertEqual(st["max_connections"], 2, st)
        text = self.stop_relay(d)
        self.assertIn("domain=", text)

    def test_message_rate_holds_at_the_receiver(self):
        shaping = """
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; message_rate = "5/s"; } );
"""
        d, rcv = self.start(shaping, Counting(), domains=["a.test", "b.test"])
        rcpts = ["r%d@%s" % (i, dom) for i in range(50) for dom in ("a.test", "b.test")]
        self.send(d, rcpts)
        self.assertTrue(self.delivered(rcv, rcpts, 45), "not all delivered:\n" + d.log_text()[-3000:])
        times = sorted(rcv.handler.times)
        rate = (len(times) - 1) / (times[-1] - times[0])
        self.assertLess(abs(rate - 5.0), 0.5, "measured %.2f/s over %.1f s, want 5/s +-10%%" %
                        (rate, times[-1] - times[0]))
        # No attempt was counted for waiting: every delivery is attempt 1.
        lines = [x for x in mailnet.deliveries(d.log_text()) if x.get("status") == "delivered"]
        self.assertTrue(all(x.get("attempt") == "1" for x in lines), lines[:3])
        self.stop_relay(d)

    def test_sources_bind_in_proportion(self):
        shaping = """
sources = ( { name = "one"; address = "%(ip1)s"; ehlo = "one.sender.test"; },
            { name = "two"; address = "%(ip2)s"; ehlo = "two.sender.test"; } );
pools = ( { name = "main"; sources = ( { source = "one"; weight = 3; }, { source = "two"; weight = 1; } ); } );
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; max_messages_per_connection = 1; } );
"""
        d, rcv = self.start(shaping, Counting(), nips=3, pool="main")
        rcpts = ["r%d@%s" % (i, dom) for i in range(40) for dom in ("a.test", "b.test")]
        self.send(d, rcpts)
        self.assertTrue(self.delivered(rcv, rcpts, 50), "not all delivered:\n" + d.log_text()[-3000:])
        seen = rcv.handler.ehlo_of
        ips = {}
        for ip, ehlo in seen:
            ips.setdefault(ip, set()).add(ehlo)
        one, two = d_ips = sorted(ips)
        self.assertEqual(len(d_ips), 2, ips)
        n1 = sum(1 for ip, _ in seen if ip == one)
        # 80 connections at 3:1: 60 expected, sd ~3.9; 4 sd either way.
        self.assertTrue(44 <= n1 <= 76, "source one carried %d of %d" % (n1, len(seen)))
        self.assertEqual(ips[one], {"one.sender.test"})
        self.assertEqual(ips[two], {"two.sender.test"})
        self.stop_relay(d)

    def test_max_recipients_of_site_and_domain_entry(self):
        shaping = """
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; max_recipients = 3; } );
domains = ( { name = "b.test"; max_recipients = 1; message_rate = "50/s"; } );
"""
        d, rcv = self.start(shaping, Counting())
        rcpts = ["a%d@a.test" % i for i in range(7)] + ["b%d@b.test" % i for i in range(3)]
        mailnet.submit(d.host, d.port, [("s@client.test", rcpts, mailnet.make_message(
            "one@client.test", "s@client.test", rcpts), [], [])], connections=1)
        self.assertTrue(self.delivered(rcv, rcpts, 30), d.log_text()[-3000:])
        sizes = {}
        for m in rcv.handler.snapshot():
            sizes.setdefault(m.rcpts[0].split("@")[1], []).append(len(m.rcpts))
        self.assertEqual(sorted(sizes["a.test"]), [1, 3, 3], sizes)
        self.assertEqual(sizes["b.test"], [1, 1, 1], sizes)
        st = self.status(d)
        self.assertEqual(st["b.test"]["kind"], "domain", st)
        self.assertEqual(st["bigmail"]["kind"], "site", st)
        self.stop_relay(d)

    def test_warmup_caps_a_source_per_day(self):
        today = time.strftime("%Y-%m-%d", time.gmtime())
        shaping = """
sources = ( { name = "new"; address = "%(ip1)s"; ehlo = "new.sender.test";
              warmup_start = "TODAY"; warmup_daily = [ 5, 10, 20 ]; },
            { name = "old"; address = "%(ip2)s"; ehlo = "old.sender.test"; } );
pools = ( { name = "main"; sources = ( { source = "new"; weight = 1000; }, { source = "old"; weight = 1; } ); } );
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; max_messages_per_connection = 1; pool = "main"; } );
""".replace("TODAY", today)
        d, rcv = self.start(shaping, Counting(), nips=3)
        rcpts = ["r%d@a.test" % i for i in range(20)]
        self.send(d, rcpts)
        self.assertTrue(self.delivered(rcv, rcpts, 40), "not all delivered:\n" + d.log_text()[-3000:])
        by = {}
        for ip, ehlo in rcv.handler.ehlo_of:
            by[ehlo] = by.get(ehlo, 0) + 1
        self.assertEqual(by.get("new.sender.test"), 5, by)
        self.assertEqual(by.get("old.sender.test"), 15, by)
        st = self.status(d)["source:new"]
        self.assertEqual((st["sent_today"], st["daily_limit"]), (5, 5), st)
        self.assertEqual(self.status(d)["source:old"]["daily_limit"], 0)
        self.stop_relay(d)

    def test_lower_rule_shows_and_resumes(self):
        shaping = """
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; message_rate = "100/s"; message_burst = 10; } );
responses = ( { code = "421"; text = "slow down"; action = "lower"; limit = "message_rate";
                value = "60/min"; duration = "1h"; } );
"""
        handler = Counting()
        handler.slow = "421 4.7.0 Please slow down"
        d, rcv = self.start(shaping, handler)
        self.send(d, ["first@a.test"], connections=1)
        self.assertTrue(mailnet.wait_until(lambda: self.status(d)["bigmail"]["lowered"] != [], 30),
                        d.log_text()[-3000:])
        st = self.status(d)["bigmail"]
        self.assertEqual(st["lowered"][0]["limit"], "message_rate")
        self.assertEqual(st["lowered"][0]["value"], 3600, st)     # 60/min = 3600/hour
        self.assertGreater(st["lowered"][0]["remaining_s"], 3000, st)
        self.assertEqual(st["lowerings"], 1, st)
        text = self.ctl(d, "shaping", "status").stdout
        self.assertIn("message_rate=3600/h", text)
        p = self.ctl(d, "shaping", "resume", "bigmail")
        self.assertIn("bigmail resumed", p.stderr)
        self.assertEqual(self.status(d)["bigmail"]["lowered"], [])
        self.assertTrue(self.delivered(rcv, ["first@a.test"], 30), d.log_text()[-3000:])
        text = self.stop_relay(d)
        self.assertIn("action=lower site=bigmail domain=a.test limit=message_rate", text)


if __name__ == "__main__":
    unittest.main()
