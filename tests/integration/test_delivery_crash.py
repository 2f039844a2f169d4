#!/usr/bin/python3
"""test_delivery_crash - kill -9 ringmaild in the middle of delivery, start
it again on the same spool, and check that every accepted message arrives
at least once and that the duplicates (delivered, but the outcome not yet
journaled at the kill) stay few; and that a SIGTERM in the middle of
delivery, then a restart, delivers every message exactly once.

2,000 messages to four domains are queued, then go to a slow ringmail-sink
(--delay-ms, started after the last message is accepted) over
at most 4 connections per domain, one recipient per transaction. Every
process is stopped by PID; the restarted ringmaild must exit 0 without
sanitizer reports.
"""
import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

N_MSGS = 2000
N_DOMAINS = 4
MAX_CONNECTIONS = 4
DUPLICATE_BOUND = 200


class Crash(mailnet.NetTestCase, unittest.TestCase):
    def queue_and_start(self, domains=tuple("c%d.test" % k for k in range(1, N_DOMAINS + 1))):
        """queue_and_start - N_MSGS queued to domains, the sink started;
        (relay, sink, extra, the Message-IDs)."""
        net = mailnet.Addresses(2)
        zone = []
        for k, domain in enumerate(domains):
            zone += mailnet.mx_zone(domain, [(10, "mx%d.crash.test" % (k % 2), None)])
        zone += ["host-record=mx0.crash.test,%s" % net.ips[0],
                 "host-record=mx1.crash.test,%s" % net.ips[1]]
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        # The sink starts only once everything is queued, so the stop always
        # lands in the middle of delivery however fast the machine is: until
        # then the domains are refused and backed off (max_backoff 2s).
        sink = mailnet.Sink(self.tmp, net.ips, net.port, "--delay-ms", "10")
        self.addCleanup(sink.stop)
        extra = mailnet.relay_settings(net.port, dns.ns, idle_timeout="30s",
                                       max_connections=MAX_CONNECTIONS)
        d = self.relay(extra)

        want = set()
        msgs = []
        for i in range(N_MSGS):
            rcpt = "user%d@%s" % (i, domains[i % len(domains)])
            mid = "crash%d@client.test" % i
            want.add(mid.encode())
            msgs.append(("sender@client.test", [rcpt],
                         mailnet.make_message(mid, "sender@client.test", [rcpt]), [], []))
        mailnet.submit(d.host, d.port, msgs, connections=8)
        sink.start()
        return d, sink, extra, want

    def stop_midway(self, d, sink, how):
        """stop_midway - once a good part, but not all, has been delivered."""
        at_stop = mailnet.wait_until(
            lambda: (lambda n: n if n >= N_MSGS // 4 else 0)(sink.stats()["messages"]), 120, 0.02)
        if how == "kill9":
            d.kill9()
        else:
            self.stop_relay(d)
        self.assertIsNotNone(at_stop, "delivery did not start")
        print("\ncrash: %s with %d of %d delivered" % (how, at_stop, N_MSGS), flush=True)
        self.assertLess(at_stop, N_MSGS - 100, "delivery finished before the stop: slow the sink down")

    def restart_and_count(self, d, sink, extra, want):
        """restart_and_count - the same spool again until it drains; every
        message must arrive; returns the number of duplicates."""
        d2 = harness.Ringmaild(workers=2, extra=extra, tmp=d.tmp)
        self.addCleanup(d2.stop)
        d2.start()

        def drained():
            rc, out, err = mailnet.spool_live(os.path.join(d.tmp, "spool"))
            return rc == 0 and out.strip() == "" and sink.stats()["messages"] >= N_MSGS
        ok = mailnet.wait_until(drained, 150, 0.5)
        text = self.stop_relay(d2)
        self.assertEqual(sink.stop(), 0)
        self.assertTrue(ok, "queue did not drain: %d arrived\n%s"
                        % (sink.stats()["messages"], text[-4000:]))
        self.assertIn("event=spool_requeue", text)

        seen = collections.Counter()
        for _, data in sink.stored():
            ids = mailnet.message_ids(data)
            self.assertEqual(len(ids), 1, data[:300])
            seen[ids[0][1:-1]] += 1
        missing = want - set(seen)
        self.assertEqual(missing, set(), "lost %d messages, e.g. %r" % (len(missing), sorted(missing)[:5]))
        self.assertEqual(set(seen) - want, set())
        duplicates = sum(v - 1 for v in seen.values())
        print("crash: %d duplicates (%d messages delivered twice or more); in flight at most "
              "%d transactions" % (duplicates, sum(v > 1 for v in seen.values()),
                                   N_DOMAINS * MAX_CONNECTIONS), flush=True)
        return duplicates

    def test_kill9_mid_delivery_then_restart_delivers_all(self):
        d, sink, extra, want = self.queue_and_start()
        self.stop_midway(d, sink, "kill9")
        self.assertLessEqual(self.restart_and_count(d, sink, extra, want), DUPLICATE_BOUND)

    def test_sigterm_mid_delivery_then_restart_repeats_nothing(self):
        """A graceful stop lets transactions finish and journals their
        outcomes (every worker waits for the others' last outcomes), so
        nothing is delivered twice."""
        # Every domain is owned by worker 1 (FNV-1a of the name mod 2), so
        # worker 0 delivers nothing itself and settles first, while the
        # outcomes of its messages are still on their way from worker 1:
        # the case where a worker that left early used to drop them.
        d, sink, extra, want = self.queue_and_start(("c1.test", "c3.test", "c5.test", "c7.test"))
        self.stop_midway(d, sink, "sigterm")
        self.assertEqual(self.restart_and_count(d, sink, extra, want), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
