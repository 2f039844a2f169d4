#!/usr/bin/python3
"""test_delivery - outbound delivery through a loopback mail network.

dnsmasq maps d1.test .. d50.test to MX hosts on a few 127.x.y.z addresses
where ringmail-sink processes listen (one common port = delivery.port);
aiosmtpd receivers store what they get so it can be compared byte for byte.
Every process is stopped by PID; ringmaild must exit 0 without sanitizer
reports. No timing asserts: waits are polls with generous deadlines.
"""
import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402


class Bulk(mailnet.NetTestCase, unittest.TestCase):
    def test_thousand_messages_fifty_domains_once_each_over_reused_connections(self):
        n_msgs, n_domains, n_sinks = 1000, 50, 3
        net = mailnet.Addresses(n_sinks)
        zone = []
        for k in range(1, n_domains + 1):
            j = k % n_sinks
            zone += mailnet.mx_zone("d%d.test" % k, [(10, "mx%d.sinks.test" % j, None)])
        for j in range(n_sinks):
            zone.append("host-record=mx%d.sinks.test,%s" % (j, net.ips[j]))
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        sinks = [self.started(mailnet.Sink(self.tmp, [ip], net.port, "--domain-stats"))
                 for ip in net.ips]
        # At most 4 connections per domain keeps the session count steady
        # on a loaded machine (the window may otherwise grow to 20 per
        # domain); without reuse it would still be one session per message.
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, idle_timeout="30s",
                                              max_connections=4))

        want = {}
        msgs = []
        for i in range(n_msgs):
            rcpt = "user%d@d%d.test" % (i, i % n_domains + 1)
            mid = "bulk%d@client.test" % i
            want[mid.encode()] = rcpt
            msgs.append(("sender%d@client.test" % (i % 7), [rcpt],
                         mailnet.make_message(mid, "sender@client.test", [rcpt]), [], []))
        mailnet.submit(d.host, d.port, msgs, connections=8)

        def arrived():
            return sum(s.stats()["messages"] for s in sinks) >= n_msgs
        self.assertTrue(mailnet.wait_until(arrived, 120),
                        "only %d of %d arrived" % (sum(s.stats()["messages"] for s in sinks), n_msgs))
        lines = self.wait_log(d, lambda ls: sum(x["status"] == "delivered" for x in ls) >= n_msgs,
                              30, "%d delivered lines" % n_msgs)
        # Every connection opened is still open, pooled (idle_timeout 30s):
        # none was closed after one message and replaced.
        def totals():   # (the sink's start-up probe is one session each)
            st = [s.stats() for s in sinks]
            return sum(x["sessions"] - 1 for x in st), sum(x["active_sessions"] for x in st)
        settled = mailnet.wait_until(lambda: (lambda t: t[0] == t[1])(totals()), 5, 0.1)
        open_at_end = totals()
        text = self.stop_relay(d)
        for s in sinks:
            self.assertEqual(s.stop(), 0)

        # Each message exactly once, to its recipient, from its sender.
        seen = collections.Counter()
        for s in sinks:
            for env, data in s.stored():
                ids = mailnet.message_ids(data)
                self.assertEqual(len(ids), 1, data[:500])
                mid = ids[0][1:-1]
                seen[mid] += 1
                self.assertEqual(env["to"], ["<%s>" % want[mid]], env)
                self.assertRegex(env["from"], r"^<sender\d@client\.test>$")
        dups = {k: v for k, v in seen.items() if v != 1}
        self.assertEqual(dups, {}, "delivered more than once")
        self.assertEqual(set(seen), set(want), "missing: %r" % (sorted(set(want) - set(seen))[:10],))
        # Per-domain counts agree with what was sent.
        per_domain = collections.Counter()
        for s in sinks:
            per_domain.update(s.stats().get("domains", {}))
        self.assertEqual(per_domain, collections.Counter(
            {"d%d.test" % k: n_msgs // n_domains for k in range(1, n_domains + 1)}))
        self.assertEqual(len([x for x in lines if x["status"] != "delivered"]), 0,
                         [x for x in lines if x["status"] != "delivered"][:5])
        self.assertTrue(all(x["attempt"] == "1" for x in lines))

        # Connections are reused: far fewer sessions than messages.
        sessions = sum(s.stats()["sessions"] - 1 for s in sinks)   # less the probes
        print("\nbulk: %d messages over %d sink sessions (ratio %.3f)"
              % (n_msgs, sessions, sessions / n_msgs), flush=True)
        self.assertLess(sessions, n_msgs / 4)
        self.assertTrue(settled, "sessions opened %d, still open %d" % open_at_end)
        self.assertIn("event=exit status=0", text)


class ByteForByte(mailnet.NetTestCase, unittest.TestCase):
    def test_messages_arrive_unchanged_after_the_received_header(self):
        net = mailnet.Addresses(1)
        zone = mailnet.mx_zone("bytes.test", [(10, "mx.bytes.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port))
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["smtp"] = {"add_missing_headers": False}   # bytes as sent
        d = self.relay(settings)

        bodies = {
            "dots": b"Subject: dots\r\nMessage-ID: <dots@t>\r\n\r\n.\r\n..\r\n.leading dot\r\n"
                    b"...three\r\n. \r\nend\r\n",
            "lone-dot-last": b"Subject: last\r\nMessage-ID: <last@t>\r\n\r\nbody\r\n.\r\n",
            "empty-lines": b"Subject: empty\r\nMessage-ID: <empty@t>\r\n\r\n\r\n\r\n\r\nx\r\n\r\n",
            "long-line": b"Subject: long\r\nMessage-ID: <long@t>\r\n\r\n" + b"x" * 998 + b"\r\n",
            "whitespace": b"Subject: ws\r\nMessage-ID: <ws@t>\r\nX-Folded: a\r\n\tb\r\n\r\n"
                          b"trailing  \r\n\ttab\r\n \r\n",
            "no-body": b"Subject: nobody\r\nMessage-ID: <nobody@t>\r\n",
            "big": b"Subject: big\r\nMessage-ID: <big@t>\r\n\r\n" +
                   b"".join(b"%06d " % i + b"abcdefghij" * 7 + b"\r\n" for i in range(6000)),
        }
        eightbit = b"Subject: 8bit\r\nMessage-ID: <8bit@t>\r\nContent-Type: text/plain; " \
                   b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" \
                   b"gr\xc3\xbc\xc3\x9fe \xe2\x82\xac\r\n\x80\xff raw\r\n"
        msgs = [("alice@client.test", ["bob@bytes.test"], body, [], [])
                for body in bodies.values()]
        msgs.append(("alice@client.test", ["carol@bytes.test", "dave@bytes.test",
                                           "erin@bytes.test"],
                     b"Subject: three\r\nMessage-ID: <three@t>\r\n\r\nfor three\r\n", [], []))
        msgs.append(("", ["null@bytes.test"],
                     b"Subject: null\r\nMessage-ID: <null@t>\r\n\r\nnull sender\r\n", [], []))
        msgs.append(("alice@client.test", ["eight@bytes.test"], eightbit, ["BODY=8BITMIME"], []))
        mailnet.submit(d.host, d.port, msgs, connections=1)

        self.assertTrue(mailnet.wait_until(lambda: len(rcv.handler.snapshot()) >= len(msgs), 60),
                        "received %d of %d" % (len(rcv.handler.snapshot()), len(msgs)))
        self.stop_relay(d)
        got = {}
        for m in rcv.handler.snapshot():
            ids = mailnet.message_ids(m.content)
            self.assertEqual(len(ids), 1, m.content[:300])
            self.assertNotIn(ids[0], got, "delivered twice")
            got[ids[0]] = m
        self.assertEqual(len(got), len(msgs))
        for sender, rcpts, body, mopts, _ in msgs:
            mid = mailnet.message_ids(body)[0]
            m = got[mid]
            first, rest = mailnet.split_first_header(m.content)
            self.assertTrue(first.startswith(b"Received: from client.test"), first)
            self.assertIn(b"by relay.test", first)
            want = body if body.endswith(b"\r\n") else body + b"\r\n"
            self.assertEqual(rest, want, "message %s changed in transit" % mid.decode())
            self.assertEqual(m.sender, sender or "<>", mid)
            self.assertEqual(sorted(m.rcpts), sorted(rcpts), mid)
            if mopts:
                self.assertIn("BODY=8BITMIME", m.mail_options, mid)


class Transactions(mailnet.NetTestCase, unittest.TestCase):
    def test_many_recipients_split_into_transactions(self):
        net = mailnet.Addresses(1)
        dns = self.started(mailnet.Dnsmasq(self.tmp, mailnet.mx_zone(
            "many.test", [(10, "mx.many.test", net.ips[0])])))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, max_recipients_per_transaction=100))
        rcpts = ["r%03d@many.test" % i for i in range(250)]
        mailnet.submit(d.host, d.port, [("a@client.test", rcpts, mailnet.make_message(
            "many@client.test", "a@client.test", ["list@many.test"]), [], [])], connections=1)
        self.wait_log(d, lambda ls: sum(x["status"] == "delivered" for x in ls) >= len(rcpts), 60,
                      "250 delivered recipients")
        self.stop_relay(d)
        got = rcv.handler.snapshot()
        self.assertEqual(sorted(len(m.rcpts) for m in got), [50, 100, 100])
        self.assertEqual(collections.Counter(r for m in got for r in m.rcpts), collections.Counter(rcpts))
        self.assertEqual(len({m.content for m in got}), 1, "the copies differ")

    def test_random_tempfails_every_recipient_exactly_once(self):
        # Recipients refused at random (451) and whole transactions refused
        # after DATA: only the deferred recipients may be sent again.
        net = mailnet.Addresses(1)
        dns = self.started(mailnet.Dnsmasq(self.tmp, mailnet.mx_zone(
            "flaky.test", [(10, "mx.flaky.test", net.ips[0])])))
        sink = self.started(mailnet.Sink(self.tmp, [net.ips[0]], net.port, "--fail-rcpt-4xx", "20",
                                         "--fail-data-4xx", "10", "--seed", "7"))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, min_backoff="200ms",
                                              max_backoff="1s"))
        msgs, want = [], collections.Counter()
        for i in range(200):
            rcpts = ["m%d-r%d@flaky.test" % (i, j) for j in range(3)]
            mid = "flaky%d@client.test" % i
            want.update((mid, "<%s>" % r) for r in rcpts)
            msgs.append(("a@client.test", rcpts, mailnet.make_message(mid, "a@client.test", rcpts), [], []))
        mailnet.submit(d.host, d.port, msgs, connections=4)
        lines = self.wait_log(d, lambda ls: sum(x["status"] == "delivered" for x in ls) >= len(want),
                              120, "every recipient delivered")
        self.stop_relay(d)
        self.assertEqual(sink.stop(), 0)
        got = collections.Counter()
        for env, data in sink.stored():
            mid = mailnet.message_ids(data)[0][1:-1].decode()
            got.update((mid, r) for r in env["to"])
        self.assertEqual(got, want)
        self.assertNotIn("bounced", {x["status"] for x in lines})
        retried = sum(x["status"] == "deferred" for x in lines)
        print("\nflaky: %d deferrals before %d deliveries" % (retried, len(want)), flush=True)
        self.assertGreater(retried, 0)


class Pool(mailnet.NetTestCase, unittest.TestCase):
    def test_idle_pooled_connection_is_closed_with_quit(self):
        net = mailnet.Addresses(1)
        dns = self.started(mailnet.Dnsmasq(self.tmp, mailnet.mx_zone(
            "pool.test", [(10, "mx.pool.test", net.ips[0])])))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, idle_timeout="1s"))
        mailnet.submit(d.host, d.port, [
            ("a@client.test", ["u%d@pool.test" % i],
             mailnet.make_message("pool%d@client.test" % i, "a@client.test", ["u@pool.test"]), [], [])
            for i in range(3)], connections=1)
        self.assertTrue(mailnet.wait_until(lambda: len(rcv.handler.snapshot()) == 3, 30))
        # After delivery.idle_timeout the pooled connection says QUIT; it is
        # not a failed connection.
        self.assertTrue(mailnet.wait_until(lambda: rcv.handler.quits >= rcv.handler.sessions, 20),
                        "sessions %d, QUITs %d" % (rcv.handler.sessions, rcv.handler.quits))
        text = self.stop_relay(d)
        self.assertNotIn("result=failed", text)
        self.assertLessEqual(rcv.handler.sessions, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
