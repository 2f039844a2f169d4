"""Foundation: ringmaild starts on a free port, greets, says goodbye, and
exits cleanly on SIGTERM; 1,000 concurrent connections are all greeted and
spread over both workers."""
import os
import re
import selectors
import signal
import smtplib
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


class Foundation(unittest.TestCase):
    def test_greeting_quit_and_clean_exit(self):
        d = harness.Ringmaild(workers=2).start()
        try:
            s = smtplib.SMTP()
            code, banner = s.connect(d.host, d.port)
            self.assertEqual(code, 220, banner)
            self.assertIn(b"relay.test", banner)
            code, _ = s.docmd("QUIT")
            self.assertEqual(code, 221)
            s.close()
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0, d.log_text())
        self.assertEqual(d.sanitizer_reports(), [], d.log_text())
        self.assertIn("event=exit status=0", d.log_text())

    def test_half_close_still_gets_replies(self):
        with harness.Ringmaild(workers=1) as d:
            with socket.create_connection((d.host, d.port), timeout=5) as c:
                c.sendall(b"NOOP\r\nQUIT\r\n")
                c.shutdown(socket.SHUT_WR)
                data = b""
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            self.assertTrue(data.startswith(b"220 "), data)
            self.assertIn(b"\r\n221 ", data)

    def test_thousand_concurrent_connections(self):
        harness.raise_fd_limit()
        n = 1000
        d = harness.Ringmaild(workers=2).start()
        socks = []
        try:
            sel = selectors.DefaultSelector()
            for _ in range(n):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex((d.host, d.port))
                socks.append(c)
                sel.register(c, selectors.EVENT_READ)
            greeted = set()
            deadline = time.monotonic() + 60
            while len(greeted) < n and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(512)
                    if data.startswith(b"220 "):
                        greeted.add(key.fileobj.fileno())
                    sel.unregister(key.fileobj)
            self.assertEqual(len(greeted), n)
        finally:
            for c in socks:
                c.close()
            rc = d.stop()
        self.assertEqual(rc, 0)
        accepted = [int(m) for m in re.findall(r"event=worker_exit worker=\d+ accepted=(\d+)", d.log_text())]
        self.assertEqual(len(accepted), 2, d.log_text())
        # n plus the harness's own probe connection.
        self.assertEqual(sum(accepted), n + 1)
        # SO_REUSEPORT spreads by connection hash: both workers take a share.
        self.assertGreater(min(accepted), n // 10, accepted)
        self.assertEqual(d.sanitizer_reports(), [])

    def test_check_config_and_errors(self):
        bin_ = os.path.join(harness.BIN, "ringmaild")
        out = subprocess.run([bin_, "--version"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"^ringmaild \d+\.\d+")
        out = subprocess.run([bin_, "--help"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        self.assertIn("--check-config", out.stdout)
        d = harness.Ringmaild()
        d.write_config()
        out = subprocess.run([bin_, "--check-config", d.config_path], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(d.config_path, "a") as f:
            f.write("smtp = { max_recipients = 10; bogus_key = 1; };\n")
        out = subprocess.run([bin_, "--check-config", d.config_path], capture_output=True, text=True)
        self.assertEqual(out.returncode, 1)
        self.assertIn("smtp.bogus_key", out.stderr)
        self.assertRegex(out.stderr, r"line \d+")

    def test_ringmailctl(self):
        ctl = os.path.join(harness.BIN, "ringmailctl")
        # Without a daemon: --offline (issue 17 made plain resolve ask the daemon).
        out = subprocess.run([ctl, "resolve", "--offline", "[127.0.0.1]"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("127.0.0.1", out.stdout)
        out = subprocess.run([ctl, "bogus"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        self.assertIn("unknown command", out.stderr)

    def test_sighup_reload_keeps_serving(self):
        with harness.Ringmaild(workers=2) as d:
            c = smtplib.SMTP(d.host, d.port)
            with open(d.config_path, "a") as f:
                f.write("this is not valid\n")
            d.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertIn("event=reload result=rejected", d.log_text())
            d.write_config()
            d.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertIn("event=reload result=ok", d.log_text())
            # The session opened before both reloads is still served.
            self.assertEqual(c.docmd("QUIT")[0], 221)
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
