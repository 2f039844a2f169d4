#!/usr/bin/python3
"""test_outbound_tls_resume - outbound TLS sessions are resumed.

One message per connection (delivery.max_messages_per_connection = 1) to a
STARTTLS receiver on Python's ssl (OpenSSL: session tickets and a session
cache on the server side). The first connection does a full handshake,
every later one offers the cached session and the receiver reports
session_reused; the relay's delivery_tls log and its
ringmail_outbound_tls_{full,resumed}_total counters agree. Under "verify"
resumed sessions still count as verified. With
delivery.tls_session_cache_size = 0 nothing is resumed. No timing asserts.
"""
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from test_outbound_tls import MX, CloseNotifyReceiver, make_pki  # noqa: E402
import ssl  # noqa: E402


class ReuseNotingContext:
    """ReuseNotingContext - an SSLContext whose wrap_socket notes, after
    the handshake, whether the client resumed a session."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.reused = []

    @property
    def options(self):
        return self.ctx.options

    @options.setter
    def options(self, value):
        self.ctx.options = value

    def wrap_socket(self, *args, **kwargs):
        s = self.ctx.wrap_socket(*args, **kwargs)
        self.reused.append(s.session_reused)
        return s


class OutboundResume(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.pki = make_pki(self.tmp)
        self.net = mailnet.Addresses(1)
        zone = mailnet.mx_zone("tls.test", [(10, MX, self.net.ips[0])])
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, zone))

    def metrics(self, d):
        url = "http://%s/metrics" % d.settings["metrics"]["listen"][0]
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def run_sessions(self, policy, n, cache_size=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki["cert"], self.pki["key"])
        noting = ReuseNotingContext(ctx)
        rcv = self.started(CloseNotifyReceiver(self.net.ips[0], self.net.port, noting))
        settings = {"tls": policy, "tls_ca_file": self.pki["ca"],
                    "max_messages_per_connection": 1}
        if cache_size is not None:
            settings["tls_session_cache_size"] = cache_size
        extra = mailnet.relay_settings(self.net.port, self.dns.ns, **settings)
        extra["metrics"] = {"listen": ["127.0.0.1:%d" % harness.free_port("127.0.0.1")]}
        d = self.relay(extra, workers=1)
        for i in range(n):
            msg = mailnet.make_message("r%d@client.test" % i, "alice@client.test", ["bob@tls.test"])
            mailnet.submit(d.host, d.port, [("alice@client.test", ["bob@tls.test"], msg, [], [])],
                           connections=1)
            # One at a time: the next connection starts after this one's
            # handshake put its session in the cache.
            self.wait_log(d, lambda ls, k=i + 1: sum(x["status"] == "delivered" for x in ls) >= k,
                          60, "delivery %d" % (i + 1))
        mailnet.wait_until(lambda: len(rcv.ends) >= n or None, 30)
        metrics = self.metrics(d)
        text = self.stop_relay(d)
        self.assertEqual(rcv.messages, n, text[-3000:])
        return noting.reused, mailnet.events(text, "delivery_tls"), metrics

    def check_resumed(self, policy):
        reused, events, metrics = self.run_sessions(policy, 4)
        self.assertEqual(reused, [False, True, True, True], "receiver's view")
        self.assertEqual([("resumed=1" in e) for e in events], [False, True, True, True], events)
        self.assertRegex(metrics, r"(?m)^ringmail_outbound_tls_full_total 1$")
        self.assertRegex(metrics, r"(?m)^ringmail_outbound_tls_resumed_total 3$")
        return events

    def test_encrypt_resumes_after_the_first_handshake(self):
        self.check_resumed("encrypt")

    def test_verify_resumes_and_stays_verified(self):
        events = self.check_resumed("verify")
        self.assertTrue(all("verified=1" in e for e in events), events)

    def test_cache_size_zero_never_resumes(self):
        reused, events, metrics = self.run_sessions("encrypt", 3, cache_size=0)
        self.assertEqual(reused, [False, False, False])
        self.assertFalse(any("resumed=1" in e for e in events), events)
        self.assertRegex(metrics, r"(?m)^ringmail_outbound_tls_full_total 3$")
        self.assertRegex(metrics, r"(?m)^ringmail_outbound_tls_resumed_total 0$")


if __name__ == "__main__":
    unittest.main()
