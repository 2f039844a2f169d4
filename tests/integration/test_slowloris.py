#!/usr/bin/python3
"""test_slowloris - 10,000 slow-drip connections while a normal client is
served (issue 10).

The test opens N_DRIP non-blocking connections to a ringmaild with two
workers, reads each greeting, then for DRIP_SECONDS sends every connection
one byte of "NOOP\\r\\n" per second (each completes a command every six
seconds, far inside smtp.command_timeout). Meanwhile a normal smtplib
client connects, gets its greeting and sends a message once a second; each
of those transactions must finish within CLIENT_BOUND seconds (a generous
bound for a shared 2-core machine: the promise is well under a second) and
the times are printed. ringmaild's VmRSS is read from /proc before and
after the connections are open, and the growth per connection is printed.
At the end every drip connection must still be open (none dropped), the
daemon exits 0 and, under the sanitizers, without a report.
"""
import errno
import os
import resource
import select
import smtplib
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, queue_id_of  # noqa: E402

N_DRIP = 10000
BATCH = 500
DRIP_SECONDS = 15
CLIENT_BOUND = 5.0 if harness.SANITIZED else 2.0
DRIP = b"NOOP\r\n"


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Drippers:
    """Drippers - n non-blocking sockets to host:port, read through epoll."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.socks = {}        # fd -> socket
        self.greeted = set()   # fds that got their 220
        self.closed = set()    # fds the server closed
        self.replies = 0       # reply lines after the greetings
        self.ep = select.epoll()

    def open(self, n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((self.host, self.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            raise AssertionError("connect #%d: %s" % (n, os.strerror(rc)))
        self.socks[s.fileno()] = s
        self.ep.register(s.fileno(), select.EPOLLIN)

    def poll(self, timeout):
        """poll - read whatever arrived; count greetings and closes."""
        for fd, _ in self.ep.poll(timeout):
            s = self.socks[fd]
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed.add(fd)
                self.ep.unregister(fd)
                continue
            if fd not in self.greeted:
                if not data.startswith(b"220"):
                    raise AssertionError("got greeting %r, want 220" % data[:80])
                self.greeted.add(fd)
            else:
                self.replies += data.count(b"\r\n")

    def drip(self, i):
        """drip - one byte of DRIP to every open connection."""
        byte = DRIP[i % len(DRIP):i % len(DRIP) + 1]
        for fd, s in self.socks.items():
            if fd in self.closed:
                continue
            try:
                s.send(byte)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                self.closed.add(fd)

    def close(self):
        for s in self.socks.values():
            s.close()
        self.ep.close()


class Slowloris(DaemonTestCase):
    def normal_client(self, d, i):
        """normal_client - greeting to 250 for one message; the seconds it took."""
        t0 = time.monotonic()
        with smtplib.SMTP(d.host, d.port, timeout=30) as s:
            s.ehlo("normal.test")
            code, resp = s.mail("n@src.test")
            self.assertEqual(code, 250, resp)
            code, resp = s.rcpt("r%d@dest.test" % i)
            self.assertEqual(code, 250, resp)
            code, resp = s.data(b"Subject: normal %d\r\n\r\nserved\r\n" % i)
            self.assertEqual(code, 250, resp)
            queue_id_of(resp)
            elapsed = time.monotonic() - t0
        return elapsed

    def test_ten_thousand_drippers_and_one_normal_client(self):
        harness.raise_fd_limit()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < N_DRIP + 200:
            self.skipTest("RLIMIT_NOFILE %d is too low for %d connections" % (soft, N_DRIP))
        d = self.daemon({"max_connections": N_DRIP, "listen_backlog": 4096}, workers=2)
        pid = d.proc.pid
        # A first normal transaction warms the daemon up (allocator, spool).
        warm = self.normal_client(d, 0)
        rss_before = vmrss_kib(pid)

        t_start = time.monotonic()
        drips = Drippers(d.host, d.port)
        try:
            for n in range(N_DRIP):
                drips.open(n)
                if n % BATCH == BATCH - 1:
                    # Let the accept queue drain before the next batch.
                    deadline = time.monotonic() + 20
                    while len(drips.greeted) < n + 1 - BATCH // 2 and time.monotonic() < deadline:
                        drips.poll(0.05)
            deadline = time.monotonic() + 40
            while len(drips.greeted) + len(drips.closed) < N_DRIP and time.monotonic() < deadline:
                drips.poll(0.1)
            t_open = time.monotonic() - t_start
            self.assertEqual(len(drips.closed), 0, "server closed %d connections while opening"
                             % len(drips.closed))
            self.assertEqual(len(drips.greeted), N_DRIP, "got %d greetings, want %d"
                             % (len(drips.greeted), N_DRIP))
            rss_after = vmrss_kib(pid)
            per_conn = (rss_after - rss_before) * 1024.0 / N_DRIP
            print("\nslowloris: %d connections open and greeted in %.1f s; VmRSS %d KiB -> %d KiB,"
                  " %.0f bytes per connection" % (N_DRIP, t_open, rss_before, rss_after, per_conn),
                  flush=True)

            times = []
            errors = []

            def client_loop():
                for i in range(1, DRIP_SECONDS - 1):
                    try:
                        times.append(self.normal_client(d, i))
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append(repr(e))
                    time.sleep(1)
            t = threading.Thread(target=client_loop)
            t.start()
            for i in range(DRIP_SECONDS):
                tick = time.monotonic()
                drips.drip(i)
                while time.monotonic() - tick < 1.0:
                    drips.poll(0.1)
            t.join()
            rss_end = vmrss_kib(pid)
            replies = drips.replies
            print("slowloris: normal client (warm-up %.3f s) served in %s s, max %.3f s (bound %.1f);"
                  " %d NOOP replies to drippers; VmRSS at the end %d KiB"
                  % (warm, ", ".join("%.3f" % x for x in times), max(times or [0]),
                     CLIENT_BOUND, replies, rss_end), flush=True)
            self.assertEqual(errors, [])
            self.assertEqual(len(times), DRIP_SECONDS - 2)
            self.assertLess(max(times), CLIENT_BOUND, "got %r s, want each < %.1f s"
                            % (times, CLIENT_BOUND))
            self.assertEqual(len(drips.closed), 0, "server closed %d drip connections"
                             % len(drips.closed))
            # Every dripper completed at least one NOOP (6 bytes, 15 seconds).
            self.assertGreaterEqual(replies, N_DRIP, "got %d NOOP replies, want >= %d"
                                    % (replies, N_DRIP))
        finally:
            drips.close()
        self.finish(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
