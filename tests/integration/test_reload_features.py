#!/usr/bin/python3
"""test_reload_features - 200 SIGHUPs while mail flows through the modules
that keep things from a config: shaping (sites, pools of egress sources,
response rules), MTA-STS (TXT lookups and helper-thread jobs), webhooks
(their own thread) and sender routes / domain routes (the resolver's routes).

Configs are reference counted and freed after a reload: whatever these
modules keep across worker passes must be a copy, a held reference, or be
found again when cfg->serial changes. Two configs (A and B) alternate; they
differ in shaping file (sites, limits, pools, sources, rules), routes,
sender routes and the webhook url. Receivers: rx (the MX of every domain)
and hop (the sender route / domain route of config A; config B routes the
same mail to rx). rx answers every 7th RCPT "451 4.7.0 slow down", which a
response rule of both shaping files matches ("lower").

Asserts: 200 reloads applied ("result=ok"), every accepted message arrives
exactly once (counted over both receivers), the webhook receiver got
events, the daemon exits 0 with configs_live=0 and, under the sanitizer
build, no reports.
"""
import os
import re
import signal
import sys
import tempfile
import threading
import time
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from test_webhooks import Hook  # noqa: E402

RELOADS = 200
MESSAGES = 240
DOMAINS = ["a.test", "b.test", "c.test"]

SHAPING_A = """
sources = ( { name = "one"; address = "%(s1)s"; ehlo = "one.sender.test"; },
            { name = "two"; address = "%(s2)s"; ehlo = "two.sender.test"; } );
pools = ( { name = "main"; sources = ( { source = "one"; weight = 3; }, { source = "two"; weight = 1; } ); } );
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; max_connections = 4;
            max_messages_per_connection = 5; message_rate = "500/s"; pool = "main"; } );
responses = ( { code = "451"; text = "slow down"; action = "lower"; limit = "message_rate";
                value = "300/s"; duration = "2s"; } );
"""

SHAPING_B = """
sources = ( { name = "two"; address = "%(s2)s"; ehlo = "two.sender.test"; },
            { name = "three"; address = "%(s1)s"; ehlo = "three.sender.test"; },
            { name = "four"; address = "%(s2)s"; ehlo = "four.sender.test"; } );
pools = ( { name = "other"; sources = ( { source = "four"; weight = 1; } ); },
          { name = "alt"; sources = ( { source = "two"; weight = 1; }, { source = "three"; weight = 2; } ); } );
sites = ( { name = "small"; mx = [ ".nowhere.test" ]; max_connections = 1; },
          { name = "big2"; mx = [ ".bigmail.test" ]; max_connections = 3;
            max_messages_per_connection = 2; connection_rate = "400/s"; pool = "alt"; } );
responses = ( { code = "452"; text = "mailbox full"; action = "bounce"; },
              { code = "451"; text = "sl[o]w +down"; action = "lower"; scope = "site"; limit = "max_connections";
                value = "2"; duration = "1s"; } );
"""


class Slow(mailnet.RecordingHandler):
    """Slow - every 7th RCPT is deferred with a reply the rules match."""

    def __init__(self):
        super().__init__()
        self.rcpts_seen = 0
        self.ehlo_of = []           # (peer ip, EHLO name) per message

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.ehlo_of.append((session.peer[0], session.host_name))
        return await super().handle_DATA(server, session, envelope)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpts_seen += 1
            slow = self.rcpts_seen % 7 == 0
        if slow:
            return "451 4.7.0 slow down please"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class ReloadFeatures(mailnet.NetTestCase, unittest.TestCase):
    def test_reloads_with_shaping_sts_webhooks_routes(self):
        net = mailnet.Addresses(4)
        zone = []
        for dom in DOMAINS:
            zone += mailnet.mx_zone(dom, [(10, "mx.bigmail.test", net.ips[0])])
        # No _mta-sts TXT anywhere: NXDOMAIN, the STS jobs still load the cache.
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rx = self.started(mailnet.Receiver(net.ips[0], net.port, Slow()))
        hop = self.started(mailnet.Receiver(net.ips[1], net.port))
        hook = self.started(Hook(harness.free_port()))

        paths = {}
        for name, text in (("A", SHAPING_A), ("B", SHAPING_B)):
            paths[name] = os.path.join(self.tmp, "shaping-%s.conf" % name)
            with open(paths[name], "w") as f:
                f.write(text % {"s1": net.ips[2], "s2": net.ips[3]})
            harness.give_to_daemon(paths[name])
        hop_addr = "[%s]:%d" % (net.ips[1], net.port)
        rx_addr = "[%s]:%d" % (net.ips[0], net.port)

        def flavour(settings, name):
            settings["shaping"] = {"file": paths[name]}
            if name == "A":
                settings["delivery"]["sender_routes"] = [{"sender": "tenant.test", "route": hop_addr}]
                settings["domains"] = [{"name": "c.test", "route": hop_addr}]
                settings["webhooks"] = [{"url": hook.url, "batch": 20}]
            else:
                settings["delivery"]["sender_routes"] = [{"sender": "tenant.test", "route": rx_addr},
                                                         {"sender": "other.test", "route": hop_addr}]
                settings["domains"] = [{"name": "b.test", "route": rx_addr}]
                settings["webhooks"] = [{"url": hook.url + "/b", "batch": 7}]

        settings = mailnet.relay_settings(net.port, dns.ns, idle_timeout="1s")
        settings["mta_sts"] = {"recheck_interval": "1s", "fetch_timeout": "2s"}
        flavour(settings, "A")
        d = harness.Ringmaild(workers=2, extra=settings, tmp=tempfile.mkdtemp(prefix="relay-", dir=self.tmp))
        d.settings["log"]["delivery_file"] = os.path.join(d.tmp, "delivery.json")
        self.addCleanup(d.stop)
        d.start()

        accepted, errors = [], []
        stop = threading.Event()

        def submitter():
            n = 0
            while not stop.is_set() and n < MESSAGES:
                batch = []
                for _ in range(6):
                    sender = ("app@tenant.test", "app@src.test", "app@other.test")[n % 3]
                    rcpt = "r%d@%s" % (n, DOMAINS[n % len(DOMAINS)])
                    mid = "m%d@src.test" % n
                    batch.append((sender, [rcpt], mailnet.make_message(mid, sender, [rcpt], subject="rl-%d" % n),
                                  [], []))
                    n += 1
                try:
                    mailnet.submit(d.host, d.port, batch, connections=2)
                    accepted.extend(b[1][0] for b in batch)
                except AssertionError as e:
                    errors.append(repr(e))
                time.sleep(0.05)

        t = threading.Thread(target=submitter, daemon=True)
        t.start()

        log = open(d.log_path, "rb")
        self.addCleanup(log.close)
        pending = b""
        for i in range(1, RELOADS + 1):
            flavour(d.settings, "B" if i % 2 else "A")
            tmp = d.config_path + ".new"
            with open(tmp, "w") as f:
                f.write(harness.render_config(d.settings))
            os.replace(tmp, d.config_path)
            d.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            line = None
            while line is None and time.monotonic() < deadline:
                data = pending + log.read()
                *done, pending = data.split(b"\n")
                for ln in done:
                    if b"event=reload " in ln and b"result=" in ln:
                        line = ln.decode("utf-8", "replace")
                if line is None:
                    time.sleep(0.005)
            self.assertIsNotNone(line, "reload %d: no result line" % i)
            self.assertIn("result=ok", line, "reload %d: %s" % (i, line))
            time.sleep(0.05)
        stop.set()
        t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        self.assertGreater(len(accepted), 60)

        def got():
            return Counter(r for h in (rx, hop) for m in h.handler.snapshot() for r in m.rcpts)
        ok = mailnet.wait_until(lambda: set(got()) >= set(accepted), 60)
        self.assertTrue(ok, "missing: %r\n%s" % (sorted(set(accepted) - set(got()))[:10], d.log_text()[-4000:]))
        time.sleep(1)
        dup = [r for r, k in got().items() if k > 1]
        self.assertEqual(dup, [], "delivered twice")
        self.assertEqual(set(got()), set(accepted))
        self.assertTrue(mailnet.wait_until(lambda: len(hook.events()) > 0, 20), "no webhook events")
        # A source's EHLO name always comes from that source's address.
        want_ip = {"one.sender.test": net.ips[2], "three.sender.test": net.ips[2],
                   "two.sender.test": net.ips[3], "four.sender.test": net.ips[3]}
        with rx.handler.lock:
            seen = list(rx.handler.ehlo_of)
        bound = [(ip, name) for ip, name in seen if name in want_ip]
        self.assertGreater(len(bound), 0, "no message went out from a pool source")
        self.assertEqual([x for x in bound if x[0] != want_ip[x[1]]], [])

        text = self.stop_relay(d)
        self.assertEqual(text.count("event=reload result=ok"), RELOADS)
        self.assertRegex(text, r"event=exit status=0 configs_live=0")
        self.assertNotIn("status=bounced", text)


if __name__ == "__main__":
    unittest.main()
