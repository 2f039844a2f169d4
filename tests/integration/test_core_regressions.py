"""test_core_regressions - regressions found reviewing the I/O core
(worker, conn, commit, smtp_server, delivery). Each test names the bug."""
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

LINGER_RST = struct.pack("ii", 1, 0)


def read_until(sock, marker, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("connection closed before %r; got %r" % (marker, data))
        data += chunk
    return data


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class FakeServer:
    """A tiny SMTP server that records every command line of every
    connection, and notes when each connection ended."""

    def __init__(self, stall_data=False):
        self.stall_data = stall_data
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.sessions = []          # list of [commands, ended]
        self.messages = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        record = [[], False]
        with self.lock:
            self.sessions.append(record)
        f = c.makefile("rb")
        try:
            c.sendall(b"220 fake.test ESMTP\r\n")
            in_data = False
            for line in f:
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        with self.lock:
                            self.messages += 1
                        c.sendall(b"250 2.0.0 queued\r\n")
                    continue
                cmd = line.strip().decode("ascii", "replace")
                with self.lock:
                    record[0].append(cmd.split(" ")[0].upper())
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    c.sendall(b"250-fake.test\r\n250 8BITMIME\r\n")
                elif verb == "DATA":
                    in_data = True
                    c.sendall(b"354 go ahead\r\n")
                    if self.stall_data:
                        time.sleep(60)      # read nothing more
                        break
                elif verb == "QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    break
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            f.close()
            c.close()
            with self.lock:
                record[1] = True

    def ended_sessions(self):
        with self.lock:
            return [list(r[0]) for r in self.sessions if r[1]]

    def stop(self):
        self.running = False
        self.sock.close()


class CoreRegressions(unittest.TestCase):
    def assert_clean_stop(self, d, timeout=20):
        rc = d.stop(timeout=timeout)
        self.assertEqual(rc, 0, "exit status %r (hung or crashed?)\n%s" % (rc, d.log_text()[-4000:]))
        self.assertEqual(d.sanitizer_reports(), [], d.log_text()[-8000:])

    def test_reset_while_committing(self):
        """smtp_server.c: a client that resets while its message is being
        committed had its session (and the commit waiter inside it) freed
        while the waiter was still queued, and the conn reference for the
        commit was never released: use-after-free, and SIGTERM never ended
        the worker. The message, durable by then, must still be delivered."""
        fake = FakeServer()
        d = harness.Ringmaild(workers=2, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % fake.port}}).start()
        try:
            body = b"Subject: reset\r\n\r\n" + (b"x" * 70 + b"\r\n") * 30 + b".\r\n"
            for _ in range(3):
                socks = []
                for i in range(20):
                    s = socket.create_connection((d.host, d.port), timeout=10)
                    read_until(s, b"220 ")
                    s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\n"
                              b"RCPT TO:<r%d@example.net>\r\nDATA\r\n" % i)
                    read_until(s, b"354 ")
                    socks.append(s)
                for s in socks:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                    s.sendall(body)
                    s.close()
            deadline = time.monotonic() + 30
            queued = -1
            while time.monotonic() < deadline:
                queued = len(re.findall(r"event=queued ", d.log_text()))
                with fake.lock:
                    got = fake.messages
                if queued > 0 and got >= queued:
                    break
                time.sleep(0.2)
            with fake.lock:
                got = fake.messages
            self.assertGreaterEqual(got, queued, "delivered %d, want every queued one (%d)" % (got, queued))
        finally:
            self.assert_clean_stop(d)
            fake.stop()

    def test_paused_input_is_bounded(self):
        """conn.c: while input was paused (here: the client does not read
        its replies), the multishot receive stayed armed and kept appending
        to the connection's input without limit; smtp.max_input_backlog
        was only checked when the receive ended on its own."""
        d = harness.Ringmaild(workers=1, extra={"smtp": {"max_input_backlog": "64K"}}).start()
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            s.connect((d.host, d.port))
            read_until(s, b"220 ")
            s.setblocking(False)
            chunk = b"NOOP\r\n" * 10000
            limit = 64 << 20
            sent = 0
            last_progress = time.monotonic()
            while sent < limit and time.monotonic() - last_progress < 3.0:
                try:
                    n = s.send(chunk)
                    sent += n
                    last_progress = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.01)
            s.close()
            self.assertLess(sent, 32 << 20,
                            "server took %d bytes from a client that reads nothing, want < 32 MiB" % sent)
        finally:
            self.assert_clean_stop(d)

    def test_pooled_connection_quits_when_idle(self):
        """conn.c: the phase timer's class was computed from the timer's
        list pointer after the timer had been popped (NULL), so handlers got
        a garbage class: an idle pooled outbound connection was aborted as
        "timeout waiting for the server" instead of saying QUIT."""
        fake = FakeServer()
        d = harness.Ringmaild(workers=1, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % fake.port, "idle_timeout": "300ms",
                         "command_timeout": "1s"}}).start()
        try:
            s = socket.create_connection((d.host, d.port), timeout=10)
            read_until(s, b"220 ")
            s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            read_until(s, b"354 ")
            s.sendall(b"Subject: idle\r\n\r\nhello\r\n.\r\nQUIT\r\n")
            read_until(s, b"221 ")
            s.close()
            deadline = time.monotonic() + 20
            ended = []
            while time.monotonic() < deadline:
                ended = fake.ended_sessions()
                if ended:
                    break
                time.sleep(0.1)
            self.assertTrue(ended, "the pooled connection never ended")
            self.assertEqual(ended[0][-1], "QUIT", "commands on the connection: %r, want QUIT last" % ended[0])
            self.assertNotIn("timeout waiting for the server", d.log_text())
            # A timer left armed on the closed conn would fire now (ASan).
            time.sleep(1.5)
        finally:
            self.assert_clean_stop(d)
            fake.stop()

    def test_data_timeout_is_reported_as_data(self):
        """conn.c: same garbage class on the inbound side: a DATA phase
        timeout was logged as phase=command."""
        d = harness.Ringmaild(workers=1, extra={"smtp": {"data_timeout": "1s"}}).start()
        try:
            s = socket.create_connection((d.host, d.port), timeout=10)
            read_until(s, b"220 ")
            s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            read_until(s, b"354 ")
            s.sendall(b"Subject: slow\r\n")
            data = b""
            s.settimeout(20)
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            self.assertIn(b"421", data)
            self.assertRegex(d.log_text(), r"event=timeout client=\S+ phase=data")
        finally:
            self.assert_clean_stop(d)

    def test_refused_connection_reset_does_not_leak_fd(self):
        """worker.c: a connection over max_connections gets 421 and a close
        linked to that send; when the send failed (the client had already
        reset) the link cancelled the close and the socket leaked."""
        d = harness.Ringmaild(workers=1, extra={"max_connections": 1}).start()
        try:
            holder = None
            for _ in range(50):   # until the harness's probe is gone
                holder = socket.create_connection((d.host, d.port), timeout=10)
                if read_until(holder, b"\r\n").startswith(b"220 "):
                    break
                holder.close()
                time.sleep(0.1)
            time.sleep(0.2)
            base = fd_count(d.proc.pid)
            for _ in range(200):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                s.connect((d.host, d.port))
                s.close()
            deadline = time.monotonic() + 10
            now = fd_count(d.proc.pid)
            while now > base + 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                now = fd_count(d.proc.pid)
            self.assertLessEqual(now, base + 2, "open fds: got %d, want about %d" % (now, base))
            holder.close()
        finally:
            self.assert_clean_stop(d)

    def test_session_in_data_at_stop_gets_421_after_its_message(self):
        """smtp_server.c: a session inside DATA when SIGTERM came was left
        to finish (right), but after its commit it was neither told 421
        nor closed: it could start new transactions until the shutdown
        deadline cut it off without a word."""
        fake = FakeServer()
        d = harness.Ringmaild(workers=1, extra={
            "shutdown_timeout": "20s",
            "delivery": {"relayhost": "[127.0.0.1]:%d" % fake.port}}).start()
        try:
            s = socket.create_connection((d.host, d.port), timeout=10)
            read_until(s, b"220 ")
            s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            read_until(s, b"354 ")
            d.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while "event=stopping" not in d.log_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            s.sendall(b"Subject: late\r\n\r\nhello\r\n.\r\nNOOP\r\n")
            s.settimeout(10)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
            s.close()
            self.assertRegex(data, rb"250 [^\r]*\r\n421 ", "replies after the message: %r" % data)
        finally:
            self.assert_clean_stop(d)
            fake.stop()

    def test_timeout_closes_a_client_that_does_not_read(self):
        """smtp_server.c: after a timeout (or QUIT) the session is CLOSING,
        which has no phase timer, and the connection waited to flush its
        421 to a client that reads nothing: it stayed open for good, and
        every later timeout only asked again to close after the flush."""
        d = harness.Ringmaild(workers=1, extra={
            "smtp": {"idle_timeout": "1s", "command_timeout": "1s", "max_input_backlog": "64K"}}).start()
        try:
            time.sleep(0.3)
            base = fd_count(d.proc.pid)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            s.connect((d.host, d.port))
            read_until(s, b"220 ")
            s.setblocking(False)
            chunk = b"NOOP\r\n" * 10000
            last_progress = time.monotonic()
            sent = 0
            while sent < (64 << 20) and time.monotonic() - last_progress < 0.5:
                try:
                    sent += s.send(chunk)
                    last_progress = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.01)
            deadline = time.monotonic() + 20
            now = fd_count(d.proc.pid)
            while now > base and time.monotonic() < deadline:
                time.sleep(0.2)
                now = fd_count(d.proc.pid)
            s.close()
            self.assertLessEqual(now, base, "server fds: got %d, want %d (connection never closed)" % (now, base))
        finally:
            self.assert_clean_stop(d)

    def test_outbound_data_timeout_closes_a_stalled_connection(self):
        """delivery/mta_session.c: after a data timeout the session was over and its
        conn was closed "after the flush", but the server reads nothing, so
        the flush never ended, and a timer on a conn without session did
        nothing: the connection (and its fd) stayed until shutdown."""
        fake = FakeServer(stall_data=True)
        d = harness.Ringmaild(workers=1, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % fake.port, "data_timeout": "500ms", "command_timeout": "1s"}}).start()
        try:
            time.sleep(0.3)
            base = fd_count(d.proc.pid)
            s = socket.create_connection((d.host, d.port), timeout=30)
            read_until(s, b"220 ")
            s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            read_until(s, b"354 ")
            s.sendall(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * ((12 << 20) // 72) + b".\r\nQUIT\r\n")
            read_until(s, b"221 ", timeout=30)
            s.close()
            deadline = time.monotonic() + 30
            while "timeout sending the message" not in d.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("timeout sending the message", d.log_text())
            now = fd_count(d.proc.pid)
            deadline = time.monotonic() + 10
            while now > base and time.monotonic() < deadline:
                time.sleep(0.2)
                now = fd_count(d.proc.pid)
            self.assertLessEqual(now, base, "server fds: got %d, want %d (outbound conn never closed)" % (now, base))
        finally:
            self.assert_clean_stop(d)
            fake.stop()

    def test_connect_refused_leaves_no_timer_behind(self):
        """delivery/mta_session.c: the timer that bounds a closing conn's flush must be
        armed before the close, which may happen at once (connect refused)
        and then frees the conn: armed after, it fired on freed memory."""
        dead = harness.free_port()
        d = harness.Ringmaild(workers=1, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % dead, "command_timeout": "500ms"}}).start()
        try:
            s = socket.create_connection((d.host, d.port), timeout=10)
            read_until(s, b"220 ")
            s.sendall(b"EHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            read_until(s, b"354 ")
            s.sendall(b"Subject: refused\r\n\r\nhello\r\n.\r\nQUIT\r\n")
            read_until(s, b"221 ")
            s.close()
            deadline = time.monotonic() + 10
            while "connect_failed" not in d.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("connect_failed", d.log_text())
            time.sleep(1.5)
        finally:
            self.assert_clean_stop(d)


if __name__ == "__main__":
    unittest.main()
