#!/usr/bin/python3
"""test_bounce_mime - the DSN that bounce_build() writes, read by Python's
email package: is it the multipart/report that RFC 3464 describes?

Runs $RINGMAIL_BIN/ringmail-bounce-sample (fixed input) and checks the
structure, the delivery-status fields and the original message part."""
import email
import email.policy
import os
import subprocess
import sys
import unittest

BIN = os.environ.get("RINGMAIL_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))


def sample(*args):
    out = subprocess.run([os.path.join(BIN, "ringmail-bounce-sample"), *args],
                         check=True, capture_output=True, timeout=60).stdout
    return out


def status_blocks(part):
    """The delivery-status part as a list of field blocks (dicts)."""
    payload = part.get_payload()
    # email parses message/delivery-status into a list of Message blocks.
    return [dict((k.lower(), str(v)) for k, v in block.items()) for block in payload]


class BounceMime(unittest.TestCase):
    def test_crlf_only(self):
        raw = sample()
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "bare LF in the DSN")
        self.assertNotIn(b"\r", raw.replace(b"\r\n", b""), "bare CR in the DSN")

    def test_structure_full(self):
        msg = email.message_from_bytes(sample(), policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertTrue(str(msg["From"]).endswith("MAILER-DAEMON@relay.example.com>"), msg["From"])
        self.assertEqual(str(msg["To"]), "alice@example.org")
        self.assertEqual(str(msg["Auto-Submitted"]), "auto-generated")
        self.assertIsNotNone(msg["Date"].datetime, "Date does not parse")
        self.assertIn("@relay.example.com>", str(msg["Message-ID"]))
        self.assertEqual(msg.defects, [], f"defects: {msg.defects}")
        parts = msg.get_payload()
        types = [p.get_content_type() for p in parts]
        self.assertEqual(types, ["text/plain", "message/delivery-status", "message/rfc822"])
        self.assertIn("bob@example.net", parts[0].get_content())

        blocks = status_blocks(parts[1])
        self.assertEqual(len(blocks), 3, f"got {len(blocks)} blocks, want 3")
        per_msg, bob, carol = blocks
        self.assertEqual(per_msg["reporting-mta"], "dns; relay.example.com")
        self.assertEqual(per_msg["original-envelope-id"], "QQ314159")
        self.assertIn("arrival-date", per_msg)
        self.assertEqual(bob["final-recipient"], "rfc822; bob@example.net")
        self.assertEqual(bob["original-recipient"], "rfc822;bob@example.net")
        self.assertEqual(bob["action"], "failed")
        self.assertEqual(bob["status"], "5.1.1")
        self.assertEqual(bob["remote-mta"], "dns; mx.example.net")
        self.assertTrue(bob["diagnostic-code"].startswith("smtp; 550 5.1.1 No such user here"),
                        bob["diagnostic-code"])
        self.assertIn("last-attempt-date", bob)
        self.assertEqual(carol["action"], "delayed")
        self.assertEqual(carol["status"], "4.4.1")
        self.assertIn("will-retry-until", carol)

        original = parts[2].get_payload()[0]
        self.assertEqual(str(original["Subject"]), "Quarterly figures")
        self.assertEqual(str(original["Message-ID"]), "<sample-1@example.org>")
        self.assertIn(".a line that starts with a dot", original.get_content())

    def test_headers_only(self):
        msg = email.message_from_bytes(sample("hdrs"), policy=email.policy.default)
        parts = msg.get_payload()
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        text = parts[2].get_content()
        self.assertIn("Subject: Quarterly figures", text)
        self.assertNotIn("Hello Bob", text)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
