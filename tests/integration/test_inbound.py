"""test_inbound - inbound SMTP end to end (issue 3): what real clients send
lands in the durable spool with the right envelope and the exact content,
and reaches the next hop byte for byte; the relay rule; pipelining order.

Delivery goes to a closed port with an hour of backoff wherever a test looks
at the spool, so accepted messages stay queued; to a ringmail-sink --store
where a test looks at the delivered bytes.
"""
import os
import re
import shutil
import smtplib
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from inbound_common import (DaemonTestCase, RawClient, queue_id_of, send_smtplib,  # noqa: E402
                            spool_messages, split_received, wait_for)

BODY_8BIT = (b"From: a@src.test\r\nTo: many@dest.test\r\nSubject: caf\xc3\xa9 8bit\r\n"
             b"Message-ID: <8bit@src.test>\r\n\r\n"
             b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac\r\n"
             b".a line that starts with a dot\r\n"
             b"..two dots\r\n"
             b"\xff\xfe raw high octets\r\n"
             b"last line\r\n")


class Envelope(DaemonTestCase):
    def test_many_recipients_8bitmime(self):
        d = self.daemon()
        rcpts = ["user%03d@dest%d.test" % (i, i % 3) for i in range(200)]
        qid = send_smtplib(d, "a@src.test", rcpts, BODY_8BIT, mail_options=["BODY=8BITMIME"])
        m = self.spooled(d, qid)
        self.assertEqual(m["sender"], "a@src.test")
        self.assertEqual([r["address"] for r in m["recipients"]], rcpts)
        rec = m["record"]
        self.assertEqual(rec["body_type"], "8BITMIME")
        self.assertFalse(rec["smtputf8"])
        self.assertEqual(rec["helo"], "client.test")
        header = self.assert_body(rec["body"], BODY_8BIT)
        # Several recipients: no "for <...>" clause in the trace header.
        self.assertNotIn(b"for <", header)
        self.assertIn(("id %s" % qid).encode(), header)
        self.assertIn("event=queued id=%s" % qid, d.log_text())
        self.finish(d)

    def test_smtputf8(self):
        d = self.daemon()
        sender = "s\u00e9nder@src.test"
        rcpt = "\u7528\u6237.m\u00fcller@dest.test"
        body = ("From: %s\r\nTo: %s\r\nSubject: utf8\r\n\r\nh\u00e9llo\r\n" % (sender, rcpt)).encode()
        qid = send_smtplib(d, sender, [rcpt], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        m = self.spooled(d, qid)
        self.assertEqual(m["sender"], sender)
        self.assertEqual([r["address"] for r in m["recipients"]], [rcpt])
        self.assertTrue(m["record"]["smtputf8"])
        header = self.assert_body(m["record"]["body"], body)
        self.assertIn(b"with UTF8SMTP", header)
        self.assertIn(("for <%s>" % rcpt).encode(), header)
        # Without SMTPUTF8 the same UTF-8 address is refused.
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.ehlo("client.test")
            s.command_encoding = "utf-8"
            code, _ = s.docmd("MAIL FROM:<%s>" % sender)
            self.assertGreaterEqual(code, 500, "got %d for a UTF-8 sender without SMTPUTF8" % code)
        self.finish(d)

    def test_bdat_chunks(self):
        d = self.daemon()
        chunks = [b"From: a@src.test\r\nSubject: bdat\r\n", b"\r\n.not unstuffed\r\n",
                  b"\r\n.\r\n in BDAT a dot line is content\r\n", b"end\r\n"]
        c = RawClient(d.host, d.port)
        self.assertEqual(c.reply()[0], 220)
        code, ext = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertIn("CHUNKING", ext)
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test>")[0], 250)
        for chunk in chunks[:-1]:
            c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
            code, text = c.reply()
            self.assertEqual(code, 250, text)
        c.send(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        # An empty LAST chunk ends a second message.
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<c@dest.test>")[0], 250)
        c.send(b"BDAT 6\r\nx: y\r\n")
        self.assertEqual(c.reply()[0], 250)
        code, text = c.cmd("BDAT 0 LAST")
        self.assertEqual(code, 250, text)
        qid2 = queue_id_of(text[0])
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()
        m = self.spooled(d, qid)
        self.assertEqual([r["address"] for r in m["recipients"]], ["b@dest.test"])
        self.assert_body(m["record"]["body"], b"".join(chunks))
        self.assert_body(self.spooled(d, qid2)["record"]["body"], b"x: y\r\n")
        self.finish(d)

    def test_dsn_parameters(self):
        d = self.daemon()
        c = RawClient(d.host, d.port)
        c.reply()
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test> RET=HDRS ENVID=env+2Bid-42 SIZE=100")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@orig.test")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<c@dest.test> NOTIFY=NEVER")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<e@dest.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        code, text = c.cmd(b"Subject: dsn\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        c.cmd("QUIT")
        c.close()
        rec = self.spooled(d, qid)["record"]
        self.assertEqual(rec["ret"], "HDRS")
        self.assertEqual(rec["envid"], "env+id-42")
        self.assertEqual(rec["size_param"], 100)
        self.assertEqual(rec["rcpts"], [
            {"address": "b@dest.test", "notify": ["FAILURE", "SUCCESS"], "orcpt": "rfc822;b+2Bx@orig.test"},
            {"address": "c@dest.test", "notify": ["NEVER"], "orcpt": ""},
            {"address": "e@dest.test", "notify": [], "orcpt": ""},
        ])
        self.assert_body(rec["body"], b"Subject: dsn\r\n\r\nbody\r\n")
        self.finish(d)

    def test_delivered_bytes_equal_sent(self):
        sink = self.sink()
        d = self.daemon({"delivery": {"relayhost": sink.address, "min_backoff": "1s",
                                      "max_backoff": "2s"}})
        body_utf8 = "Subject: utf8 \u00fc\r\n\r\n\u00e9t\u00e9\r\n.dot\r\n".encode()
        sent = {
            send_smtplib(d, "a@src.test", ["x@dest.test", "y@other.test"], BODY_8BIT,
                         mail_options=["BODY=8BITMIME"]): BODY_8BIT,
            send_smtplib(d, "\u00fc@src.test", ["\u00e9@dest.test"], body_utf8,
                         mail_options=["SMTPUTF8", "BODY=8BITMIME"]): body_utf8,
        }
        # Two domains for the first message may mean two transactions.
        got = wait_for(lambda: len(sink.stored()) >= 3 and sink.stored(), 60)
        self.assertTrue(got, "sink stored %d messages, want 3" % len(sink.stored()))
        by_id = {}
        for env, data in sink.stored():
            header, rest = split_received(data)
            qid = re.search(rb"id ([0-9A-Z]+)", header).group(1).decode()
            by_id.setdefault(qid, []).append((env, rest))
        self.assertEqual(set(by_id), set(sent))
        for qid, copies in by_id.items():
            for env, rest in copies:
                self.assertEqual(rest, sent[qid], "delivered %r, sent %r" % (rest[:200], sent[qid][:200]))
        rcpts = sorted(line for copies in by_id.values() for env, _ in copies for line in env
                       if line.startswith("X-Sink-Envelope-To"))
        self.assertEqual(rcpts, sorted(["X-Sink-Envelope-To: <x@dest.test>",
                                        "X-Sink-Envelope-To: <y@other.test>",
                                        "X-Sink-Envelope-To: <\u00e9@dest.test>"]))
        # Delivered messages leave the spool.
        self.assertTrue(wait_for(lambda: spool_messages(self.spool_dir(d)) == [], 30),
                        "spool not empty after delivery")
        self.finish(d)


class Clients(DaemonTestCase):
    def test_swaks_pipelining(self):
        swaks = shutil.which("swaks")
        if swaks is None:
            self.skipTest("swaks not installed")
        d = self.daemon()
        out = subprocess.run([swaks, "--server", "%s:%d" % (d.host, d.port), "--pipeline",
                              "--ehlo", "swaks.test", "--from", "s@src.test",
                              "--to", "r1@dest.test,r2@dest.test", "--header", "Subject: swaks"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("PIPELINING", out.stdout)
        qid = queue_id_of(out.stdout)
        m = self.spooled(d, qid)
        self.assertEqual(m["sender"], "s@src.test")
        self.assertEqual([r["address"] for r in m["recipients"]], ["r1@dest.test", "r2@dest.test"])
        self.assertIn(b"Subject: swaks", m["record"]["body"])
        self.finish(d)

    def test_curl(self):
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl not installed")
        d = self.daemon()
        body = b"From: c@src.test\r\nTo: r@dest.test\r\nSubject: curl\r\n\r\nsent by curl\r\n.dot\r\n"
        path = os.path.join(self.tmp, "curl.eml")
        with open(path, "wb") as f:
            f.write(body)
        out = subprocess.run([curl, "-sS", "-v", "smtp://%s:%d" % (d.host, d.port),
                              "--mail-from", "c@src.test", "--mail-rcpt", "r@dest.test",
                              "--mail-rcpt", "r2@dest.test", "-T", path],
                             capture_output=True, timeout=60)
        err = out.stderr.decode("utf-8", "replace")
        self.assertEqual(out.returncode, 0, err)
        qid = queue_id_of(err)
        m = self.spooled(d, qid)
        self.assertEqual(m["sender"], "c@src.test")
        self.assertEqual([r["address"] for r in m["recipients"]], ["r@dest.test", "r2@dest.test"])
        self.assert_body(m["record"]["body"], body)
        self.finish(d)


class RelayPolicy(DaemonTestCase):
    def test_outside_client_relay_rules(self):
        d = self.daemon({"relay_networks": ["127.0.0.1/32"], "local_domains": ["local.test"]})
        c = RawClient(d.host, d.port, source="127.0.0.2")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO outside.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<o@outside.test>")[0], 250)
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        self.assertEqual(code, 554, text)
        self.assertTrue(text[0].startswith("5.7.1"), text)
        for trick in ("<victim%remote.test@relay.test>", "<@remote.test:victim@remote.test>",
                      '<"victim@remote.test"@other.test>', "<remote.test!victim@other.test>"):
            code, text = c.cmd("RCPT TO:%s" % trick)
            self.assertGreaterEqual(code, 500, "RCPT %s from outside got %d %s" % (trick, code, text))
        self.assertEqual(c.cmd("RCPT TO:<user@local.test>")[0], 250)
        # The domain is matched and stored lower-cased; the local part as sent.
        self.assertEqual(c.cmd("RCPT TO:<User@LOCAL.TEST>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<user%other.test@local.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        code, text = c.cmd(b"Subject: outside\r\n\r\nhi\r\n.")
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        c.cmd("QUIT")
        c.close()
        m = self.spooled(d, qid)
        self.assertEqual([r["address"] for r in m["recipients"]],
                         ["user@local.test", "User@local.test", "user%other.test@local.test"])
        self.assertTrue(m["record"]["client_addr"].startswith("127.0.0.2"), m["record"]["client_addr"])
        # Nothing from the outside client names another domain.
        for r in m["recipients"]:
            self.assertTrue(r["address"].lower().endswith("@local.test"), r)
        self.finish(d)

    def test_outside_smtplib_and_trusted_relay(self):
        d = self.daemon({"relay_networks": ["127.0.0.1/32"], "local_domains": ["local.test"]})
        with smtplib.SMTP(d.host, d.port, timeout=30, source_address=("127.0.0.2", 0)) as s:
            s.ehlo("outside.test")
            s.mail("o@outside.test")
            code, text = s.rcpt("victim@remote.test")
            self.assertEqual(code, 554, text)
            self.assertIn(b"5.7.1", text)
        qid = send_smtplib(d, "t@inside.test", ["far@remote.test"], b"Subject: trusted\r\n\r\nok\r\n",
                           source="127.0.0.1")
        m = self.spooled(d, qid)
        self.assertEqual([r["address"] for r in m["recipients"]], ["far@remote.test"])
        self.finish(d)


class Pipelining(DaemonTestCase):
    def test_one_reply_per_command_in_order(self):
        d = self.daemon()
        c = RawClient(d.host, d.port)
        self.assertEqual(c.reply()[0], 220)
        batch = [
            ("EHLO pipe.test", 250),
            ("RCPT TO:<early@dest.test>", 503),       # RCPT before MAIL
            ("MAIL FROM:a@src.test", 501),            # no angle brackets
            ("MAIL FROM:<a@src.test> BOGUS=1", 555),  # unknown parameter
            ("FROBNICATE", 500),                      # unknown command
            ("MAIL FROM:<a@src.test>", 250),
            ("RCPT TO:<bad address>", 501),
            ("RCPT TO:<b@dest.test>", 250),
            ("NOOP", 250),
            ("RCPT TO:<c@dest.test>", 250),
            ("DATA", 354),
        ]
        c.send(b"".join(cmd.encode() + b"\r\n" for cmd, _ in batch))
        got = [c.reply() for _ in batch]
        for (cmd, want), (code, text) in zip(batch, got):
            self.assertEqual(code, want, "%s: got %d %s, want %d" % (cmd, code, text, want))
        # After the body, pipelined again: the message, then a second transaction.
        c.send(b"Subject: pipe\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<d@dest.test>\r\n"
               b"DATA\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        code, text = c.cmd(b"x: y\r\n\r\nbounce\r\n.")
        self.assertEqual(code, 250, text)
        qid2 = queue_id_of(text[0])
        # BDAT pipelined with its transaction: one reply per command.
        c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<e@dest.test>\r\nRCPT TO:<no>\r\n"
               b"BDAT 7\r\nSub: x\nBDAT 5 LAST\r\n\r\nhi\nNOOP\r\n")
        got = [c.reply() for _ in range(6)]
        self.assertEqual([code for code, _ in got][:3], [250, 250, 501])
        # The bare LFs of the content refuse it (smtp_data.h: same checks as DATA).
        self.assertEqual(got[3][0], 250, got[3])
        self.assertEqual((got[4][0], got[4][1][0][:6]), (550, "5.6.11"), got[4])
        self.assertEqual(got[5][0], 250)
        c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<f@dest.test>\r\n"
               b"BDAT 10\r\nSub: x\r\n\r\nBDAT 4 LAST\r\nhi\r\nNOOP\r\n")
        got = [c.reply() for _ in range(5)]
        self.assertEqual([code for code, _ in got], [250, 250, 250, 250, 250], got)
        qid3 = queue_id_of(got[3][1][0])
        c.send(b"QUIT\r\n")
        self.assertEqual(c.reply()[0], 221)
        self.assertEqual(c.read_until_closed(), b"")
        c.close()
        m = self.spooled(d, qid)
        self.assertEqual([r["address"] for r in m["recipients"]], ["b@dest.test", "c@dest.test"])
        self.assert_body(m["record"]["body"], b"Subject: pipe\r\n\r\nbody\r\n")
        m2 = self.spooled(d, qid2)
        self.assertEqual(m2["sender"], "")
        self.assert_body(self.spooled(d, qid3)["record"]["body"], b"Sub: x\r\n\r\nhi\r\n")
        self.assertEqual(len(spool_messages(self.spool_dir(d))), 3)
        self.finish(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
