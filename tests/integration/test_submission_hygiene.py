#!/usr/bin/python3
"""test_submission_hygiene - a relay_networks client's message without
Message-ID and Date arrives with both (smtp.add_missing_headers, default
on); one that has them, or with the key off, arrives as it was sent."""
import email.utils
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402

BARE = b"From: <a@client.test>\r\nTo: <r@hyg.test>\r\nSubject: bare\r\n\r\nhello\r\n"
FULL = (b"From: <a@client.test>\r\nTo: <r@hyg.test>\r\nSubject: full\r\n"
        b"Message-ID: <mine@client.test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\nhello\r\n")


class Hygiene(mailnet.NetTestCase, unittest.TestCase):
    def run_relay(self, extra_smtp, messages):
        net = mailnet.Addresses(1)
        dns = self.started(mailnet.Dnsmasq(self.tmp, mailnet.mx_zone("hyg.test", [(10, "mx.hyg.test", net.ips[0])])))
        rcv = self.started(mailnet.Receiver(net.ips[0], net.port))
        settings = mailnet.relay_settings(net.port, dns.ns)
        if extra_smtp:
            settings["smtp"] = extra_smtp
        d = self.relay(settings)
        mailnet.submit(d.host, d.port, [("a@client.test", ["r@hyg.test"], m, [], []) for m in messages],
                       connections=1)
        self.assertTrue(mailnet.wait_until(lambda: len(rcv.handler.snapshot()) >= len(messages), 60),
                        d.log_text()[-3000:])
        self.stop_relay(d)
        got = {}
        for m in rcv.handler.snapshot():
            _, rest = mailnet.split_first_header(m.content)
            got[b"bare" if b"Subject: bare" in rest else b"full"] = rest
        return got

    def test_added_for_trusted_client(self):
        got = self.run_relay(None, [BARE, FULL])
        self.assertEqual(got[b"full"], FULL)
        ids = mailnet.message_ids(got[b"bare"])
        self.assertEqual(len(ids), 1, got[b"bare"])
        self.assertRegex(ids[0], rb"^<\d+\.[^@]+@[^>]+>$")
        dates = [l for l in got[b"bare"].split(b"\r\n") if l.startswith(b"Date: ")]
        self.assertEqual(len(dates), 1, got[b"bare"])
        self.assertIsNotNone(email.utils.parsedate_to_datetime(dates[0][6:].decode()))
        self.assertTrue(got[b"bare"].endswith(BARE), "the client's bytes follow unchanged")

    def test_key_off(self):
        got = self.run_relay({"add_missing_headers": False}, [BARE])
        self.assertEqual(got[b"bare"], BARE)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
