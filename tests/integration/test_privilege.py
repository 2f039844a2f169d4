"""test_privilege - least privilege (issue 24): ringmaild started as root
serves a port below 1024 as the ringmail user (real, effective, saved and
filesystem ids, read from /proc), Landlock refuses a write outside the
allowed directories with EACCES, seccomp kills an execve, and SIGHUP still
re-reads a certificate and the users file after the drop.

The write and the execve come from ringmaild-testhooks (relay/testhook),
the daemon built with a worker module that tries them when its environment
asks; ringmaild itself has no such code. Needs root and the ringmail user
(tools/setup makes it); skipped otherwise.
"""
import os
import pwd
import random
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import wait_for  # noqa: E402


def status_ids(pid):
    """The Uid:, Gid: and Groups: lines of /proc/PID/status as lists."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "CapEff", "CapPrm",
                       "CapAmb"):
                ids[key] = value.split()
    return ids


def low_port_address():
    """A 127.0.0.x address whose port 25 (or another port below 1024) is free."""
    for _ in range(50):
        host = "127.0.0.%d" % random.randint(20, 250)
        for port in (25, 587, 465, 110):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            return host, port
    raise RuntimeError("no free port below 1024 on 127.0.0.x")


def make_cert(directory, name, cn, user):
    """A self-signed certificate and key, shared with the daemon as an
    installation would: cert 0644, key 0640 root:ringmail."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=" + cn],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chown(key, 0, user.pw_gid)
    os.chmod(key, 0o640)
    os.chmod(cert, 0o644)
    return cert, key


def sha512_crypt(password):
    out = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def write_secret(path, text, user):
    """Replace path by rename (as ringmailctl users and certbot do), 0640
    root:ringmail."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chown(tmp, 0, user.pw_gid)
    os.chmod(tmp, 0o640)
    os.rename(tmp, path)


def peer_cert_der(host, port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=15) as c:
        c.starttls(context=ctx)
        return c.sock.getpeercert(binary_form=True)


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def login_works(host, port, user, password):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=15) as c:
        c.starttls(context=ctx)
        try:
            c.login(user, password)
            return True
        except smtplib.SMTPAuthenticationError:
            return False


@unittest.skipUnless(os.geteuid() == 0 and harness.daemon_user() is not None,
                     "needs root and the ringmail user (tools/setup)")
class Privilege(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringmail-priv-")
        self.user = pwd.getpwnam("ringmail")
        self.daemons = []
        self.probes = []

    def tearDown(self):
        for d in self.daemons:
            if d.proc is not None:
                d.stop()
        for p in self.probes:
            if os.path.exists(p):
                os.unlink(p)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self, extra=None, host="127.0.0.1", port=None, testhooks=None):
        d = harness.Ringmaild(workers=2, host=host, port=port, extra=extra or {},
                              tmp=tempfile.mkdtemp(dir=self.tmp))
        if testhooks is not None:
            d.program = "ringmaild-testhooks"
            d.env = dict(os.environ, **testhooks)
        self.daemons.append(d)
        return d

    def probe_path(self):
        """A path outside every directory the daemon may write, in /tmp,
        where the ringmail user's plain permissions would let it write."""
        path = "/tmp/ringmail-landlock-probe-%d-%d" % (os.getpid(), random.randint(0, 1 << 30))
        self.probes.append(path)
        return path

    def test_runs_as_ringmail_on_a_low_port(self):
        host, port = low_port_address()
        d = self.daemon(host=host, port=port).start()
        ids = status_ids(d.proc.pid)
        uid, gid = str(self.user.pw_uid), str(self.user.pw_gid)
        self.assertEqual(ids["Uid"], [uid] * 4, ids)          # real, effective, saved, fs
        self.assertEqual(ids["Gid"], [gid] * 4, ids)
        self.assertEqual(ids.get("Groups", []), [], ids)      # supplementary groups cleared
        self.assertEqual(ids["CapEff"], ["0000000000000000"], ids)
        self.assertEqual(ids["CapPrm"], ["0000000000000000"], ids)
        self.assertEqual(ids["NoNewPrivs"], ["1"], ids)
        self.assertEqual(ids["Seccomp"], ["2"], ids)          # filter mode
        with smtplib.SMTP(host, port, timeout=15) as c:
            code, _ = c.ehlo("client.test")
            self.assertEqual(code, 250)
            c.sendmail("a@src.test", ["b@dst.test"], b"Subject: low port\r\n\r\nhello\r\n")
        spool = d.settings["spool"]["dir"]
        for dirpath, dirnames, filenames in os.walk(spool):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                self.assertEqual(st.st_uid, self.user.pw_uid, os.path.join(dirpath, name))
        text = d.log_text()
        self.assertIn("event=privilege user=ringmail", text)
        self.assertEqual(d.stop(), 0, text[-2000:])

    @unittest.skipIf(shutil.which("setpriv") is None, "setpriv (util-linux) is missing")
    def test_started_as_ringmail_with_net_bind_service_like_the_unit(self):
        # What the systemd unit does: User=ringmail and only
        # CAP_NET_BIND_SERVICE (AmbientCapabilities); ringmaild binds the
        # low port, then clears the capability.
        host, port = low_port_address()
        d = self.daemon(host=host, port=port)
        d.write_config()
        d.log = open(d.log_path, "ab")
        d.proc = subprocess.Popen(
            ["setpriv", "--reuid=ringmail", "--regid=ringmail", "--clear-groups",
             "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
             "--bounding-set=-all,+net_bind_service",
             os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
            stdout=d.log, stderr=subprocess.STDOUT)
        harness.wait_port(host, port, proc=d.proc)
        ids = status_ids(d.proc.pid)
        self.assertEqual(ids["Uid"], [str(self.user.pw_uid)] * 4, ids)
        self.assertEqual(ids["CapEff"], ["0000000000000000"], ids)
        self.assertEqual(ids["CapPrm"], ["0000000000000000"], ids)
        self.assertEqual(ids["CapAmb"], ["0000000000000000"], ids)
        self.assertEqual(ids["Seccomp"], ["2"], ids)
        with smtplib.SMTP(host, port, timeout=15) as c:
            self.assertEqual(c.ehlo("client.test")[0], 250)
        self.assertNotIn("event=privilege", d.log_text())   # nothing to switch
        self.assertEqual(d.stop(), 0, d.log_text()[-2000:])

    def test_explicit_root_stays_root(self):
        d = self.daemon({"user": "root"}).start()
        ids = status_ids(d.proc.pid)
        self.assertEqual(ids["Uid"], ["0"] * 4, ids)
        self.assertEqual(d.stop(), 0)

    def test_unknown_user_is_refused(self):
        d = self.daemon({"user": "no-such-user-ringmail"})
        d.write_config()
        r = subprocess.run([os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('user "no-such-user-ringmail": no such user', r.stderr)

    def test_key_only_root_can_read_is_refused_at_start(self):
        # Loaded as root it would work until the workers (or the next
        # reload) read it as ringmail: refuse at once, naming it.
        etc = tempfile.mkdtemp(dir=self.tmp)
        cert, key = make_cert(etc, "a", "relay.test", self.user)
        d = self.daemon({"tls": {"cert_file": cert, "key_file": key}})
        d.write_config()
        os.chown(key, 0, 0)
        os.chmod(key, 0o600)
        r = subprocess.run([os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("tls.key_file %s: Permission denied" % key, r.stderr)

    def test_landlock_refuses_a_write_outside_with_eacces(self):
        outside = self.probe_path()
        d = self.daemon(testhooks={"RINGMAIL_TESTHOOK_WRITE": outside}).start()
        line = wait_for(lambda: "op=write" in d.log_text())
        self.assertTrue(line, d.log_text()[-2000:])
        self.assertIn("event=landlock result=enforced", d.log_text())
        self.assertIn("op=write path=%s error=EACCES" % outside, d.log_text())
        self.assertFalse(os.path.exists(outside))
        self.assertEqual(d.stop(), 0)

    def test_landlock_allows_the_spool_and_off_means_off(self):
        # The same probe inside the spool succeeds: the hook itself works.
        d = self.daemon()
        inside = os.path.join(d.settings["spool"]["dir"], "probe")
        d.program = "ringmaild-testhooks"
        d.env = dict(os.environ, RINGMAIL_TESTHOOK_WRITE=inside)
        d.start()
        self.assertTrue(wait_for(lambda: "op=write" in d.log_text()), d.log_text()[-2000:])
        self.assertIn("op=write path=%s result=ok" % inside, d.log_text())
        self.assertEqual(os.stat(inside).st_uid, self.user.pw_uid)
        self.assertEqual(d.stop(), 0)
        # security.landlock = false: only the file permissions are left, and
        # /tmp lets the ringmail user write.
        outside = self.probe_path()
        d = self.daemon({"security": {"landlock": False}},
                        testhooks={"RINGMAIL_TESTHOOK_WRITE": outside}).start()
        self.assertTrue(wait_for(lambda: "op=write" in d.log_text()), d.log_text()[-2000:])
        self.assertIn("op=write path=%s result=ok" % outside, d.log_text())
        self.assertNotIn("event=landlock", d.log_text())
        self.assertEqual(d.stop(), 0)

    def test_seccomp_kills_execve(self):
        d = self.daemon(testhooks={"RINGMAIL_TESTHOOK_EXEC": "/bin/true"})
        d.write_config()
        log = open(d.log_path, "ab")
        proc = subprocess.Popen([os.path.join(harness.BIN, d.program), "-c", d.config_path],
                                stdout=log, stderr=subprocess.STDOUT, env=d.env)
        try:
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        self.assertEqual(rc, -signal.SIGSYS, d.log_text()[-2000:])
        self.assertIn("op=exec path=/bin/true", d.log_text())
        self.assertNotIn("op=exec path=/bin/true error", d.log_text())
        harness.wait_port_free(d.host, d.port)

    def test_without_seccomp_landlock_still_refuses_execve(self):
        d = self.daemon({"security": {"seccomp": False}},
                        testhooks={"RINGMAIL_TESTHOOK_EXEC": "/bin/true"}).start()
        self.assertTrue(wait_for(lambda: "op=exec path=/bin/true error" in d.log_text()),
                        d.log_text()[-2000:])
        self.assertIn("op=exec path=/bin/true error=EACCES", d.log_text())
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.stop(), 0)

    @unittest.skipIf(shutil.which("mkpasswd") is None, "mkpasswd (package whois) is missing")
    def test_sighup_rereads_certificate_and_users_after_the_drop(self):
        # Secrets as an installation keeps them: a root-owned directory the
        # ringmail group may read, files 0640 root:ringmail.
        etc = os.path.join(self.tmp, "etc")
        os.mkdir(etc)
        os.chown(etc, 0, self.user.pw_gid)
        os.chmod(etc, 0o750)
        os.chown(self.tmp, 0, self.user.pw_gid)
        os.chmod(self.tmp, 0o750)
        cert_a, key_a = make_cert(etc, "a", "before.test", self.user)
        cert_b, key_b = make_cert(etc, "b", "after.test", self.user)
        users = os.path.join(etc, "users")
        write_secret(users, "alice:%s\n" % sha512_crypt("alice pw"), self.user)
        host, port = low_port_address()
        d = self.daemon({"tls": {"cert_file": cert_a, "key_file": key_a},
                         "users": {"file": users}}, host=host, port=port).start()
        self.assertEqual(status_ids(d.proc.pid)["Uid"], [str(self.user.pw_uid)] * 4)
        self.assertEqual(peer_cert_der(host, port), cert_der(cert_a))
        self.assertTrue(login_works(host, port, "alice", "alice pw"))
        self.assertFalse(login_works(host, port, "bob", "bob pw"))

        # The certificate's files replaced under the same names, bob added.
        for src, dst in ((cert_b, cert_a), (key_b, key_a)):
            shutil.copy(src, dst + ".new")
            os.chown(dst + ".new", 0, self.user.pw_gid)
            os.chmod(dst + ".new", 0o640 if dst == key_a else 0o644)
            os.rename(dst + ".new", dst)
        write_secret(users, "alice:%s\nbob:%s\n" % (sha512_crypt("alice pw"),
                                                    sha512_crypt("bob pw")), self.user)
        d.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "event=reload result=ok" in d.log_text()),
                        d.log_text()[-2000:])
        self.assertTrue(wait_for(lambda: peer_cert_der(host, port) == cert_der(cert_b)),
                        d.log_text()[-2000:])
        self.assertTrue(login_works(host, port, "bob", "bob pw"))
        self.assertTrue(login_works(host, port, "alice", "alice pw"))
        self.assertEqual(d.stop(), 0, d.log_text()[-2000:])


if __name__ == "__main__":
    unittest.main()
