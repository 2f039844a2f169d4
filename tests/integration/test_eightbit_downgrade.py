#!/usr/bin/python3
"""test_eightbit_downgrade - RFC 6152 section 3: an 8-bit message relayed to
a next hop that does not offer 8BITMIME.

The receiver is aiosmtpd with 8BITMIME taken out of its EHLO reply. An
8-bit multipart message must arrive 7-bit, its 8bit part re-encoded as
quoted-printable (decoding to the same text), its 7-bit part unchanged;
a message whose 8-bit bytes sit inside a message/rfc822 part cannot be
converted and bounces with 5.6.3. A receiver that offers 8BITMIME gets the
same message byte for byte (after the Received: line).
"""
import email
import email.policy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402


class SevenBitOnly(mailnet.RecordingHandler):
    """SevenBitOnly - a receiver that does not offer 8BITMIME."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [r for r in responses if "8BITMIME" not in r.upper()]


TEXT = "Grüße aus Köln, 5 € = bientôt.\r\nline two = plain ascii  \r\n"
MULTIPART = (
    b"From: <a@client.test>\r\nTo: <r@seven.test>\r\nSubject: 8bit\r\n"
    b"Message-ID: <eight@client.test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain part\r\n"
    b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + TEXT.encode() + b"--zz--\r\n")
RFC822 = (
    b"From: <a@client.test>\r\nTo: <r@seven.test>\r\nSubject: inner\r\n"
    b"Message-ID: <inner@client.test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: forwarded\r\n\r\nK\xc3\xb6ln\r\n")


def body_after_received(content):
    _, rest = mailnet.split_first_header(content)
    return rest


class Downgrade(mailnet.NetTestCase, unittest.TestCase):
    def test_8bit_to_7bit_peer_converted_or_bounced(self):
        net = mailnet.Addresses(2)
        zone = (mailnet.mx_zone("seven.test", [(10, "mx.seven.test", net.ips[0])])
                + mailnet.mx_zone("eight.test", [(10, "mx.eight.test", net.ips[1])]))
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        seven = self.started(mailnet.Receiver(net.ips[0], net.port, SevenBitOnly()))
        eight = self.started(mailnet.Receiver(net.ips[1], net.port))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))

        mailnet.submit(d.host, d.port, [
            ("a@client.test", ["r@seven.test"], MULTIPART, ["BODY=8BITMIME"], []),
            ("a@client.test", ["r@eight.test"], MULTIPART, ["BODY=8BITMIME"], []),
            ("a@client.test", ["bounce@seven.test"], RFC822, ["BODY=8BITMIME"], ["NOTIFY=NEVER"]),
        ], connections=1)
        lines = self.wait_log(d, lambda ls: len(ls) >= 3, 60, "three outcomes")
        self.assertTrue(mailnet.wait_until(lambda: len(seven.handler.snapshot()) >= 1
                                           and len(eight.handler.snapshot()) >= 1, 30))
        self.stop_relay(d)

        by_rcpt = {x["rcpt"]: x for x in lines}
        self.assertEqual(by_rcpt["r@seven.test"]["status"], "delivered", by_rcpt)
        self.assertEqual(by_rcpt["r@eight.test"]["status"], "delivered", by_rcpt)
        b = by_rcpt["bounce@seven.test"]
        self.assertEqual((b["status"], b["code"], b["dsn"]), ("bounced", "554", "5.6.3"), b)
        self.assertEqual([m.rcpts for m in seven.handler.snapshot()], [["r@seven.test"]])

        # The 7-bit peer: no 8-bit byte, no BODY=8BITMIME; the part decodes
        # to the text that was sent, the other part is untouched.
        got = seven.handler.snapshot()[0]
        self.assertNotIn("BODY=8BITMIME", [o.upper() for o in got.mail_options])
        self.assertTrue(all(c < 0x80 for c in got.content), "8-bit byte sent to a 7-bit peer")
        body = body_after_received(got.content)
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable\r\n", body)
        self.assertNotIn(b"Content-Transfer-Encoding: 8bit", body)
        self.assertTrue(all(len(line) <= 76 for line in body.split(b"\r\n")))
        msg = email.message_from_bytes(body, policy=email.policy.default)
        self.assertEqual(msg.defects, [])
        parts = msg.get_payload()
        self.assertEqual(parts[0].get_content(), "plain part")
        self.assertEqual(parts[1].get_content(), TEXT[:-2])
        self.assertEqual(parts[1]["Content-Transfer-Encoding"], "quoted-printable")
        self.assertIn(b"--zz\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain part\r\n--zz\r\n",
                      body)

        # The 8BITMIME peer: as it was sent.
        raw = eight.handler.snapshot()[0]
        self.assertEqual(body_after_received(raw.content), MULTIPART)
        self.assertIn("BODY=8BITMIME", [o.upper() for o in raw.mail_options])


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
