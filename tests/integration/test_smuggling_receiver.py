#!/usr/bin/python3
"""test_smuggling_receiver - SMTP smuggling seen from the next hop (issue 10).

A trusted client sends ringmaild every malformed end-of-data form inside
DATA and inside BDAT, each followed by a hidden second transaction
(MAIL FROM:<evil@src.test> ...). ringmaild relays to a ringmail-sink
--store, which is a lenient receiver: it ends DATA at "\\n.\\n" too, so a
relay that passed such a form through would make the sink see two
messages. Whatever ringmaild accepts must reach the sink as exactly one
message per 250 (each Message-ID once), and the hidden sender must never
appear. test_inbound_limits checks the same forms at the spool.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from inbound_common import (DaemonTestCase, RawClient, spool_messages, split_received,  # noqa: E402
                            wait_for)

HIDDEN = (b"MAIL FROM:<evil@src.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
          b"Subject: smuggled\r\nMessage-ID: <smuggled@evil.test>\r\n\r\nsmuggled\r\n")

# Separators that some receiver somewhere took for the end of data.
SEPARATORS = [b"\r\n.\n", b"\n.\r\n", b"\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n",
              b"\r\n.\r\r\n", b"\n.\r\r\n", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n",
              b"\r\n..\r\n", b"\r\n. \r\n", b"\n..\n"]


def message(case, sep):
    return (b"Subject: case %d\r\nMessage-ID: <case%d@client.test>\r\n\r\nfirst"
            % (case, case) + sep + HIDDEN)


class ReceiverSmuggling(DaemonTestCase):
    def transaction(self, d, c, verb_and_body):
        """transaction - MAIL, RCPT, then the DATA/BDAT bytes; the final reply."""
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test>")[0], 250)
        return verb_and_body(c)

    def test_one_message_per_250_at_the_receiver(self):
        sink = self.sink()
        d = self.daemon({"delivery": {"relayhost": sink.address, "min_backoff": "1s",
                                      "max_backoff": "2s"}})
        accepted = {}          # Message-ID -> case description
        case = 0
        # CRLF.CRLF inside BDAT is content (RFC 3030): ringmaild must dot-stuff
        # it when it relays with DATA. (In DATA it is the real end.)
        for sep, modes in [(s, ("DATA", "BDAT")) for s in SEPARATORS] + [(b"\r\n.\r\n", ("BDAT",))]:
            for mode in modes:
                case += 1
                body = message(case, sep)
                c = RawClient(d.host, d.port)
                self.assertEqual(c.reply()[0], 220)
                self.assertEqual(c.cmd("EHLO client.test")[0], 250)
                if mode == "DATA":
                    def send(c, body=body):
                        self.assertEqual(c.cmd("DATA")[0], 354)
                        c.send(body + b".\r\n")
                        return c.reply()
                else:
                    def send(c, body=body):
                        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
                        return c.reply()
                code, text = self.transaction(d, c, send)
                # The session must be in step: the hidden commands were data.
                c.send(b"NOOP\r\nQUIT\r\n")
                rest = [c.reply()[0], c.reply()[0]]
                c.close()
                print("smuggling: %s %-22r -> %d %s" % (mode, sep, code, text[0]), flush=True)
                self.assertEqual(rest, [250, 221], "%s %r: after the end got %r" % (mode, sep, rest))
                self.assertIn(code // 100, (2, 5), "%s %r: got %d %s" % (mode, sep, code, text))
                if code == 250:
                    # What the sink must store: in DATA a line's leading dot is
                    # removed (RFC 5321 4.5.2); BDAT content is as sent.
                    want = body.replace(b"\r\n.", b"\r\n") if mode == "DATA" else body
                    accepted[b"<case%d@client.test>" % case] = want
        # The control message: well formed, with dot-stuffed lines.
        c = RawClient(d.host, d.port)
        c.reply()
        c.cmd("EHLO client.test")

        def control(c):
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: control\r\nMessage-ID: <control@client.test>\r\n\r\n"
                   b"..\r\n..MAIL FROM:<x@y>\r\n.\r\n")
            return c.reply()
        code, text = self.transaction(d, c, control)
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")
        c.close()
        accepted[b"<control@client.test>"] = None

        drained = wait_for(lambda: spool_messages(self.spool_dir(d)) == [], 60)
        self.assertTrue(drained, "queue did not drain")
        got = sink.wait_messages(len(accepted), 30)
        stored = sink.stored()
        print("smuggling: %d accepted by ringmaild, %d messages at the receiver"
              % (len(accepted), got), flush=True)
        seen = {}
        for env, data in stored:
            self.assertNotIn("evil@src.test", " ".join(env), "smuggled envelope reached the sink")
            self.assertNotIn(b"\r\nSubject: smuggled\r\nMessage-ID: <smuggled@evil.test>\r\n\r\n"
                             b"smuggled\r\n", b"\r\n" + data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            ids = [line.split(b":", 1)[1].strip() for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                   if line.lower().startswith(b"message-id:")]
            self.assertEqual(len(ids), 1, "got %r" % data[:300])
            seen[ids[0]] = seen.get(ids[0], 0) + 1
            if accepted.get(ids[0]) is not None:
                _, rest = split_received(data)
                self.assertEqual(rest, accepted[ids[0]], "got %r, want %r" % (rest, accepted[ids[0]]))
        self.assertEqual(got, len(accepted), "got %d messages at the sink, want %d (%r)"
                         % (got, len(accepted), seen))
        self.assertEqual(seen, {k: 1 for k in accepted},
                         "got %r, want each accepted Message-ID once" % seen)
        control_body = [data for _, data in stored if b"<control@client.test>" in data][0]
        self.assertTrue(control_body.endswith(b"\r\n\r\n.\r\n.MAIL FROM:<x@y>\r\n"), control_body[-80:])
        self.finish(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
