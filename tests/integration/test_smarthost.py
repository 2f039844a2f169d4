#!/usr/bin/python3
"""test_smarthost - relaying through an authenticating next hop (issue 17).

The relay under test ("relay") hands every message to a next hop:

- a second ringmaild ("upstream") with a submission listener (STARTTLS,
  AUTH required before MAIL) and an implicit-TLS listener (smtps, no relay
  without AUTH: its relay_networks is empty), which passes what it
  accepts on to an aiosmtpd receiver;
- a fake hop that offers AUTH but no STARTTLS and records every byte it
  receives, to prove the credentials never go out in clear;
- the aiosmtpd receiver directly, by a bare-IP relayhost and a bare-IP
  route;
- a relayhost that does not resolve (dnsmasq answers NXDOMAIN);
- sender routes (delivery.sender_routes) that choose between two receivers.

Certificates are made with openssl, the upstream's users file with
ringmailctl, the auth file is written mode 0600. Every process is stopped
by PID; the daemons must exit 0 without sanitizer reports. No timing
asserts: waits poll the logs and the receivers.
"""
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from inbound_common import DaemonTestCase, send_smtplib, wait_for  # noqa: E402
from test_starttls import make_cert  # noqa: E402

USER, PASSWORD = "alice", "alice-pw-42"
RINGMAILD = os.path.join(harness.BIN, "ringmaild")


def message(subject):
    return ("From: app@src.test\r\nTo: bob@dest.test\r\nSubject: %s\r\n\r\nhello %s\r\n"
            % (subject, subject)).encode()


class NoTLSHop(mailnet.LineServer):
    """NoTLSHop - an SMTP server that offers AUTH PLAIN LOGIN but not
    STARTTLS, answers 250 to everything and keeps every byte it got."""

    def __init__(self, ip, port):
        self.received = bytearray()
        super().__init__(ip, port, backlog=16)

    def serve(self, c):
        c.sendall(b"220 notls.test ESMTP\r\n")
        for line in self.lines(c):
            with self.lock:
                self.received += line + b"\r\n"
            verb = line[:4].upper()
            if verb == b"EHLO":
                c.sendall(b"250-notls.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
                c.close()
                return
            else:
                c.sendall(b"250 ok\r\n")

    def bytes(self):
        with self.lock:
            return bytes(self.received)


POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"

POSTFIX_MASTER_CF = """\
{sub}       inet  n       -       n       -       -       smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
{smtps}     inet  n       -       n       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       n       60      1       pickup
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def children_of(pid):
    """children_of - PIDs whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return out


class DovecotAuth:
    """DovecotAuth - Dovecot with no mail protocols, only its auth service
    on a loopback TCP port for Postfix's SASL (smtpd_sasl_type = dovecot);
    users in a passwd-file. Runs in the foreground, stopped by PID."""

    def __init__(self, tmp, users):
        self.dir = os.path.join(tmp, "dovecot")
        os.makedirs(os.path.join(self.dir, "run"))
        os.makedirs(os.path.join(self.dir, "state"))
        self.port = harness.free_port()
        passwd = os.path.join(self.dir, "users")
        with open(passwd, "w") as f:
            for user, password in users.items():
                f.write("%s:{PLAIN}%s\n" % (user, password))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write("base_dir = %s/run\nstate_dir = %s/state\nlog_path = %s/dovecot.log\n"
                    "protocols =\nssl = no\ndisable_plaintext_auth = no\n"
                    "auth_mechanisms = plain login\n"
                    "passdb {\n  driver = passwd-file\n  args = %s\n}\n"
                    "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=%s\n}\n"
                    "service auth {\n  inet_listener {\n    address = 127.0.0.1\n    port = %d\n  }\n}\n"
                    % (self.dir, self.dir, self.dir, passwd, self.dir, self.port))
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.dir, "stdout"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        harness.wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.out.close()
            self.proc = None


class PostfixUpstream:
    """PostfixUpstream - a private Postfix with a submission service (STARTTLS
    required, then SASL through Dovecot) and an smtps service (implicit TLS),
    relaying only for authenticated clients, to relayhost final_port.
    Stopped with "postfix stop", then by PID if anything is left."""

    def __init__(self, tmp, cert, key, sasl_port, final_port):
        self.dir = os.path.join(tmp, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        for d in (tmp, self.dir):
            os.chmod(d, 0o755)
        self.sub_port, self.smtps_port = harness.free_port(), harness.free_port()
        self.maillog = os.path.join(self.dir, "maillog")
        main = {
            "compatibility_level": "3.6", "queue_directory": self.queue,
            "data_directory": self.data, "mail_owner": "postfix", "setgid_group": "postdrop",
            "myhostname": "postfix.upstream.test", "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4", "mydestination": "", "local_recipient_maps": "",
            "relay_domains": "", "mynetworks": "192.0.2.1/32",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_sasl_type": "dovecot", "smtpd_sasl_path": "inet:127.0.0.1:%d" % sasl_port,
            "smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
            "smtpd_tls_loglevel": "1", "smtpd_sasl_authenticated_header": "yes",
            "relayhost": "[127.0.0.1]:%d" % final_port, "smtp_tls_security_level": "none",
            "alias_maps": "", "alias_database": "", "smtpd_peername_lookup": "no",
            "biff": "no", "append_dot_mydomain": "no", "smtputf8_enable": "no",
            "minimal_backoff_time": "1s", "maximal_backoff_time": "2s", "queue_run_delay": "1s",
            "maillog_file": self.maillog, "maillog_file_prefixes": self.dir,
            "notify_classes": "",
        }
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(sub="127.0.0.1:%d" % self.sub_port,
                                             smtps="127.0.0.1:%d" % self.smtps_port))
        self.master = None
        self.known = set()
        self.started = False

    def postfix(self, *args):
        p = subprocess.run([POSTFIX, "-c", self.etc] + list(args), capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("postfix %s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))

    def start(self):
        self.postfix("check")
        self.started = True
        self.postfix("start")
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 20
        while self.master is None and time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    self.master = int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.05)
        if self.master is None:
            raise RuntimeError("postfix did not start")
        self.known.add(self.master)
        harness.wait_port("127.0.0.1", self.sub_port)
        harness.wait_port("127.0.0.1", self.smtps_port)
        return self

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if not self.started:
            return
        if self.master is not None:
            self.known.update(children_of(self.master))
        try:
            self.postfix("stop")
        except RuntimeError:
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(os.path.exists("/proc/%d" % p)
                                                  for p in self.known):
            time.sleep(0.1)
        for p in self.known:
            if os.path.exists("/proc/%d" % p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.started = False


class Smarthost(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="ringmail-smarthost-")
        cls.cert, cls.key = make_cert(cls.certs, "up", "upstream.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.receivers = []
        self.servers = []

    def tearDown(self):
        for r in self.receivers:
            r.stop()
        for s in reversed(self.servers):
            s.stop()
        super().tearDown()

    # --- helpers ----------------------------------------------------------

    def receiver(self):
        r = mailnet.Receiver("127.0.0.1", harness.free_port()).start()
        self.receivers.append(r)
        return r

    def upstream(self, final):
        """upstream - a ringmaild with submission (587-like) and smtps
        (465-like) listeners that relays to final only for AUTH clients."""
        users = os.path.join(self.tmp, "upstream-users")
        r = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "users", "add",
                            "--file", users, USER], input=PASSWORD + "\n",
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.sub_port = harness.free_port()
        self.smtps_port = harness.free_port()
        up = self.daemon(extra={
            "tls": {"cert_file": self.cert, "key_file": self.key},
            "users": {"file": users},
            "relay_networks": [],
            "submission": {"listen": ["127.0.0.1:%d" % self.sub_port]},
            "smtps": {"listen": ["127.0.0.1:%d" % self.smtps_port]},
            "delivery": {"relayhost": "[127.0.0.1]:%d" % final.port, "min_backoff": "1s",
                         "max_backoff": "2s"},
        })
        harness.wait_port("127.0.0.1", self.sub_port)
        harness.wait_port("127.0.0.1", self.smtps_port)
        return up

    def auth_file(self, lines, mode=0o600):
        path = os.path.join(self.tmp, "auth-%d" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write("# next hop credentials\n" + "".join(x + "\n" for x in lines))
        os.chmod(path, mode)
        return path

    def relay(self, delivery, extra=None):
        settings = {"delivery": dict({"min_backoff": "1h", "max_backoff": "2h"}, **delivery)}
        settings.update(extra or {})
        return self.daemon(extra=settings)

    def wait_delivery(self, d, qid, status):
        """wait_delivery - the first delivery line of qid, which must have status."""
        want = "event=delivery id=%s " % qid
        lines = wait_for(lambda: [x for x in d.log_text().splitlines() if want in x], timeout=60)
        self.assertTrue(lines, "no delivery line for %s\n%s" % (qid, d.log_text()[-3000:]))
        self.assertIn("status=%s " % status, lines[0], lines[0])
        return lines[0]

    def wait_received(self, receiver, subject):
        got = wait_for(lambda: [m for m in receiver.handler.snapshot()
                                if ("Subject: %s" % subject).encode() in m.content], timeout=60)
        self.assertTrue(got, "%s never reached the receiver" % subject)
        return got[0]

    # --- through a second ringmaild, with AUTH -------------------------------

    def test_587_starttls_auth_through_ringmaild(self):
        final = self.receiver()
        up = self.upstream(final)
        hop = "127.0.0.1:%d" % self.sub_port          # a bare IP: never looked up
        relay = self.relay({"relayhost": hop,
                            "auth_file": self.auth_file(["%s %s:%s" % (hop, USER, PASSWORD)])})
        qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("via 587"))
        line = self.wait_delivery(relay, qid, "delivered")
        self.assertIn("tls=TLSv1.2", line)
        got = self.wait_received(final, "via 587")
        self.assertEqual(got.rcpts, ["bob@dest.test"])
        self.assertTrue([x for x in up.log_text().splitlines()
                         if "event=auth " in x and 'user="%s"' % USER in x and "result=ok" in x],
                        "the upstream saw no AUTH\n%s" % up.log_text()[-2000:])
        self.assertIn("event=delivery_auth", relay.log_text())
        for d in (relay, up):
            self.assertNotIn(PASSWORD, d.log_text())
        self.finish(relay)
        self.finish(up)

    def test_465_implicit_tls_auth_through_ringmaild(self):
        final = self.receiver()
        up = self.upstream(final)
        hop = "[127.0.0.1]:%d" % self.smtps_port
        relay = self.relay({"relayhost": hop, "tls": "implicit",
                            "auth_file": self.auth_file(["%s %s:%s" % (hop, USER, PASSWORD)])})
        qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("via 465"))
        line = self.wait_delivery(relay, qid, "delivered")
        self.assertIn("tls=TLSv1.2", line)
        self.wait_received(final, "via 465")
        up_log = up.log_text()
        self.assertIn("implicit=1", up_log)
        self.assertTrue([x for x in up_log.splitlines()
                         if "event=auth " in x and 'user="%s"' % USER in x and "result=ok" in x],
                        "the upstream saw no AUTH on its smtps listener\n%s" % up_log[-2000:])
        self.assertNotIn(PASSWORD, relay.log_text())
        self.finish(relay)
        self.finish(up)

    def test_wrong_password_defers_not_bounces(self):
        final = self.receiver()
        up = self.upstream(final)
        hop = "[127.0.0.1]:%d" % self.sub_port
        relay = self.relay({"relayhost": hop,
                            "auth_file": self.auth_file(["%s %s:%s" % (hop, USER, "wrong-pw")])})
        qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("wrong pw"))
        line = self.wait_delivery(relay, qid, "deferred")
        self.assertIn("dsn=4.7.0", line)
        self.assertIn("535", line)
        log = relay.log_text()
        loud = [x for x in log.splitlines() if "event=delivery_auth" in x and "level=error" in x]
        self.assertEqual(len(loud), 1, "want one loud line per hop:\n%s" % "\n".join(loud))
        self.assertNotIn("wrong-pw", log)
        self.assertNotIn("status=bounced", log)
        self.assertEqual(final.handler.snapshot(), [])
        self.finish(relay)
        self.finish(up)

    # --- through Postfix with Dovecot SASL -----------------------------------

    def postfix_upstream(self, final):
        dovecot = DovecotAuth(self.tmp, {USER: PASSWORD}).start()
        self.servers.append(dovecot)
        pf = PostfixUpstream(self.tmp, self.cert, self.key, dovecot.port, final.port)
        self.servers.append(pf)
        return pf.start()

    def postfix_case(self, port_attr, tls, subject, password=PASSWORD):
        final = self.receiver()
        pf = self.postfix_upstream(final)
        hop = "[127.0.0.1]:%d" % getattr(pf, port_attr)
        delivery = {"relayhost": hop,
                    "auth_file": self.auth_file(["%s %s:%s" % (hop, USER, password)])}
        if tls:
            delivery["tls"] = tls
        relay = self.relay(delivery)
        qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message(subject))
        return final, pf, relay, qid

    def test_587_starttls_auth_through_postfix(self):
        final, pf, relay, qid = self.postfix_case("sub_port", None, "postfix 587")
        line = self.wait_delivery(relay, qid, "delivered")
        self.assertIn("tls=TLSv1.2", line)
        self.wait_received(final, "postfix 587")
        self.assertIn("sasl_method=PLAIN, sasl_username=%s" % USER, pf.log_text())
        self.finish(relay)

    def test_465_implicit_tls_auth_through_postfix(self):
        final, pf, relay, qid = self.postfix_case("smtps_port", "implicit", "postfix 465")
        self.wait_delivery(relay, qid, "delivered")
        self.wait_received(final, "postfix 465")
        self.assertIn("sasl_username=%s" % USER, pf.log_text())
        self.finish(relay)

    def test_wrong_password_through_postfix_defers(self):
        final, pf, relay, qid = self.postfix_case("sub_port", None, "postfix wrong", "nope")
        line = self.wait_delivery(relay, qid, "deferred")
        self.assertIn("535", line)
        self.assertIn("dsn=4.7.0", line)
        self.assertNotIn("status=bounced", relay.log_text())
        self.assertEqual(final.handler.snapshot(), [])
        self.finish(relay)

    # --- a hop without STARTTLS never sees the credentials -------------------

    def test_hop_without_starttls_never_gets_credentials(self):
        port = harness.free_port()
        hop_server = NoTLSHop("127.0.0.1", port)
        self.servers.append(hop_server)
        hop = "[127.0.0.1]:%d" % port
        relay = self.relay({"relayhost": hop,
                            "auth_file": self.auth_file(["%s %s:%s" % (hop, USER, PASSWORD)])})
        qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("no tls"))
        line = self.wait_delivery(relay, qid, "deferred")
        self.assertIn("dsn=4.7.4", line)
        seen = hop_server.bytes()
        self.assertIn(b"EHLO", seen)
        for secret in (PASSWORD.encode(), b"AUTH",
                       base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()),
                       base64.b64encode(PASSWORD.encode()), base64.b64encode(USER.encode())):
            self.assertNotIn(secret, seen, "credentials sent in clear: %r" % seen)
        self.assertNotIn(b"MAIL FROM", seen)
        self.finish(relay)

    # --- next hops written as IP literals, and one that does not resolve -----

    def test_bare_ip_relayhost_and_route_deliver(self):
        a, b = self.receiver(), self.receiver()
        relay = self.relay({"relayhost": "127.0.0.1:%d" % a.port},
                           {"domains": [{"name": "routed.test", "route": "127.0.0.1:%d" % b.port}],
                            "dns": {"nameservers": ["127.0.0.1:%d" % harness.free_port()],
                                    "timeout": "1s", "tries": 1}})
        q1 = send_smtplib(relay, "app@src.test", ["x@dest.test"], message("bare relayhost"))
        q2 = send_smtplib(relay, "app@src.test", ["y@routed.test"], message("bare route"))
        self.wait_delivery(relay, q1, "delivered")
        self.wait_delivery(relay, q2, "delivered")
        self.assertEqual(self.wait_received(a, "bare relayhost").rcpts, ["x@dest.test"])
        self.assertEqual(self.wait_received(b, "bare route").rcpts, ["y@routed.test"])
        self.finish(relay)

    def test_unresolvable_relayhost_defers(self):
        dns = mailnet.Dnsmasq(self.tmp, ["host-record=known.test,127.0.0.1"]).start()
        try:
            relay = self.relay({"relayhost": "[nowhere.test]:2525"},
                               {"dns": {"nameservers": [dns.ns]}})
            qid = send_smtplib(relay, "app@src.test", ["bob@dest.test"], message("nowhere"))
            line = self.wait_delivery(relay, qid, "deferred")
            self.assertIn("dsn=4.4.4", line)
            relay2 = self.relay({"relayhost": "nowhere.test:2525"},
                                {"dns": {"nameservers": [dns.ns]}})
            qid = send_smtplib(relay2, "app@src.test", ["bob@dest.test"], message("nowhere mx"))
            line = self.wait_delivery(relay2, qid, "deferred")
            self.assertIn("dsn=4.4.4", line)
            for d in (relay, relay2):
                self.assertNotIn("status=bounced", d.log_text())
                self.finish(d)
        finally:
            dns.stop()

    # --- sender routes choose the hop ------------------------------------------

    def test_sender_routes_pick_the_hop(self):
        default, tenant, parent, boss = (self.receiver() for _ in range(4))
        relay = self.relay(
            {"relayhost": "[127.0.0.1]:%d" % default.port,
             "sender_routes": [
                 {"sender": "tenant-a.test", "route": "127.0.0.1:%d" % tenant.port},
                 {"sender": ".tenants.test", "route": "[127.0.0.1]:%d" % parent.port},
                 {"sender": "boss@tenant-a.test", "route": "127.0.0.1:%d" % boss.port}]},
            {"domains": [{"name": ".dest.test", "route": "[127.0.0.1]:%d" % default.port}]})
        cases = (("app@tenant-a.test", tenant, "s tenant"), ("x@eu.tenants.test", parent, "s parent"),
                 ("boss@Tenant-A.test", boss, "s boss"), ("app@other.test", default, "s default"))
        for sender, want, subject in cases:
            qid = send_smtplib(relay, sender, ["bob@sub.dest.test"], message(subject))
            self.wait_delivery(relay, qid, "delivered")
            got = self.wait_received(want, subject)
            self.assertEqual(got.sender.lower(), sender.lower())
        for r in (default, tenant, parent, boss):
            self.assertEqual(len(r.handler.snapshot()), 1,
                             "receiver %d got %d messages" % (r.port, len(r.handler.snapshot())))
        self.finish(relay)

    # --- ringmailctl resolve asks the running daemon ---------------------------

    def ctl_resolve(self, d, *args):
        sock = os.path.join(d.settings["spool"]["dir"], "control.sock")
        return subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "--socket", sock, "resolve"]
                              + list(args), capture_output=True, text=True, timeout=60)

    def test_ringmailctl_resolve_uses_the_running_configuration(self):
        dns = mailnet.Dnsmasq(self.tmp, ["host-record=relay.known.test,127.0.0.77"]).start()
        try:
            relay = self.relay(
                {"relayhost": "[relay.known.test]:2525",
                 "sender_routes": [{"sender": "tenant-a.test", "route": "127.0.0.9:587"}]},
                {"domains": [{"name": ".routed.test", "route": "[127.0.0.8]:26"}],
                 "dns": {"nameservers": [dns.ns]}})
            cases = (
                (["any.where"], "via=relayhost next_hop=[relay.known.test]:2525",
                 "mx 0 relay.known.test port 2525: 127.0.0.77"),
                (["x.routed.test"], "via=route next_hop=[127.0.0.8]:26", "mx 0 [127.0.0.8] port 26: 127.0.0.8"),
                (["any.where", "--sender", "app@tenant-a.test"], "via=sender route next_hop=127.0.0.9:587",
                 "mx 0 [127.0.0.9] port 587: 127.0.0.9"),
            )
            for args, head, row in cases:
                r = self.ctl_resolve(relay, *args)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn(head, r.stdout)
                self.assertIn("nameservers=%s" % dns.ns, r.stdout)
                self.assertIn(row, r.stdout)
            self.finish(relay)
        finally:
            dns.stop()

    def test_resolve_client_gone_before_the_answer(self):
        """A client that leaves while the lookup runs: the answer, when it
        comes, finds no connection and frees the session (the ASan build
        checks that nothing is used after free or leaked)."""
        hole = mailnet.Blackhole()
        try:
            relay = self.relay({"relayhost": "slow.test:25"},
                               {"dns": {"nameservers": [hole.ns], "timeout": "1s", "tries": 1}})
            sock = os.path.join(relay.settings["spool"]["dir"], "control.sock")
            p = subprocess.Popen([os.path.join(harness.BIN, "ringmailctl"), "--socket", sock,
                                  "resolve", "any.where"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_for(lambda: hole.queries > 0, timeout=30)
            p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
            # The resolver gives up after dns.timeout; a second client then
            # gets the temporary failure (nothing cached), after the first
            # answer freed the abandoned session.
            r = self.ctl_resolve(relay, "any.where")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("tempfail", r.stdout + r.stderr)
            self.finish(relay)
        finally:
            hole.stop()

    # --- the configuration check -------------------------------------------

    def check_config(self, settings):
        path = os.path.join(self.tmp, "check-%d.conf" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(harness.render_config(settings))
        return subprocess.run([RINGMAILD, "--check-config", path], capture_output=True,
                              text=True, timeout=60)

    def test_check_config_rejects_bad_next_hops_and_open_auth_files(self):
        base = {"spool": {"dir": os.path.join(self.tmp, "spool-check")}}
        for bad, why in (("10.0.0.256:25", "not an IPv4"), ("relay.test:99999", "bad port"),
                         ("::1:25:x", "brackets"), ("[relay.test", "without ']'")):
            r = self.check_config(dict(base, delivery={"relayhost": bad}))
            self.assertNotEqual(r.returncode, 0, "%s accepted" % bad)
            self.assertIn("delivery.relayhost", r.stderr + r.stdout)
            self.assertIn(why, r.stderr + r.stdout)
        r = self.check_config(dict(base, domains=[{"name": "a.test", "route": "a b"}]))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("domains[].route", r.stderr + r.stdout)
        r = self.check_config(dict(base, delivery={"relayhost": "10.0.0.5:25"}))
        self.assertEqual(r.returncode, 0, r.stderr)
        open_file = self.auth_file(["10.0.0.5:25 u:%s" % PASSWORD], mode=0o644)
        r = self.check_config(dict(base, delivery={"relayhost": "10.0.0.5:25", "auth_file": open_file}))
        self.assertNotEqual(r.returncode, 0, "an auth file others may read was accepted")
        self.assertIn("delivery.auth_file", r.stderr + r.stdout)
        self.assertIn("readable by group or others", r.stderr + r.stdout)
        self.assertNotIn(PASSWORD, r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
