"""relay/daemon/tls.c against real peers: ringmail-tls-echo (blocking sockets over
the memory-bio interface) talks to openssl s_client and Python's ssl module:
implicit TLS, resumption with a saved session, STARTTLS, and the plaintext
injection case (commands pipelined after STARTTLS are discarded)."""
import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


class Echo:
    """ringmail-tls-echo on a free port; stopped by its PID."""

    def __init__(self, tmp, starttls=False, connections=1):
        self.err_path = os.path.join(tmp, "echo-%d.err" % id(self))
        args = [os.path.join(harness.BIN, "ringmail-tls-echo"),
                "--cert", os.path.join(tmp, "cert.pem"),
                "--key", os.path.join(tmp, "key.pem"),
                "--connections", str(connections)]
        if starttls:
            args.append("--starttls")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"port=(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("no port from ringmail-tls-echo: %r" % line)
        self.port = int(m.group(1))

    def stop(self):
        """Wait for the tool to finish its connections (kill it if it hangs)."""
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.err.close()
        with open(self.err_path) as f:
            self.log = f.read()
        return rc


def s_client(port, line, extra=()):
    """Send one line through openssl s_client, return its output once the
    echo came back and s_client has exited."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
         "-no_ign_eof", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
        out = b""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while line not in out:
            if not sel.select(timeout=20):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        sel.close()
        proc.stdin.close()      # EOF: s_client sends close_notify and exits
        out += proc.stdout.read()
        proc.wait(timeout=20)
        proc.stdout.close()
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TlsTool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ringmail-tls-")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", os.path.join(cls.tmp, "key.pem"),
             "-out", os.path.join(cls.tmp, "cert.pem"),
             "-days", "1", "-subj", "/CN=localhost"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_implicit_tls_and_resumption(self):
        sess = os.path.join(self.tmp, "session.pem")
        sess_id = os.path.join(self.tmp, "session-id.pem")
        echo = Echo(self.tmp, connections=4)
        try:
            out = s_client(echo.port, b"hello over tls\n", ["-sess_out", sess])
            self.assertIn(b"hello over tls\n", out, out)
            # A ticket.
            out = s_client(echo.port, b"second line\n", ["-sess_in", sess])
            self.assertIn(b"second line\n", out, out)
            self.assertIn(b"Reused, TLSv1.2", out)
            # No tickets: the session-ID cache.
            out = s_client(echo.port, b"third\n", ["-no_ticket", "-sess_out", sess_id])
            self.assertIn(b"third\n", out, out)
            out = s_client(echo.port, b"fourth\n", ["-no_ticket", "-sess_in", sess_id])
            self.assertIn(b"fourth\n", out, out)
            self.assertIn(b"Reused, TLSv1.2", out)
        finally:
            rc = echo.stop()
        self.assertEqual(rc, 0, echo.log)
        events = re.findall(r"event=tls protocol=(\S+) cipher=(\S+) resumed=(\d)", echo.log)
        self.assertEqual(len(events), 4, echo.log)
        self.assertEqual(events[0][0], "TLSv1.2")
        self.assertRegex(events[0][1], r"ECDHE-ECDSA-WITH-(AES-\d+-GCM|CHACHA20)")
        self.assertEqual([e[2] for e in events], ["0", "1", "0", "1"], echo.log)

    def test_starttls_with_s_client(self):
        echo = Echo(self.tmp, starttls=True)
        try:
            out = s_client(echo.port, b"through starttls\n", ["-starttls", "smtp"])
            self.assertIn(b"through starttls\n", out, out)
        finally:
            rc = echo.stop()
        self.assertEqual(rc, 0, echo.log)
        self.assertIn("event=starttls discarded=0", echo.log)
        self.assertIn("protocol=TLSv1.2", echo.log)

    def test_plaintext_injected_after_starttls_is_discarded(self):
        echo = Echo(self.tmp, starttls=True)
        try:
            with socket.create_connection(("127.0.0.1", echo.port), timeout=20) as raw:
                f = raw.makefile("rb")
                self.assertTrue(f.readline().startswith(b"220 "))
                raw.sendall(b"EHLO attacker\r\n")
                self.assertEqual(f.readline(), b"250-echo\r\n")
                self.assertEqual(f.readline(), b"250 STARTTLS\r\n")
                # One segment: the QUIT must not be executed in cleartext.
                raw.sendall(b"STARTTLS\r\nQUIT\r\n")
                self.assertTrue(f.readline().startswith(b"220 2.0.0"))
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    self.assertEqual(t.version(), "TLSv1.2")
                    t.sendall(b"inside\n")
                    got = b""
                    while not got.endswith(b"\n"):
                        chunk = t.recv(100)
                        if not chunk:
                            break
                        got += chunk
                    self.assertEqual(got, b"inside\n", "no 221 and no echo of QUIT")
                    t.unwrap()
        finally:
            rc = echo.stop()
        self.assertEqual(rc, 0, echo.log)
        self.assertIn("event=starttls discarded=6", echo.log)


if __name__ == "__main__":
    unittest.main()
