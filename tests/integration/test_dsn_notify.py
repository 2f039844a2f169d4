#!/usr/bin/python3
"""test_dsn_notify - NOTIFY=SUCCESS and NOTIFY=DELAY (RFC 3461), and the
RFC 6533 report for an SMTPUTF8 message, over the wire.

- NOTIFY=SUCCESS to a next hop without DSN (aiosmtpd): one "relayed"
  report to the sender (RFC 3461 5.2.2).
- NOTIFY=SUCCESS to a next hop with DSN (Postfix's smtp-sink): NOTIFY goes
  along, and no report from us (the next hop reports).
- NOTIFY=DELAY to a host that keeps answering 451, with
  delivery.delay_warning_time = 2s: exactly one "delayed" report however
  many retries; NOTIFY=FAILURE alone gets none.
- A bounced SMTPUTF8 message: a global report (message/global-delivery-status,
  "utf-8;" address type with the address readable), sent with SMTPUTF8.
"""
import email
import email.policy
import os
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402


class AlwaysLater(mailnet.RecordingHandler):
    def rcpt_reply(self, address):
        if address.startswith("later"):
            return "451 4.7.1 Try again later"
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        return None


def utf8_receiver(ip, port, handler):
    """utf8_receiver - an aiosmtpd receiver that offers SMTPUTF8."""
    r = mailnet.Receiver(ip, port, handler)
    r.controller = mailnet.Controller(handler, hostname=ip, port=port, server_hostname="mx.receiver.test",
                                      ready_timeout=10, enable_SMTPUTF8=True)
    return r


class SmtpSink:
    """SmtpSink - Postfix's smtp-sink on ip:port: it offers DSN."""

    def __init__(self, ip, port):
        self.ip, self.port, self.proc = ip, port, None

    def start(self):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(["/usr/sbin/smtp-sink", *user, "%s:%d" % (self.ip, self.port), "64"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.ip, self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def report(msg_content):
    """report - (the DSN as an email message, its per-recipient blocks)."""
    _, body = mailnet.split_first_header(msg_content) if msg_content.startswith(b"Received:") \
        else (None, msg_content)
    msg = email.message_from_bytes(body, policy=email.policy.default)
    parts = msg.get_payload()
    blocks = [dict((k.lower(), str(v)) for k, v in b.items()) for b in parts[1].get_payload()]
    return msg, blocks[1:]


class Notify(mailnet.NetTestCase, unittest.TestCase):
    def test_success_relayed_passed_on_and_one_delay_notice(self):
        net = mailnet.Addresses(4)
        zone = (mailnet.mx_zone("nodsn.test", [(10, "mx.nodsn.test", net.ips[0])])
                + mailnet.mx_zone("dsn.test", [(10, "mx.dsn.test", net.ips[1])])
                + mailnet.mx_zone("senders.test", [(10, "mx.senders.test", net.ips[2])])
                + mailnet.mx_zone("slow.test", [(10, "mx.slow.test", net.ips[3])]))
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        nodsn = self.started(mailnet.Receiver(net.ips[0], net.port))
        self.started(SmtpSink(net.ips[1], net.port))
        home = self.started(mailnet.Receiver(net.ips[2], net.port))
        slow = self.started(mailnet.Receiver(net.ips[3], net.port, AlwaysLater()))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns, delay_warning_time="2s",
                                              min_backoff="500ms", max_backoff="1s"))

        def msg(mid, sender, rcpt):
            return mailnet.make_message(mid, sender, [rcpt])
        mailnet.submit(d.host, d.port, [
            ("alice@senders.test", ["r@nodsn.test"], msg("s1@c.test", "alice@senders.test", "r@nodsn.test"),
             [], ["NOTIFY=SUCCESS"]),
            ("alice@senders.test", ["r@dsn.test"], msg("s2@c.test", "alice@senders.test", "r@dsn.test"),
             [], ["NOTIFY=SUCCESS,FAILURE"]),
            ("bob@senders.test", ["later1@slow.test"], msg("s3@c.test", "bob@senders.test", "later1@slow.test"),
             [], ["NOTIFY=DELAY,FAILURE"]),
            ("carol@senders.test", ["later2@slow.test"], msg("s4@c.test", "carol@senders.test", "later2@slow.test"),
             [], ["NOTIFY=FAILURE"]),
        ], connections=1)

        def attempts(ls, rcpt):
            return [x for x in ls if x["rcpt"] == rcpt]
        # Well past the 2 s: several retries after the notice was due.
        lines = self.wait_log(d, lambda ls: len(attempts(ls, "later1@slow.test")) >= 6
                              and len(attempts(ls, "later2@slow.test")) >= 6
                              and len(attempts(ls, "r@dsn.test")) >= 1
                              and len(attempts(ls, "r@nodsn.test")) >= 1, 90, "retries")
        self.assertTrue(mailnet.wait_until(lambda: len(home.handler.snapshot()) >= 2, 30),
                        "reports: %r\n%s" % ([m.rcpts for m in home.handler.snapshot()], d.log_text()[-3000:]))
        time.sleep(1.5)   # room for a wrong extra report
        text = self.stop_relay(d)
        self.assertEqual([x["status"] for x in attempts(lines, "r@dsn.test")], ["delivered"])
        self.assertEqual([x["status"] for x in attempts(lines, "r@nodsn.test")], ["delivered"])
        self.assertEqual(len(nodsn.handler.snapshot()), 1)

        got = {}
        for m in home.handler.snapshot():
            self.assertEqual(m.sender, "<>")
            got.setdefault(m.rcpts[0], []).append(m)
        self.assertEqual(sorted(got), ["alice@senders.test", "bob@senders.test"],
                         "carol (NOTIFY=FAILURE) and the DSN next hop want no report")
        self.assertEqual(len(got["alice@senders.test"]), 1)
        self.assertEqual(len(got["bob@senders.test"]), 1, "one delay notice, not one per retry")

        msg, blocks = report(got["alice@senders.test"][0].content)
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(str(msg["Subject"]), "Successful Mail Delivery Report")
        self.assertEqual(len(blocks), 1, blocks)
        self.assertEqual(blocks[0]["final-recipient"], "rfc822; r@nodsn.test")
        self.assertEqual(blocks[0]["action"], "relayed")
        self.assertTrue(blocks[0]["status"].startswith("2."), blocks[0])
        self.assertEqual(msg.get_payload()[2].get_content_type(), "text/rfc822-headers")

        msg, blocks = report(got["bob@senders.test"][0].content)
        self.assertEqual(str(msg["Subject"]), "Delayed Mail (still being retried)")
        self.assertEqual([(b["final-recipient"], b["action"]) for b in blocks],
                         [("rfc822; later1@slow.test", "delayed")])
        self.assertIn("will-retry-until", blocks[0])
        self.assertEqual(len(mailnet.events(text, "delay_notice")), 1)

    def test_smtputf8_bounce_is_a_global_report(self):
        net = mailnet.Addresses(2)
        zone = (mailnet.mx_zone("u8.test", [(10, "mx.u8.test", net.ips[0])])
                + mailnet.mx_zone("senders.test", [(10, "mx.senders.test", net.ips[1])]))
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        self.started(utf8_receiver(net.ips[0], net.port, AlwaysLater()))
        home = self.started(utf8_receiver(net.ips[1], net.port, mailnet.RecordingHandler()))
        d = self.relay(mailnet.relay_settings(net.port, dns.ns))
        s = smtplib.SMTP(d.host, d.port, timeout=60)
        s.ehlo("client.test")
        body = ("From: <jörg@senders.test>\r\nTo: <reject-jürgen@u8.test>\r\n"
                "Subject: grüße\r\nMessage-ID: <u8@c.test>\r\n\r\nHallo\r\n").encode()
        s.sendmail("jörg@senders.test", ["reject-jürgen@u8.test"], body, ["SMTPUTF8", "BODY=8BITMIME"])
        s.quit()
        self.assertTrue(mailnet.wait_until(lambda: len(home.handler.snapshot()) >= 1, 60),
                        d.log_text()[-4000:])
        self.stop_relay(d)
        dsn = home.handler.snapshot()[0]
        self.assertIn("SMTPUTF8", [o.upper() for o in dsn.mail_options])
        self.assertEqual(dsn.rcpts, ["jörg@senders.test"])
        _, raw = mailnet.split_first_header(dsn.content)
        self.assertIn("Final-Recipient: utf-8; reject-jürgen@u8.test\r\n".encode(), raw)
        self.assertIn("To: <jörg@senders.test>\r\n".encode(), raw)
        self.assertIn(b"report-type=global-delivery-status", raw)
        self.assertIn(b"Content-Type: message/global-delivery-status\r\n", raw)
        self.assertIn(b"Content-Type: message/global\r\n", raw)
        self.assertNotIn(b"j??rgen", raw)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
