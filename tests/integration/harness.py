"""harness - start and stop real daemons for integration tests.

Every process a test starts is stopped by its PID. Ports are picked free.
The daemon's log is kept in its temporary directory and checked for
sanitizer reports when it stops.
"""
import os
import pwd
import random
import resource
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.environ.get("RINGMAIL_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
SANITIZED = os.environ.get("RINGMAIL_SANITIZE", "0") in ("1", "ON", "TRUE", "true")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # io_uring's pinned memory is charged to the ringmail user, shared by
    # every daemon the tests run at once; the limit a daemon inherits is
    # what it is checked against (the unit file's LimitMEMLOCK does the same).
    if os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1", also=()):
    """A port free for both TCP and UDP on host (and on each address in
    also) right now. It is chosen at random below the kernel's ephemeral
    range: a port from bind(0) is one the kernel may hand at any moment to
    some process's outgoing connection as its source port, and a daemon
    that binds it a moment later then fails with EADDRINUSE."""
    high = min(_ephemeral_low(), 32768)
    for _ in range(200):
        port = random.randint(10000, high - 1)
        try:
            for addr in (host,) + tuple(also):
                for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, k) as s:
                        s.bind((addr, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_port(host, port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %d before listening" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d" % (host, port))


def wait_port_free(host, port, timeout=10.0):
    """Wait until a plain bind (SO_REUSEADDR, no SO_REUSEPORT) of host:port
    succeeds: a daemon that has exited keeps its listeners for a few
    milliseconds while the kernel tears down its io_uring ring, and a
    client (or wait_port) that connects meanwhile reaches the dead one.
    False if it is still bound after timeout (someone else holds it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return True
            except OSError:
                pass
        time.sleep(0.01)
    return False


def daemon_user():
    """(uid, gid) of the user a ringmaild started by root runs as (the
    ringmail user, see docs/OPERATIONS.md "Privileges"), or None when the
    tests do not run as root or there is no such user."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("ringmail")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def give_to_daemon(path):
    """Let the unprivileged daemon use a directory the test made (mkdtemp
    makes it 0700 root): its spool, log and mailboxes live there, and it
    re-reads the config, certificates and users file from there."""
    user = daemon_user()
    if user is not None and os.path.exists(path):
        os.chown(path, *user)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def give_settings_to_daemon(settings):
    """Every absolute path in settings under the temporary directory (the
    certificates, keys, users files and maildirs tests make with mkdtemp,
    0700 root, and openssl's 0600 keys) becomes the daemon user's, with the
    directories above it up to the temporary directory: the unprivileged
    daemon opens them at start and again on SIGHUP, as an installation's
    files must be readable by the ringmail user (docs/OPERATIONS.md)."""
    user = daemon_user()
    if user is None:
        return
    top = os.path.realpath(tempfile.gettempdir())
    for value in _strings(settings):
        if not value.startswith("/"):
            continue
        path = os.path.realpath(value)
        while path.startswith(top + os.sep):
            try:
                st = os.lstat(path)
                # root:ringmail is how an installation shares a secret
                # with the daemon: leave it so.
                if st.st_uid == 0 and st.st_gid != user[1]:
                    os.chown(path, *user, follow_symlinks=False)
            except FileNotFoundError:
                pass
            path = os.path.dirname(path)


def libconfig_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
        # A list of groups is a libconfig list, not an array.
        return "( " + ", ".join(libconfig_value(x) for x in v) + " )"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(libconfig_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, libconfig_value(x)) for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(settings):
    """settings: dict; nested dicts become groups; "domains" a list of dicts."""
    lines = []
    for key, value in settings.items():
        if key == "domains":
            items = ", ".join(libconfig_value(d) for d in value)
            lines.append("domains = ( %s );" % items)
        else:
            lines.append("%s = %s;" % (key, libconfig_value(value)))
    return "\n".join(lines) + "\n"


class Ringmaild:
    """A ringmaild on a free loopback port with its own spool and log."""

    def __init__(self, workers=2, host="127.0.0.1", port=None, extra=None, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="ringmail-test-")
        give_to_daemon(self.tmp)
        self.host = host
        self.port = port or free_port(host)
        self.config_path = os.path.join(self.tmp, "ringmail.conf")
        self.log_path = os.path.join(self.tmp, "ringmaild.log")
        self.settings = {
            "workers": workers,
            "hostname": "relay.test",
            "listen": ["%s:%d" % (host, self.port)],
            "shutdown_timeout": "5s",
            # 1M of zeros per spare, not the default 64M: the suite starts
            # hundreds of daemons, and every one still takes the path.
            "spool": {"dir": os.path.join(self.tmp, "spool"), "preallocate": "1M"},
            "log": {"level": "info"},
        }
        if os.geteuid() == 0 and daemon_user() is None:
            # No ringmail user (tools/setup makes it): ringmaild refuses to
            # run as root unless told to.
            self.settings["user"] = "root"
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(self.settings.get(key), dict):
                self.settings[key].update(value)
            else:
                self.settings[key] = value
        self.proc = None
        self.program = "ringmaild"     # ringmaild-testhooks for the confinement probes
        self.env = None                # the daemon's environment; None = ours

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(render_config(self.settings))
        give_settings_to_daemon(self.settings)

    def start(self):
        raise_fd_limit()
        self.write_config()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, self.program), "-c", self.config_path],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_port(self.host, self.port, proc=self.proc)
        self.wait_control_socket()
        return self

    def wait_control_socket(self, timeout=10.0):
        """Listeners are bound before the control socket exists (they are
        opened before privileges drop): wait for it too, so a test's first
        ringmailctl finds it."""
        sock = (self.settings.get("control") or {}).get("socket", "control.sock")
        if not sock:
            return
        if not sock.startswith("/"):
            sock = os.path.join(self.settings["spool"]["dir"], sock)
        deadline = time.monotonic() + timeout
        while not os.path.exists(sock) and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return
            time.sleep(0.02)

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the daemon; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self.log.close()
        self.proc = None
        wait_port_free(self.host, self.port)
        return rc

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        self.proc = None
        wait_port_free(self.host, self.port)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def sanitizer_reports(self):
        text = self.log_text()
        return [line for line in text.splitlines()
                if "AddressSanitizer" in line or "LeakSanitizer" in line
                or "runtime error:" in line]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
