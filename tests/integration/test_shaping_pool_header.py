#!/usr/bin/python3
"""test_shaping_pool_header - shaping.pool_header (PowerMTA's X-Virtual-MTA)
end to end with smtplib and an aiosmtpd receiver that checks the peer
address.

Two pools of one source each (127.a.b.x). A trusted client's message with
"X-Virtual-MTA: b" leaves from pool b's address, one with "a" from pool
a's, one without from neither; the field never reaches the receiver; an
unknown pool is refused at the end of DATA with 550 5.7.0 naming it. A
message queued with "b" while the receiver is down keeps its pool across a
restart of the relay (the choice is in the spool record). HTTP injection
(a trusted client) chooses the pool the same way; an unknown one gets 400.
Every process is stopped by PID; the test stays well under a minute.
"""
import hashlib
import http.client
import json
import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402,F401
import mailnet  # noqa: E402

TOKEN = "rm-pool-header-token"

SHAPING = """
sources = ( { name = "s1"; address = "%(ip1)s"; }, { name = "s2"; address = "%(ip2)s"; } );
pools = ( { name = "a"; sources = ( { source = "s1"; } ); },
          { name = "b"; sources = ( { source = "s2"; } ); } );
"""


def message(mid, rcpt, pool):
    head = "X-Virtual-MTA: %s\r\n" % pool if pool is not None else ""
    return ("From: s@client.test\r\nTo: %s\r\nSubject: pool %s\r\n%sMessage-ID: <%s@client.test>\r\n\r\n"
            "Hello.\r\n" % (rcpt, pool, head, mid)).encode()


class PoolHeader(mailnet.NetTestCase, unittest.TestCase):
    def setup_relay(self, start_receiver=True, http=False):
        net = mailnet.Addresses(3)
        zone = mailnet.mx_zone("a.test", [(10, "mx.a.test", net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        rcv = mailnet.Receiver(net.ips[0], net.port, mailnet.RecordingHandler())
        if start_receiver:
            self.started(rcv)
        path = os.path.join(self.tmp, "shaping.conf")
        with open(path, "w") as f:
            f.write(SHAPING % {"ip1": net.ips[1], "ip2": net.ips[2]})
        settings = mailnet.relay_settings(net.port, dns.ns)
        settings["shaping"] = {"file": path, "pool_header": "X-Virtual-MTA"}
        if http:
            tokens = os.path.join(self.tmp, "tokens")
            with open(tokens, "w") as f:
                f.write("app:%s:inject\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
            self.http_port = harness.free_port("127.0.0.1")
            settings["http"] = {"listen": ["127.0.0.1:%d" % self.http_port], "token_file": tokens}
        d = self.relay(settings)
        if http:
            harness.wait_port("127.0.0.1", self.http_port)
        return d, rcv, net

    def inject(self, rcpt, pool, mid):
        body = json.dumps({"envelope_sender": "s@client.test", "recipients": [{"email": rcpt}],
                           "content": message(mid, rcpt, pool).decode()}).encode()
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        c.request("POST", "/api/inject/v1", body=body,
                  headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        r = c.getresponse()
        out = (r.status, json.loads(r.read()))
        c.close()
        return out

    def send(self, d, rcpt, pool, mid):
        with smtplib.SMTP(d.host, d.port, timeout=30) as c:
            c.sendmail("s@client.test", [rcpt], message(mid, rcpt, pool))

    def by_rcpt(self, rcv):
        return {m.rcpts[0]: m for m in rcv.handler.snapshot()}

    def test_header_chooses_pool_and_is_removed(self):
        d, rcv, net = self.setup_relay()
        self.send(d, "tob@a.test", "b", "m1")
        self.send(d, "toa@a.test", "a", "m2")
        self.send(d, "none@a.test", None, "m3")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send(d, "bad@a.test", "nosuch", "m4")
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertIn(b'5.7.0 X-Virtual-MTA: no egress pool named "nosuch"', cm.exception.smtp_error)
        want = ["none@a.test", "toa@a.test", "tob@a.test"]
        self.assertTrue(mailnet.wait_until(lambda: sorted(self.by_rcpt(rcv)) == want, 30),
                        "not delivered:\n" + d.log_text()[-3000:])
        got = self.by_rcpt(rcv)
        self.assertEqual(got["tob@a.test"].peer[0], net.ips[2])
        self.assertEqual(got["toa@a.test"].peer[0], net.ips[1])
        self.assertNotIn(got["none@a.test"].peer[0], net.ips[1:])
        for m in got.values():
            self.assertNotIn(b"x-virtual-mta", m.content.lower(), m.content[:400])
            self.assertIn(b"Subject: pool", m.content)
        self.stop_relay(d)

    def test_http_injection_chooses_pool(self):
        d, rcv, net = self.setup_relay(http=True)
        status, answer = self.inject("viahttp@a.test", "b", "h1")
        self.assertEqual(status, 200, answer)
        status, answer = self.inject("bad@a.test", "nosuch", "h2")
        self.assertEqual(status, 400, answer)
        self.assertIn('X-Virtual-MTA: no egress pool named \\"nosuch\\"', json.dumps(answer))
        self.assertTrue(mailnet.wait_until(lambda: "viahttp@a.test" in self.by_rcpt(rcv), 30),
                        "not delivered:\n" + d.log_text()[-3000:])
        m = self.by_rcpt(rcv)["viahttp@a.test"]
        self.assertEqual(m.peer[0], net.ips[2])
        self.assertNotIn(b"x-virtual-mta", m.content.lower())
        self.assertNotIn("bad@a.test", self.by_rcpt(rcv))
        self.stop_relay(d)

    def test_pool_survives_a_restart(self):
        d, rcv, net = self.setup_relay(start_receiver=False)
        self.send(d, "later@a.test", "b", "m5")
        self.wait_log(d, lambda ls: any(x["rcpt"] == "later@a.test" and x["status"] == "deferred" for x in ls),
                      30, "a deferral while the receiver is down")
        self.stop_relay(d)
        self.started(rcv)
        d.start()
        self.assertTrue(mailnet.wait_until(lambda: "later@a.test" in self.by_rcpt(rcv), 30),
                        "not delivered after the restart:\n" + d.log_text()[-3000:])
        self.assertEqual(self.by_rcpt(rcv)["later@a.test"].peer[0], net.ips[2])
        self.stop_relay(d)


if __name__ == "__main__":
    unittest.main()
