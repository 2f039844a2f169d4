"""inbound_common - helpers shared by the test_inbound*.py integration tests.

- spool_messages(): `ringmail-spool dump --json`, each message completed with
  its full record (DSN fields, body) read from the segment file and decoded
  here (record format: docs/SPOOL.md, spool/spool_record.h).
- Sink: a ringmail-sink with --store and --stats-file, stopped by PID.
- RawClient: a plain socket SMTP client that reads complete replies, for
  pipelining, BDAT and protocol-error tests.
- closed_delivery(): delivery settings that keep every message in the queue.
"""
import json
import os
import re
import shutil
import smtplib
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

import harness

SPOOL_TOOL = os.path.join(harness.BIN, "ringmail-spool")
SINK = os.path.join(harness.BIN, "ringmail-sink")

BODY_NAMES = {0: None, 1: "7BIT", 2: "8BITMIME", 3: "BINARYMIME"}
RET_NAMES = {0: None, 1: "FULL", 2: "HDRS"}
NOTIFY_BITS = {0x01: "NEVER", 0x02: "SUCCESS", 0x04: "FAILURE", 0x08: "DELAY"}


def closed_port():
    """closed_port - a loopback port nobody listens on (delivery fails fast)."""
    return harness.free_port()


def closed_delivery():
    """closed_delivery - relay everything to a closed port, retry in an hour:
    accepted messages stay in the spool where the test can look at them."""
    return {"relayhost": "[127.0.0.1]:%d" % closed_port(),
            "min_backoff": "1h", "max_backoff": "2h"}


class Reader:
    """Reader - little endian fields of one record payload."""

    def __init__(self, data):
        self.data = data
        self.off = 0

    def take(self, n):
        if self.off + n > len(self.data):
            raise ValueError("record truncated at %d (+%d)" % (self.off, n))
        v = self.data[self.off:self.off + n]
        self.off += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        n = self.u16()
        s = self.take(n)
        if self.take(1) != b"\0":
            raise ValueError("string without NUL")
        return s.decode("utf-8", "surrogateescape")


def decode_message_record(raw):
    """decode_message_record - one MESSAGE record (header + payload) as a dict."""
    magic, rtype, _flags, _spare, length, _crc = struct.unpack("<IBBHII", raw[:16])
    if magic != 0x31534d52 or rtype != 1:
        raise ValueError("not a MESSAGE record: magic %x type %d" % (magic, rtype))
    r = Reader(raw[16:16 + length])
    m = {"queue_id": r.string(), "arrival_usec": r.u64(), "client_addr": r.string(),
         "helo": r.string(), "auth_user": r.string(), "sender": r.string(),
         "size_param": r.u64(), "body_type": BODY_NAMES.get(r.u8(), "?"),
         "smtputf8": r.u8() != 0, "ret": RET_NAMES.get(r.u8(), "?"), "envid": r.string()}
    rcpts = []
    for _ in range(r.u32()):
        address = r.string()
        bits = r.u8()
        notify = sorted(name for bit, name in NOTIFY_BITS.items() if bits & bit)
        rcpts.append({"address": address, "notify": notify, "orcpt": r.string()})
    m["rcpts"] = rcpts
    m["body"] = r.take(r.u64())
    return m


def spool_dump(spool_dir):
    """spool_dump - the dump tool's JSON lines as a list of dicts."""
    out = subprocess.run([SPOOL_TOOL, "dump", "--json", spool_dir],
                         capture_output=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError("ringmail-spool dump exit %d: %s" % (out.returncode, out.stderr))
    return [json.loads(line) for line in out.stdout.decode("utf-8", "surrogateescape").splitlines()
            if line.strip()]


def spool_messages(spool_dir):
    """spool_messages - every live message: dump's view plus the decoded record
    under "record" (read from w<worker>/seg-<segment in hex>.rms)."""
    result = []
    for d in spool_dump(spool_dir):
        path = os.path.join(spool_dir, "w%d" % d["worker"], "seg-%016x.rms" % d["segment"])
        with open(path, "rb") as f:
            f.seek(d["offset"])
            raw = f.read(d["length"])
        d["record"] = decode_message_record(raw)
        if d["record"]["queue_id"] != d["queue_id"]:
            raise AssertionError("record at %s:%d holds %s, dump says %s" % (
                path, d["offset"], d["record"]["queue_id"], d["queue_id"]))
        result.append(d)
    return result


def wait_for(fn, timeout=30.0, interval=0.1):
    """wait_for - poll fn until it returns something true; returns the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    return value


def split_received(body):
    """split_received - (Received header, rest): the header is the first field
    with its folded continuation lines."""
    if not body.startswith(b"Received: "):
        raise AssertionError("body does not start with Received: %r" % body[:80])
    pos = 0
    while True:
        end = body.index(b"\r\n", pos) + 2
        if body[end:end + 1] not in (b" ", b"\t"):
            return body[:end], body[end:]
        pos = end


def strip_sink_envelope(stored):
    """strip_sink_envelope - a --store file without its X-Sink-Envelope-* lines."""
    env = []
    while stored.startswith(b"X-Sink-Envelope-"):
        end = stored.index(b"\r\n") + 2
        env.append(stored[:end - 2].decode("utf-8", "replace"))
        stored = stored[end:]
    return env, stored


class Sink:
    """Sink - one ringmail-sink on a free port, storing what it receives."""

    def __init__(self, tmp, *args):
        self.port = harness.free_port()
        self.store = os.path.join(tmp, "sink-store-%d" % self.port)
        self.stats_path = os.path.join(tmp, "sink-stats-%d.json" % self.port)
        self.log = open(os.path.join(tmp, "sink-%d.log" % self.port), "ab")
        cmd = [SINK, "--listen", "127.0.0.1:%d" % self.port, "--stats-file", self.stats_path,
               "--store", self.store] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for(lambda: os.path.exists(self.stats_path) or self.proc.poll() is not None, 20):
            raise AssertionError("sink did not start")
        if self.proc.poll() is not None:
            raise AssertionError("sink exited with %s" % self.proc.returncode)

    @property
    def address(self):
        return "[127.0.0.1]:%d" % self.port

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"messages": 0}

    def wait_messages(self, want, timeout=60):
        wait_for(lambda: self.stats().get("messages", 0) >= want, timeout)
        return self.stats().get("messages", 0)

    def stored(self):
        """stored - every completely stored message as (envelope lines, bytes).
        The sink writes <n>.eml synchronously before its stats file counts
        message n, so files up to the count in the stats file are complete."""
        count = self.stats().get("messages", 0)
        if not os.path.isdir(self.store):
            return []
        result = []
        names = [n for n in os.listdir(self.store) if n.endswith(".eml")]
        for name in sorted(names, key=lambda n: int(n.split(".")[0])):
            if int(name.split(".")[0]) > count:
                break
            with open(os.path.join(self.store, name), "rb") as f:
                result.append(strip_sink_envelope(f.read()))
        return result

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class RawClient:
    """RawClient - SMTP over a plain socket; replies are read whole."""

    def __init__(self, host, port, source=None, timeout=15):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """reply - one complete (possibly multiline) reply: (code, [texts])."""
        texts = []
        while True:
            line = self.read_line()
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            texts.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), texts

    def cmd(self, line):
        self.send(line.encode("utf-8") + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def read_until_closed(self, timeout=30):
        """read_until_closed - everything until EOF (or reset); returns bytes."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self):
        self.sock.close()


QUEUED = re.compile(r"2\.0\.0 Ok: queued as ([0-9A-Z]+)")


class DaemonTestCase(unittest.TestCase):
    """DaemonTestCase - every daemon and sink a test starts is stopped."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringmail-inbound-")
        self.daemons = []
        self.sinks = []

    def tearDown(self):
        for d in self.daemons:
            if d.proc is not None:
                d.stop()
        for s in self.sinks:
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self, extra=None, workers=2):
        # These tests compare stored bytes with sent ones: no added
        # Message-ID/Date (test_submission_hygiene tests that).
        settings = {"delivery": closed_delivery(), "smtp": {"add_missing_headers": False}}
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key].update(value)
            else:
                settings[key] = value
        tmp = tempfile.mkdtemp(dir=self.tmp)
        d = harness.Ringmaild(workers=workers, extra=settings, tmp=tmp).start()
        self.daemons.append(d)
        return d

    def sink(self, *args):
        s = Sink(self.tmp, *args)
        self.sinks.append(s)
        return s

    def spool_dir(self, d):
        return d.settings["spool"]["dir"]

    def spooled(self, d, queue_id):
        """spooled - the spool entry of queue_id (exactly one must exist)."""
        found = [m for m in spool_messages(self.spool_dir(d)) if m["queue_id"] == queue_id]
        self.assertEqual(len(found), 1, "got %d spool entries for %s, want 1" % (len(found), queue_id))
        return found[0]

    def finish(self, d):
        """finish - SIGTERM: exit status 0 and no sanitizer report."""
        rc = d.stop()
        self.assertEqual(rc, 0, "got exit status %s, want 0\n%s" % (rc, d.log_text()[-3000:]))
        self.assertEqual(d.sanitizer_reports(), [], d.log_text()[-3000:])

    def assert_body(self, stored, sent):
        header, rest = split_received(stored)
        self.assertIn(b"by relay.test (ringmail)", header)
        self.assertEqual(rest, sent, "got body %r, want %r" % (rest[:200], sent[:200]))
        return header


def queue_id_of(resp):
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    m = QUEUED.search(text)
    if m is None:
        raise AssertionError("no queue id in %r" % text)
    return m.group(1)


def send_smtplib(d, sender, rcpts, body, mail_options=(), rcpt_options=(), source=None):
    """send_smtplib - one transaction; returns the queue id from the 250."""
    kw = {"source_address": (source, 0)} if source else {}
    with smtplib.SMTP(d.host, d.port, timeout=30, **kw) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender, list(mail_options))
        if code != 250:
            raise AssertionError("MAIL got %d %r" % (code, resp))
        for r in rcpts:
            code, resp = s.rcpt(r, list(rcpt_options))
            if code != 250:
                raise AssertionError("RCPT %s got %d %r" % (r, code, resp))
        code, resp = s.data(body)
        if code != 250:
            raise AssertionError("DATA got %d %r" % (code, resp))
        return queue_id_of(resp)
