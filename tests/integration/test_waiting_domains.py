"""Domains waiting for a connection slot are all served (found by the mix
benchmark, issue 23): thousands of domains, each with its own MX name, on
a few addresses, behind a small delivery.max_connections_total, with some
recipients deferred. Every domain past the cap waits for a slot; a slot
freed wakes one waiter, and when that one did not take it (a pooled
session had carried its mail, or its kick found nothing left) the others
slept on: the queue stalled with no session open. dests_rewake is the net
under that; this test fails without it (mail left in the queue).

No timing asserts: the wait for the last message is a generous deadline."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

DOMAINS = 2000
ADDRESSES = 8


class WaitingDomains(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.addrs = mailnet.Addresses(ADDRESSES)
        zone = []
        for n in range(1, DOMAINS + 1):
            zone.append("mx-host=d%d.test,mx.d%d.test,10" % (n, n))
            zone.append("host-record=mx.d%d.test,%s" % (n, self.addrs.ips[n % ADDRESSES]))
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        # 10% of RCPTs deferred: their retries come back to waiting domains
        self.sinks = [self.started(mailnet.Sink(self.tmp, [ip], self.addrs.port,
                                                "--fail-rcpt-4xx", "10", "--seed", str(i + 1),
                                                store=False))
                      for i, ip in enumerate(self.addrs.ips)]

    def settled(self):
        return sum(s.stats()["messages"] for s in self.sinks)

    def test_every_waiting_domain_is_served(self):
        settings = mailnet.relay_settings(self.addrs.port, self.dns.ns,
                                          max_connections_total=4)
        settings["dns"]["min_ttl"] = "0s"
        settings["mta_sts"] = {"enabled": False}
        d = self.relay(settings)
        bench = subprocess.run(
            [os.path.join(harness.BIN, "ringmail-bench"), "--json", "--target",
             "%s:%d" % (d.host, d.port), "--connections", "20", "--messages", str(DOMAINS),
             "--size", "1024", "--rcpts", "1", "--domains", str(DOMAINS),
             "--domain-pattern", "d%d.test", "--timeout", "120"],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(bench.returncode, 0, bench.stderr[-2000:])
        report = json.loads(bench.stdout)
        self.assertEqual(report["messages"]["accepted"], DOMAINS)
        got = mailnet.wait_until(lambda: self.settled() >= DOMAINS, timeout=150, interval=0.5)
        self.assertTrue(got, "got %d of %d messages at the sinks; the rest stayed queued"
                        % (self.settled(), DOMAINS))


if __name__ == "__main__":
    unittest.main()
