"""test_inbound_limits - inbound SMTP limits (issue 3): command line length,
recipients, message size, the smuggling defence of relay/mail/smtp_data.h,
client timeouts, and a full spool disk that must cost a 452 and nothing else.

No timing asserts: timeouts are only checked to happen, with generous
deadlines, never to happen at a particular moment.
"""
import os
import select
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import (DaemonTestCase, RawClient, queue_id_of, send_smtplib,  # noqa: E402
                            spool_messages, split_received, wait_for)


def open_transaction(c, rcpts=("b@dest.test",), mail="MAIL FROM:<a@src.test>"):
    """open_transaction - greeting, EHLO, MAIL, RCPTs; all must be accepted."""
    code, text = c.reply()
    assert code == 220, (code, text)
    for line in ["EHLO client.test", mail] + ["RCPT TO:<%s>" % r for r in rcpts]:
        code, text = c.cmd(line)
        assert code == 250, (line, code, text)


class Limits(DaemonTestCase):
    def test_long_command_line(self):
        d = self.daemon()
        c = RawClient(d.host, d.port)
        c.reply()
        code, text = c.cmd("NOOP " + "x" * 595)        # 602 octets with CR LF
        self.assertEqual((code, text[0][:5]), (500, "5.5.6"), text)
        # Pipelined: the long line gets exactly one reply, in its place.
        c.send(b"EHLO client.test\r\nMAIL FROM:<" + b"a" * 600 + b"@src.test>\r\nNOOP\r\n")
        got = [c.reply()[0] for _ in range(3)]
        self.assertEqual(got, [250, 500, 250])
        # 512 octets exactly (CR LF included) is allowed.
        line = "NOOP " + "y" * (512 - 7)
        self.assertEqual(c.cmd(line)[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.close()
        self.finish(d)

    def test_too_many_recipients(self):
        d = self.daemon({"smtp": {"max_recipients": 5}})
        c = RawClient(d.host, d.port)
        open_transaction(c, rcpts=["r%d@dest.test" % i for i in range(5)])
        code, text = c.cmd("RCPT TO:<r5@dest.test>")
        self.assertEqual(code, 452, text)
        self.assertTrue(text[0].startswith("4.5.3"), text)
        self.assertEqual(c.cmd("DATA")[0], 354)
        code, text = c.cmd(b"Subject: five\r\n\r\nx\r\n.")
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        c.cmd("QUIT")
        c.close()
        m = self.spooled(d, qid)
        self.assertEqual([r["address"] for r in m["recipients"]], ["r%d@dest.test" % i for i in range(5)])
        self.finish(d)

    def test_too_many_errors(self):
        d = self.daemon({"smtp": {"max_errors": 3}})
        c = RawClient(d.host, d.port)
        c.reply()
        c.send(b"BOGUS1\r\nBOGUS2\r\nBOGUS3\r\nNOOP\r\nNOOP\r\n")
        data = c.read_until_closed()
        c.close()
        lines = data.split(b"\r\n")
        self.assertEqual([line[:3] for line in lines[:4]], [b"500", b"500", b"500", b"421"], data)
        self.assertIn(b"4.7.0", lines[3])
        self.assertEqual(lines[4:], [b""], "replies after the 421: %r" % data)
        self.finish(d)

    def test_message_size(self):
        d = self.daemon({"smtp": {"max_message_size": "4k"}})
        c = RawClient(d.host, d.port)
        c.reply()
        code, ext = c.cmd("EHLO client.test")
        self.assertIn("SIZE 4096", ext)
        code, text = c.cmd("MAIL FROM:<a@src.test> SIZE=5000")
        self.assertEqual(code, 552, text)
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        big = b"Subject: big\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100
        code, text = c.cmd(big + b".")
        self.assertEqual(code, 552, text)
        # BDAT over the limit, then a message that fits: the session is in step.
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test>")[0], 250)
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        code, text = c.reply()
        self.assertEqual(code, 552, text)
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@dest.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        small = b"Subject: small\r\n\r\n" + b"ok\r\n" * 10
        code, text = c.cmd(small + b".")
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text[0])
        c.cmd("QUIT")
        c.close()
        self.assertEqual([m["queue_id"] for m in spool_messages(self.spool_dir(d))], [qid])
        self.finish(d)

    def smuggle(self, d, payload):
        """smuggle - one DATA with payload; returns (reply to the end of data,
        the replies that followed a pipelined NOOP + QUIT)."""
        c = RawClient(d.host, d.port)
        open_transaction(c, mail="MAIL FROM:<a@src.test>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(payload + b"NOOP\r\nQUIT\r\n")
        end = c.reply()
        rest = [c.reply()[0], c.reply()[0]]
        self.assertEqual(c.read_until_closed(), b"", "extra replies after QUIT")
        c.close()
        return end, rest

    def test_smuggling_is_not_split(self):
        """A hidden end-of-data (LF.LF, CRLF.LF, LF.CRLF, CR.CR) must not end the
        message: smtp_data.h says the message ends only at CRLF.CRLF and a
        bare LF or CR anywhere refuses it with 550 5.6.11. Nothing is queued,
        nothing reaches the next hop, and the hidden second transaction is
        never run as commands."""
        sink = self.sink()
        d = self.daemon({"delivery": {"relayhost": sink.address, "min_backoff": "1s",
                                      "max_backoff": "2s"}})
        hidden = (b"MAIL FROM:<evil@src.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
                  b"Subject: smuggled\r\n\r\nsmuggled\r\n")
        for sep in (b"\r\n.\n", b"\n.\r\n", b"\n.\n", b"\r.\r", b"\r\n.\r"):
            payload = b"Subject: outer\r\n\r\nfirst" + sep + hidden + b".\r\n"
            (code, text), rest = self.smuggle(d, payload)
            self.assertEqual(code, 550, "separator %r: got %d %s" % (sep, code, text))
            self.assertTrue(text[0].startswith("5.6.11"), text)
            self.assertEqual(rest, [250, 221], "separator %r" % sep)
        self.assertEqual(spool_messages(self.spool_dir(d)), [])
        # A clean message with dots and near misses in CRLF form is one message.
        clean = (b"Subject: clean\r\n\r\nfirst\r\n..\r\n" + b"..MAIL FROM:<x@y>\r\n"
                 b". \r\n.x\r\nend\r\n")
        qid = send_smtplib(d, "a@src.test", ["b@dest.test"], clean.replace(b"\r\n..", b"\r\n."))
        self.assertEqual(sink.wait_messages(1), 1)
        # Give a split message time to show up as a second one.
        self.assertEqual(wait_for(lambda: spool_messages(self.spool_dir(d)) == [], 30), True)
        stored = sink.stored()
        self.assertEqual(len(stored), 1, "got %d messages at the sink, want 1" % len(stored))
        env, data = stored[0]
        header, rest = split_received(data)
        self.assertIn(("id %s" % qid).encode(), header)
        self.assertEqual(rest, clean.replace(b"\r\n..", b"\r\n."))
        self.assertEqual(sink.stats()["messages"], 1)
        self.finish(d)

    def test_nul_and_long_line_refused(self):
        d = self.daemon()
        (code, text), rest = self.smuggle(d, b"Subject: nul\r\n\r\na\0b\r\n.\r\n")
        self.assertEqual((code, text[0][:5]), (554, "5.6.0"), text)
        self.assertEqual(rest, [250, 221])
        (code, text), rest = self.smuggle(d, b"Subject: long\r\n\r\n" + b"L" * 1000 + b"\r\n.\r\n")
        self.assertEqual((code, text[0][:5]), (554, "5.6.0"), text)
        self.assertEqual(spool_messages(self.spool_dir(d)), [])
        self.finish(d)


class Timeouts(DaemonTestCase):
    def test_idle_client_gets_421(self):
        # 1s is the smallest smtp.idle_timeout the configuration accepts.
        d = self.daemon({"smtp": {"idle_timeout": "1s", "command_timeout": "1s"}})
        c = RawClient(d.host, d.port, timeout=60)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO idle.test")[0], 250)
        data = c.read_until_closed(timeout=60)
        c.close()
        self.assertRegex(data, rb"^421 4\.4\.2 .*timeout exceeded\r\n$")
        self.assertIn("event=timeout", d.log_text())
        self.finish(d)

    def drip(self, c, byte):
        """drip - send one byte every 0.5 s until the server closes (at most
        a minute); returns what the server sent. A reset counts as closed:
        a byte of ours that reaches the server after its close makes its
        kernel answer with RST, which may discard the 421 before we read it."""
        data = b""
        for _ in range(120):
            try:
                c.send(byte)
                r, _, _ = select.select([c.sock], [], [], 0.5)
                if r:
                    chunk = c.sock.recv(4096)
                    data += chunk
                    if not chunk:
                        return data
            except (BrokenPipeError, ConnectionResetError):
                return data
        self.fail("still open after a minute of dripping; got %r" % data)

    def test_slow_drip_cut_by_command_timeout(self):
        # The idle timer never fires (a byte every 0.5 s), so only the
        # per-command timer can end this.
        d = self.daemon({"smtp": {"idle_timeout": "10s", "command_timeout": "2s"}})
        c = RawClient(d.host, d.port, timeout=60)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO drip.test")[0], 250)
        data = self.drip(c, b"N")
        c.close()
        if data:
            self.assertRegex(data, rb"^421 4\.4\.2 .*timeout exceeded\r\n$")
        self.assertRegex(d.log_text(), r"event=timeout client=\S+ phase=command")
        self.finish(d)

    def test_slow_data_cut_by_data_timeout(self):
        d = self.daemon({"smtp": {"idle_timeout": "10s", "data_timeout": "2s"}})
        c = RawClient(d.host, d.port, timeout=60)
        open_transaction(c)
        self.assertEqual(c.cmd("DATA")[0], 354)
        data = self.drip(c, b"x")
        c.close()
        if data:
            self.assertRegex(data, rb"^421 4\.4\.2 .*timeout exceeded\r\n")
        # command_timeout is 5m, so only the data timer can have closed it
        # within the minute drip() allows. The logged phase says "command"
        # on builds without deliv's 39fe5e9 (conn_phase_fire read the class
        # from node.list after deadline_pop_expired() had set it to NULL).
        self.assertRegex(d.log_text(), r"event=timeout client=\S+ phase=(data|command)")
        self.assertEqual(spool_messages(self.spool_dir(d)), [])
        self.finish(d)


class FullDisk(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.tmp, "spool-tmpfs")
        os.mkdir(self.mnt)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", self.mnt],
                             capture_output=True, text=True)
        self.mounted = out.returncode == 0
        if not self.mounted:
            print("FullDisk: cannot mount a tmpfs (%s); skipping" % out.stderr.strip(),
                  file=sys.stderr)
            self.skipTest("mount -t tmpfs not permitted: %s" % out.stderr.strip())

    def tearDown(self):
        for d in self.daemons:
            if d.proc is not None:
                d.stop()
        if getattr(self, "mounted", False):
            subprocess.run(["umount", self.mnt], check=False)
        super().tearDown()

    def test_enospc_gives_452_and_recovers(self):
        spool = os.path.join(self.mnt, "spool")
        # No preallocation: the spare's zeros would take the room the filler
        # measures, at a moment of their own (the unit tests cover a spare
        # without room for its zeros).
        d = self.daemon({"spool": {"dir": spool, "segment_size": "1M", "preallocate": "0"}},
                        workers=1)
        # The filler leaves ~160 KiB: a few 40 KiB messages fit, then none.
        st = os.statvfs(self.mnt)
        free = st.f_bavail * st.f_frsize
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - 160 * 1024))
        line = b"f" * 78 + b"\r\n"
        body = b"Subject: fill\r\n\r\n" + line * 500
        c = RawClient(d.host, d.port)
        c.reply()
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        accepted, refused = [], None
        for i in range(100):
            self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b%d@dest.test>" % i)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            code, text = c.cmd(body + b".")
            if code == 250:
                accepted.append(queue_id_of(text[0]))
                continue
            refused = (code, text)
            break
        self.assertIsNotNone(refused, "no refusal after %d messages" % len(accepted))
        self.assertGreater(len(accepted), 0, "the filler left no room at all")
        self.assertEqual(refused[0], 452, refused)
        self.assertTrue(refused[1][0].startswith("4.3.1"), refused)
        # The session is still in step and the daemon still alive.
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertIsNone(d.proc.poll(), "ringmaild died on ENOSPC")
        os.unlink(filler)
        self.assertEqual(c.cmd("MAIL FROM:<a@src.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<after@dest.test>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        code, text = c.cmd(b"Subject: after\r\n\r\nroom again\r\n.")
        self.assertEqual(code, 250, text)
        after = queue_id_of(text[0])
        # A new connection works too.
        qid2 = send_smtplib(d, "a@src.test", ["new@dest.test"], b"Subject: new\r\n\r\nx\r\n")
        c.cmd("QUIT")
        c.close()
        ids = [m["queue_id"] for m in spool_messages(spool)]
        self.assertEqual(sorted(ids), sorted(accepted + [after, qid2]))
        self.assertIn("spool_commit", d.log_text())
        self.finish(d)
        # The truncated batch left nothing behind that recovery would trip on.
        # A fresh port: the old one may have been taken meanwhile.
        settings = {k: v for k, v in d.settings.items() if k != "listen"}
        again = harness.Ringmaild(workers=1, extra=settings, tmp=d.tmp).start()
        self.daemons.append(again)
        ids = [m["queue_id"] for m in spool_messages(spool)]
        self.assertEqual(sorted(ids), sorted(accepted + [after, qid2]))
        self.assertNotIn("spool_corrupt", again.log_text())
        self.finish(again)


if __name__ == "__main__":
    unittest.main(verbosity=2)
