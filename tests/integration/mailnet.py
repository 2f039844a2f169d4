"""mailnet - a small mail network on loopback for the delivery tests.

dnsmasq on 127.0.0.1:<free port> answers MX and A records for test domains;
receivers (ringmail-sink processes, aiosmtpd controllers, sockets that stall)
listen on distinct 127.x.y.z addresses sharing one port, which is ringmaild's
delivery.port. Every process started here is stopped by its PID.
"""
import asyncio
import json
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402

BIN = harness.BIN
SINK = os.path.join(BIN, "ringmail-sink")
RESOLVE = os.path.join(BIN, "ringmail-resolve")
SPOOL = os.path.join(BIN, "ringmail-spool")


def wait_until(pred, timeout=60.0, interval=0.1):
    """wait_until - poll pred until it returns something true; that or None."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Addresses:
    """Addresses - distinct loopback addresses in a random 127.a.b.0/24 (so
    tests running in parallel rarely meet), and one port free on all of them."""

    def __init__(self, count):
        a, b = random.randint(20, 250), random.randint(1, 250)
        self.ips = ["127.%d.%d.%d" % (a, b, 10 + i) for i in range(count)]
        self.port = self._free_port()

    def _free_port(self):
        return harness.free_port(self.ips[0], also=self.ips[1:])


class Dnsmasq:
    """Dnsmasq - an authoritative-ish server for *.test: names not in the zone
    are NXDOMAIN (--local=/test/)."""

    def __init__(self, tmp, zone_lines):
        self.conf = os.path.join(tmp, "zone-%d.conf" % random.randint(0, 1 << 30))
        with open(self.conf, "w") as f:
            f.write("\n".join(zone_lines) + "\n")
        self.proc = None
        self.port = harness.free_port("127.0.0.1")
        self.ns = "127.0.0.1:%d" % self.port

    def start(self, probe="probe.test"):
        cmd = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
               "--port=%d" % self.port, "--listen-address=127.0.0.1", "--bind-interfaces",
               "--pid-file=", "--conf-file=" + self.conf, "--local=/test/",
               "--log-facility=-", "--host-record=probe.test,127.0.0.1"]
        if os.geteuid() == 0:
            cmd += ["--user=root", "--group=root"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited %d" % self.proc.returncode)
            p = subprocess.run([RESOLVE, "--nameserver", self.ns, "--timeout", "1",
                                "--tries", "1", probe], capture_output=True, timeout=30)
            if p.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("dnsmasq did not answer")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def mx_zone(domain, hosts):
    """mx_zone - dnsmasq lines: domain's MX records [(pref, name, ip or None)]."""
    lines = []
    for pref, name, ip in hosts:
        lines.append("mx-host=%s,%s,%d" % (domain, name, pref))
        if ip is not None:
            lines.append("host-record=%s,%s" % (name, ip))
    return lines


class Sink:
    """Sink - one ringmail-sink process with a stats file (and --store)."""

    def __init__(self, tmp, ips, port, *args, store=True):
        self.tmp = tmp
        tag = "%s-%d-%d" % (ips[0], port, random.randint(0, 1 << 30))
        self.stats_path = os.path.join(tmp, "sink-%s.json" % tag)
        self.store_dir = os.path.join(tmp, "store-%s" % tag) if store else None
        self.log_path = os.path.join(tmp, "sink-%s.log" % tag)
        self.cmd = [SINK, "--stats-file", self.stats_path]
        for ip in ips:
            self.cmd += ["--listen", "%s:%d" % (ip, port)]
        if store:
            os.makedirs(self.store_dir)
            self.cmd += ["--store", self.store_dir]
        self.cmd += list(args)
        self.ips, self.port = ips, port
        self.proc = None

    def start(self):
        """start - run it; ready once it has written its stats file (a
        connect alone is no proof: see below)."""
        # A sink that just stopped on the same address may keep its listener
        # (still accepting) for a moment: io_uring releases files after the
        # process exits. Retry a bind that failed with EADDRINUSE.
        for _ in range(100):
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
            if wait_until(lambda: os.path.exists(self.stats_path) or self.proc.poll() is not None,
                          20, 0.02) and self.proc.poll() is None:
                harness.wait_port(self.ips[0], self.port, proc=self.proc)
                return self
            self.proc.wait() if self.proc.poll() is not None else self.stop()
            self.log.close()
            self.proc = None
            with open(self.log_path, "rb") as f:
                if b"Address already in use" not in f.read():
                    raise RuntimeError("sink did not start: " + self.log_path)
            time.sleep(0.1)
        raise RuntimeError("sink could not bind %s:%d" % (self.ips[0], self.port))

    def stats(self):
        for _ in range(20):
            try:
                with open(self.stats_path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("unreadable stats " + self.stats_path)

    def stored(self):
        """stored - [(envelope dict, message bytes)] of every stored message."""
        out = []
        for name in sorted(os.listdir(self.store_dir)):
            with open(os.path.join(self.store_dir, name), "rb") as f:
                out.append(split_stored(f.read()))
        return out

    def stop(self):
        """stop - SIGTERM by PID; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self.log.close()
        self.proc = None
        return rc


def split_stored(data):
    """split_stored - the sink's X-Sink-Envelope-* lines, then the message."""
    env = {"from": None, "to": []}
    while data.startswith(b"X-Sink-Envelope-"):
        line, _, data = data.partition(b"\r\n")
        name, _, value = line.decode("utf-8", "replace").partition(":")
        value = value.strip()
        if name == "X-Sink-Envelope-From":
            env["from"] = value
        else:
            env["to"].append(value)
    return env, data


class Received:
    """Received - one message an aiosmtpd receiver accepted."""

    def __init__(self, sender, rcpts, content, peer, mail_options=(), rcpt_options=()):
        self.sender, self.rcpts, self.content, self.peer = sender, list(rcpts), bytes(content), peer
        self.mail_options, self.rcpt_options = list(mail_options), list(rcpt_options)


class RecordingHandler:
    """RecordingHandler - accepts everything and keeps it; subclasses override
    rcpt_reply / data_reply to inject failures (return None to accept)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.sessions = 0
        self.quits = 0
        self.rcpt_attempts = {}

    def rcpt_reply(self, address):
        return None

    def data_reply(self, envelope):
        return None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.quits += 1
        return "221 2.0.0 Bye"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
            reply = self.rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            reply = self.data_reply(envelope)
            if reply is not None:
                return reply
            self.messages.append(Received(envelope.mail_from, envelope.rcpt_tos,
                                          envelope.original_content, session.peer,
                                          envelope.mail_options, envelope.rcpt_options))
        return "250 2.0.0 Ok: stored"

    def snapshot(self):
        with self.lock:
            return list(self.messages)


class Receiver:
    """Receiver - an aiosmtpd controller on ip:port with a handler."""

    def __init__(self, ip, port, handler=None):
        self.handler = handler or RecordingHandler()
        self.controller = Controller(self.handler, hostname=ip, port=port,
                                     server_hostname="mx.receiver.test", ready_timeout=10)
        self.ip, self.port = ip, port

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class LineServer:
    """LineServer - a TCP listener on ip:port with a thread per connection:
    subclasses define serve(c) (the connection, timeout 0.2 s; closed by the
    subclass if it wants) and may use lines(c) to read CRLF lines until the
    peer or stop() ends them. accepted holds every connection."""

    def __init__(self, ip, port, backlog=64):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.accepted = []
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop_event.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted.append(c)
            c.settimeout(0.2)
            t = threading.Thread(target=self.serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def serve(self, c):
        raise NotImplementedError

    def lines(self, c):
        buf = b""
        while not self.stop_event.is_set():
            try:
                data = c.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, _, buf = buf.partition(b"\r\n")
                yield line

    def stop(self):
        if self.sock is None:
            return
        self.stop_event.set()
        for t in self.threads:
            t.join()
        self.sock.close()
        self.sock = None
        for c in self.accepted:
            c.close()


class Staller(LineServer):
    """Staller - accepts TCP connections and then says nothing (greet=False),
    or greets and answers EHLO, then never answers again (greet=True)."""

    def __init__(self, ip, port, greet=False):
        self.greet = greet
        self.commands = []
        super().__init__(ip, port)

    def serve(self, c):
        if not self.greet:
            return
        try:
            c.sendall(b"220 stall.test ESMTP\r\n")
            for line in self.lines(c):
                with self.lock:
                    self.commands.append(line)
                if line[:4].upper() in (b"EHLO", b"HELO"):
                    c.sendall(b"250 stall.test\r\n")
        except OSError:
            return

    def connections(self):
        with self.lock:
            return len(self.accepted)


class Blackhole:
    """Blackhole - a UDP socket that reads and drops: a nameserver that never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.ns = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.queries = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.sock.recv(4096)
                self.queries += 1
            except socket.timeout:
                pass

    def stop(self):
        self.stop_event.set()
        self.thread.join()
        self.sock.close()


def relay_settings(addrs_port, ns, **delivery):
    """relay_settings - ringmaild extra= for delivery through the test network."""
    d = {"port": addrs_port, "min_backoff": "1s", "max_backoff": "2s",
         "backoff_jitter": 0, "connect_timeout": "2s", "greeting_timeout": "5s",
         "command_timeout": "10s", "data_timeout": "20s", "idle_timeout": "2s",
         "domain_backoff": "1s"}
    d.update(delivery)
    return {"dns": {"nameservers": [ns], "timeout": "1s", "tries": 2,
                    "negative_ttl": "1s", "min_ttl": "1s"},
            "delivery": d}


DELIVERY_RE = re.compile(r"event=delivery (.*)$")
FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def deliveries(log_text):
    """deliveries - the event=delivery lines of a ringmaild log as dicts."""
    out = []
    for line in log_text.splitlines():
        m = DELIVERY_RE.search(line)
        if m is None:
            continue
        fields = {}
        for k, v in FIELD_RE.findall(m.group(1)):
            fields[k] = v[1:-1] if v.startswith('"') else v
        fields["rcpt"] = fields.get("rcpt", "").strip("<>")
        out.append(fields)
    return out


def events(log_text, name):
    """events - lines of one event name."""
    return [line for line in log_text.splitlines() if (" event=%s " % name) in line + " "]


def submit(host, port, messages, connections=4, per_connection=None):
    """submit - send [(sender, [rcpts], bytes, mail_options, rcpt_options)]
    over `connections` parallel SMTP sessions. Raises on any refusal."""
    errors = []
    chunks = [messages[i::connections] for i in range(connections)]

    def run(chunk):
        try:
            s = smtplib.SMTP(host, port, timeout=60)
            s.ehlo("client.test")
            sent = 0
            for sender, rcpts, body, mopts, ropts in chunk:
                if per_connection is not None and sent == per_connection:
                    s.quit()
                    s = smtplib.SMTP(host, port, timeout=60)
                    s.ehlo("client.test")
                    sent = 0
                refused = s.sendmail(sender, rcpts, body, mopts, ropts)
                if refused:
                    errors.append(refused)
                sent += 1
            s.quit()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(c,)) for c in chunks if c]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError("submission failed: %r" % (errors[:5],))


def spool_live(spool_dir):
    """spool_live - the spool dump's idea of what is still to deliver, as text."""
    p = subprocess.run([SPOOL, "dump", spool_dir], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def split_first_header(data):
    """split_first_header - (the first header field with its folded lines,
    the rest): ringmaild's Received: and what the client sent."""
    first, _, rest = data.partition(b"\r\n")
    while rest[:1] in (b" ", b"\t"):
        more, _, rest = rest.partition(b"\r\n")
        first += b"\r\n" + more
    return first, rest


def message_ids(data):
    """message_ids - every Message-ID header value in data."""
    return re.findall(rb"(?im)^Message-ID:\s*(<[^>\r\n]*>)", data)


def make_message(mid, sender, rcpts, subject="test", body=b"Hello.\r\n"):
    """make_message - a small RFC 5322 message with Message-ID <mid>."""
    head = ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n"
            "Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\n"
            % (sender or "nobody@client.test", ", ".join("<%s>" % r for r in rcpts), subject, mid))
    return head.encode() + body


class NetTestCase:
    """NetTestCase - a mixin for unittest.TestCase: a temporary directory,
    processes stopped (by PID) in reverse order at the end of each test, and
    ringmaild helpers that check exit status and sanitizer reports."""

    def setUp(self):
        harness.raise_fd_limit()
        self.tmp = tempfile.mkdtemp(prefix="ringmail-delivery-")

    def started(self, thing):
        """started - thing.start() (if it has one) and stop it at cleanup."""
        self.addCleanup(thing.stop)
        if hasattr(thing, "start"):
            thing.start()
        return thing

    def relay(self, extra, workers=2):
        d = harness.Ringmaild(workers=workers, extra=extra,
                              tmp=tempfile.mkdtemp(prefix="relay-", dir=self.tmp))
        self.addCleanup(d.stop)
        return d.start()

    def stop_relay(self, d):
        """stop_relay - SIGTERM; exit status 0 and no sanitizer reports."""
        rc = d.stop()
        text = d.log_text()
        self.assertEqual(rc, 0, "ringmaild exit status %r\n%s" % (rc, text[-4000:]))
        self.assertEqual(d.sanitizer_reports(), [], text[-8000:])
        return text

    def wait_log(self, d, pred, timeout=60, what="log condition"):
        """wait_log - poll the delivery lines until pred(lines) is true."""
        got = wait_until(lambda: pred(deliveries(d.log_text())), timeout, 0.1)
        if not got:
            self.fail("timed out waiting for %s; log tail:\n%s" % (what, d.log_text()[-6000:]))
        return deliveries(d.log_text())
