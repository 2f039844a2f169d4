#!/usr/bin/python3
"""test_shaping_pools - the sender chooses the egress pool (the shaping
file's "senders"), end to end at the receiver (aiosmtpd on loopback).

Two pools of one source each (127.a.b.x addresses): mail from
news.example.com goes through "bulk", mail from ceo@example.com and from
any domain under .example.org through "tx", other mail has no pool. All of
it goes to one domain, interleaved, with sessions reused: the receiver sees
each sender's mail from its pool's address (and EHLO name) only, so no
session bound to one source carried another pool's mail.
Every process is stopped by PID; the test stays well under a minute.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402,F401
import mailnet  # noqa: E402

SHAPING = """
sources = ( { name = "b1"; address = "%(ip1)s"; ehlo = "bulk.sender.test"; },
            { name = "t1"; address = "%(ip2)s"; ehlo = "tx.sender.test"; } );
pools = ( { name = "bulk"; sources = ( { source = "b1"; } ); },
          { name = "tx"; sources = ( { source = "t1"; } ); } );
senders = ( { sender = "news.example.com"; pool = "bulk"; },
            { sender = "ceo@example.com"; pool = "tx"; },
            { sender = ".example.org"; pool = "tx"; } );
"""

SENDERS = {"n@news.example.com": "bulk", "ceo@example.com": "tx", "x@mail.example.org": "tx",
           "other@example.com": None}


class Ehlo(mailnet.RecordingHandler):
    def __init__(self):
        super().__init__()
        self.ehlo_by_peer = {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.ehlo_by_peer.setdefault(session.peer[0], set()).add(hostname)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


class Pools(mailnet.NetTestCase, unittest.TestCase):
    def test_sender_chooses_pool(self):
        net = mailnet.Addresses(3)
        zone = mailnet.mx_zone("a.test", [(10, "mx.a.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port, Ehlo()))
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write(SHAPING % {"ip1": net.ips[1], "ip2": net.ips[2]})
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["shaping"] = {"file": path}
        d = self.relay(settings)
        batch = []
        for i in range(60):
            sender = list(SENDERS)[i % len(SENDERS)]
            rcpt = "r%d@a.test" % i
            batch.append((sender, [rcpt], mailnet.make_message("m%d@client.test" % i, sender, [rcpt]), [], []))
        mailnet.submit(d.host, d.port, batch, connections=4)
        want = sorted("r%d@a.test" % i for i in range(60))
        ok = mailnet.wait_until(lambda: sorted(r for m in rcv.handler.snapshot() for r in m.rcpts) == want, 40)
        self.assertTrue(ok, "not all delivered:\n" + d.log_text()[-3000:])
        pool_ip = {"bulk": net.ips[1], "tx": net.ips[2]}
        for m in rcv.handler.snapshot():
            pool = SENDERS[m.sender]
            if pool is not None:
                self.assertEqual(m.peer[0], pool_ip[pool], "%s came from %s" % (m.sender, m.peer[0]))
            else:
                self.assertNotIn(m.peer[0], pool_ip.values(), "%s (no pool) came from a pool's source" % m.sender)
        self.assertEqual(rcv.handler.ehlo_by_peer[net.ips[1]], {"bulk.sender.test"})
        self.assertEqual(rcv.handler.ehlo_by_peer[net.ips[2]], {"tx.sender.test"})
        self.stop_relay(d)


if __name__ == "__main__":
    unittest.main()
