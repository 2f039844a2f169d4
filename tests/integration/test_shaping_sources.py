#!/usr/bin/python3
"""test_shaping_sources - limits per (source, site) pair and response rules
that suspend an egress source, end to end at the receiver (aiosmtpd on
loopback, checking each session's peer address).

- A site with per_source = { max_connections = 1; message_rate = "4/s"; }
  and a pool of two sources (127.a.b.x): the receiver never sees more than
  one session at once from either address, each address's DATA times give
  4/s (within 10%), and both together about twice that: the limits are per
  source, not shared.
- A receiver that answers EHLO from one source with 421 4.7.0: a rule with
  scope = "source" suspends that source; every message arrives through the
  other one, the suspended source opens no connection while suspended; the
  status shows it, shaping.state keeps it, `shaping resume source:NAME`
  ends it.
- The same with scope = "source_site" and two sites: the source is
  suspended for the refusing site only and still carries the other's mail.
Every process is stopped by PID; each test stays well under a minute.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
DOMAINS = ["a.test", "b.test", "c.test"]


class PerPeer(mailnet.RecordingHandler):
    """PerPeer - sessions open at once per peer address (EHLO to QUIT or
    the connection's end), the most seen, connection times and DATA times
    per peer; EHLO from a peer in refuse gets refuse's reply."""

    def __init__(self, refuse=None):
        super().__init__()
        self.open = {}
        self.most = {}
        self.connects = {}
        self.times = {}
        self.refuse = refuse or {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        peer = session.peer[0]
        with self.lock:
            self.connects.setdefault(peer, []).append(time.monotonic())
            reply = self.refuse.get(peer)
            if reply is None:
                self.open[peer] = self.open.get(peer, 0) + 1
                self.most[peer] = max(self.most.get(peer, 0), self.open[peer])
                session.counted = True
        if reply is not None:
            return [reply]
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    def closed(self, session):
        with self.lock:
            if getattr(session, "counted", False):
                session.counted = False
                self.open[session.peer[0]] -= 1

    async def handle_QUIT(self, server, session, envelope):
        self.closed(session)
        return await super().handle_QUIT(server, session, envelope)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.times.setdefault(session.peer[0], []).append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


class Sources(mailnet.NetTestCase, unittest.TestCase):
    def ctl(self, d, *args, ok=True):
        p = subprocess.run([CTL, "--config", d.config_path] + list(args), capture_output=True, text=True,
                           timeout=60)
        if ok:
            self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def status(self, d):
        return [json.loads(x) for x in self.ctl(d, "shaping", "status", "--json").stdout.splitlines()]

    def start(self, shaping, handler_of):
        net = mailnet.Addresses(3)
        zone = []
        for dom in DOMAINS:
            zone += mailnet.mx_zone(dom, [(10, "mx.bigmail.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        handler = handler_of(net)
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, handler))
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write(shaping % {"ip1": net.ips[1], "ip2": net.ips[2]})
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["shaping"] = {"file": path}
        settings["metrics"] = {"listen": ["127.0.0.1:%d" % harness.free_port("127.0.0.1")]}
        return self.relay(settings), rcv, net

    def metrics(self, d):
        url = "http://%s/metrics" % d.settings["metrics"]["listen"][0]
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def send(self, d, rcpts, connections=4):
        mailnet.submit(d.host, d.port, [("s@client.test", [r], mailnet.make_message(
            "m%d@client.test" % i, "s@client.test", [r]), [], []) for i, r in enumerate(rcpts)],
            connections=connections)

    def delivered(self, rcv, rcpts, timeout):
        want = sorted(rcpts)
        return mailnet.wait_until(lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == want,
                                  timeout)

    def test_limits_per_source_and_site(self):
        shaping = """
sources = ( { name = "s1"; address = "%(ip1)s"; }, { name = "s2"; address = "%(ip2)s"; } );
pools = ( { name = "main"; sources = ( { source = "s1"; }, { source = "s2"; } ); } );
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; pool = "main";
            per_source = { max_connections = 1; message_rate = "4/s"; }; } );
"""
        d, rcv, net = self.start(shaping, lambda net: PerPeer())
        rcpts = ["r%d@%s" % (i, dom) for i in range(20) for dom in DOMAINS]
        self.send(d, rcpts, connections=6)
        pairs = {r["per_source"]: r for r in self.status(d) if "per_source" in r}
        self.assertEqual(sorted(pairs), ["bigmail/s1", "bigmail/s2"], pairs)
        self.assertEqual(pairs["bigmail/s1"]["max_connections"], 1, pairs)
        self.assertTrue(self.delivered(rcv, rcpts, 50), "not all delivered:\n" + d.log_text()[-3000:])
        h = rcv.handler
        self.assertEqual(sorted(h.most), sorted(net.ips[1:]), h.most)
        for ip in net.ips[1:]:
            self.assertEqual(h.most[ip], 1, "more than one session at once from %s" % ip)
            times = sorted(h.times[ip])
            self.assertGreater(len(times), 15, "source %s carried only %d" % (ip, len(times)))
            rate = (len(times) - 1) / (times[-1] - times[0])
            print("source %s: %d messages at %.2f/s" % (ip, len(times), rate), file=sys.stderr)
            self.assertLess(rate, 4.4, "source %s: %.2f/s over %d messages, want at most 4/s +10%%"
                            % (ip, rate, len(times)))
        every = sorted(t for ts in h.times.values() for t in ts)
        total = (len(every) - 1) / (every[-1] - every[0])
        print("both sources: %.2f/s" % total, file=sys.stderr)
        self.assertGreater(total, 6.0, "both sources together only %.2f/s: not per source?" % total)
        text = self.ctl(d, "shaping", "status").stdout
        self.assertIn("SITE/SOURCE", text)
        self.assertIn("bigmail/s1", text)
        self.stop_relay(d)

    def test_response_rule_suspends_a_source(self):
        shaping = """
sources = ( { name = "s1"; address = "%(ip1)s"; }, { name = "s2"; address = "%(ip2)s"; } );
pools = ( { name = "main"; sources = ( { source = "s1"; weight = 3; }, { source = "s2"; weight = 1; } ); } );
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; pool = "main"; max_messages_per_connection = 2; } );
responses = ( { code = "421"; enhanced = "4.7.0"; action = "suspend"; scope = "source"; duration = "1h"; } );
"""
        d, rcv, net = self.start(shaping, lambda net: PerPeer(
            refuse={net.ips[1]: "421 4.7.0 [%s] temporarily deferred: IP reputation" % net.ips[1]}))
        rcpts = ["r%d@%s" % (i, dom) for i in range(10) for dom in DOMAINS]
        self.send(d, rcpts)
        self.assertTrue(self.delivered(rcv, rcpts, 50), "not all delivered:\n" + d.log_text()[-3000:])
        h = rcv.handler
        peers = {m.peer[0] for m in h.snapshot()}
        self.assertEqual(peers, {net.ips[2]}, "delivered from %s" % peers)
        refused = sorted(h.connects.get(net.ips[1], []))
        self.assertTrue(refused, "the source was never tried")
        # Sessions opened before the first refusal arrived may come in
        # just after it; none later.
        late = [t for t in refused if t > refused[0] + 1.0]
        print("refused connections from the suspended source: %d" % len(refused), file=sys.stderr)
        self.assertEqual(late, [], "%d connections from the suspended source" % len(late))
        src = {r["source"]: r for r in self.status(d) if "source" in r}
        self.assertEqual(src["s1"]["state"], "suspended", src)
        self.assertGreater(src["s1"]["remaining_s"], 3000, src)
        self.assertEqual(src["s1"]["suspensions"], 1, src)
        self.assertEqual(src["s2"]["state"], "active", src)
        self.assertTrue(mailnet.wait_until(lambda: "source:s1 suspend" in self.state_file(d), 10))
        self.assertTrue(mailnet.wait_until(lambda: re.search(
            r"(?m)^ringmail_shaping_source_suspensions_total 1$", self.metrics(d)) is not None, 10),
            self.metrics(d)[-2000:])
        p = self.ctl(d, "shaping", "resume", "source:s1")
        self.assertIn("source:s1 resumed", p.stderr)
        src = {r["source"]: r for r in self.status(d) if "source" in r}
        self.assertEqual(src["s1"]["state"], "active", src)
        text = self.stop_relay(d)
        self.assertIn("action=suspend scope=source source=s1", text)
        self.assertEqual(text.count("action=suspend scope=source"), 1, "a storm suspends once")

    def test_source_site_suspends_the_pair_only(self):
        """scope = "source_site": the source is suspended for the site that
        refused it, and goes on carrying mail to another site."""
        net = mailnet.Addresses(4)
        zone = mailnet.mx_zone("a.test", [(10, "mx.sa.test", net.ips[0])])
        zone += mailnet.mx_zone("b.test", [(10, "mx.sb.test", net.ips[3])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv_a = self.started(mailnet.Receiver(net.ips[0], net.port, PerPeer(
            refuse={net.ips[1]: "421 4.7.0 [%s] blocked: IP reputation" % net.ips[1]})))
        rcv_b = self.started(mailnet.Receiver(net.ips[3], net.port, PerPeer()))
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write("""
sources = ( { name = "s1"; address = "%s"; }, { name = "s2"; address = "%s"; } );
pools = ( { name = "main"; sources = ( { source = "s1"; }, { source = "s2"; } ); } );
sites = ( { name = "sa"; mx = [ ".sa.test" ]; pool = "main"; max_messages_per_connection = 1; },
          { name = "sb"; mx = [ ".sb.test" ]; pool = "main"; max_messages_per_connection = 1; } );
responses = ( { code = "421"; enhanced = "4.7.0"; action = "suspend"; scope = "source_site"; duration = "1h"; } );
""" % (net.ips[1], net.ips[2]))
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["shaping"] = {"file": path}
        d = self.relay(settings)
        a = ["a%d@a.test" % i for i in range(12)]
        self.send(d, a)
        self.assertTrue(self.delivered(rcv_a, a, 50), "a.test not delivered:\n" + d.log_text()[-3000:])
        self.assertEqual({m.peer[0] for m in rcv_a.handler.snapshot()}, {net.ips[2]})
        refused = sorted(rcv_a.handler.connects.get(net.ips[1], []))
        self.assertTrue(refused, "s1 was never tried at site sa")
        b = ["b%d@b.test" % i for i in range(20)]
        self.send(d, b)
        self.assertTrue(self.delivered(rcv_b, b, 50), "b.test not delivered:\n" + d.log_text()[-3000:])
        self.assertEqual({m.peer[0] for m in rcv_b.handler.snapshot()}, {net.ips[1], net.ips[2]},
                         "s1 should still send to site sb")
        self.assertEqual([t for t in refused if t > refused[0] + 1.0], [], "s1 came back to sa while suspended")
        rows = self.status(d)
        pairs = {r["per_source"]: r for r in rows if "per_source" in r}
        self.assertEqual(sorted(pairs), ["sa/s1"], pairs)
        self.assertEqual(pairs["sa/s1"]["state"], "suspended", pairs)
        src = {r["source"]: r for r in rows if "source" in r}
        self.assertEqual(src["s1"]["state"], "active", src)
        self.assertTrue(mailnet.wait_until(lambda: "sa/s1 suspend" in self.state_file(d), 10))
        p = self.ctl(d, "shaping", "resume", "sa/s1")
        self.assertIn("sa/s1 resumed", p.stderr)
        self.assertEqual([r for r in self.status(d) if "per_source" in r], [])
        text = self.stop_relay(d)
        self.assertIn("action=suspend scope=source_site source=s1", text)
        self.assertIn("site=sa", text)

    def state_file(self, d):
        try:
            with open(os.path.join(d.settings["spool"]["dir"], "shaping.state")) as f:
                return f.read()
        except OSError:
            return ""


if __name__ == "__main__":
    unittest.main()
