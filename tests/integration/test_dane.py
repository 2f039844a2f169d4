#!/usr/bin/python3
"""test_dane - DANE (RFC 7672) applied to deliveries, end to end, with a
real DNSSEC chain on loopback.

nsd serves two zones on a 127.x address: dane.test, signed in the test
with ldns-keygen and ldns-signzone, and plain.test, unsigned. unbound is
the validating resolver ringmaild asks (dns.nameservers): stub zones to
nsd, dane.test's key as its trust anchor, plain.test insecure. The
receivers are aiosmtpd with STARTTLS and a certificate signed by a test
CA (which ringmaild is not told about: DANE needs no CA bundle).

  good.dane.test      TLSA 3 1 1 of the server key: delivered, tls_policy dane
  ta.dane.test        TLSA 2 0 1 of the CA, the server names the MX host:
                      delivered, tls_policy dane
  mismatch.dane.test  TLSA 3 1 1 of another key: deferred 4.7.5
                      (result-type=certificate-not-trusted), nothing sent,
                      the message stays in the spool
  bogus.dane.test     the TLSA record altered after signing (its RRSIG no
                      longer verifies, unbound answers SERVFAIL): deferred
                      4.7.5 (result-type=dnssec-invalid), never connected
  plain.test          unsigned zone with a mismatching TLSA record: no DANE,
                      delivered under the usual policy (opportunistic)

Every process is stopped by PID; ringmaild must exit 0 without sanitizer
reports.
"""
import os
import re
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from test_outbound_tls import TLSReceiver  # noqa: E402

SECURE = ("good", "ta", "mismatch", "bogus")
DOMAINS = tuple("%s.dane.test" % s for s in SECURE) + ("plain.test",)


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.decode()[-2000:]))
    return p.stdout.decode()


def openssl(*args, cwd):
    return run(["openssl"] + list(args), cwd)


def make_pki(d, names):
    """make_pki - a CA, a server certificate naming every MX host signed by
    it, and an unrelated key (for the mismatching record)."""
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ringmail DANE test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + names[0], cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                % ",".join("DNS:" + n for n in names))
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2",
            "-subj", "/CN=other", cwd=d)
    with open(os.path.join(d, "chain.pem"), "w") as out:
        for name in ("server.pem", "ca.pem"):
            with open(os.path.join(d, name)) as f:
                out.write(f.read())


def digest(d, pem, selector):
    """digest - the SHA-256 of a certificate (selector 0) or its SPKI (1), hex."""
    cmd = ("openssl x509 -in %s -outform DER" % pem if selector == 0 else
           "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform DER" % pem)
    out = subprocess.run(cmd + " | openssl dgst -sha256 -hex", shell=True, cwd=d, check=True,
                         stdout=subprocess.PIPE, timeout=30).stdout.decode()
    return out.split("= ")[-1].strip()


class Nsd:
    """Nsd - nsd serving zone files from d on ip:port."""

    def __init__(self, d, ip, zones):
        self.d, self.ip = d, ip
        self.port = harness.free_port(ip)
        self.conf = os.path.join(d, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("server:\n  ip-address: %s@%d\n  username: \"\"\n  chroot: \"\"\n"
                    "  zonesdir: \"%s\"\n  database: \"\"\n  pidfile: \"%s/nsd.pid\"\n"
                    "  logfile: \"%s/nsd.log\"\n  xfrdfile: \"%s/xfrd.state\"\n"
                    "  zonelistfile: \"%s/zone.list\"\n  xfrdir: \"%s\"\n  server-count: 1\n"
                    "  verbosity: 1\n  hide-version: yes\n"
                    "remote-control:\n  control-enable: no\n"
                    % (ip, self.port, d, d, d, d, d, d))
            for name, path in zones:
                f.write("zone:\n  name: \"%s\"\n  zonefile: \"%s\"\n" % (name, path))
        self.proc = None

    def start(self):
        self.err = os.path.join(self.d, "nsd.err")
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(["nsd", "-d", "-c", self.conf], stdout=subprocess.DEVNULL,
                                         stderr=err)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Unbound:
    """Unbound - a validating resolver on ip:port with stub zones to nsd
    and dane.test's key as trust anchor."""

    def __init__(self, d, ip, nsd, anchor_file):
        self.ip = ip
        self.port = harness.free_port(ip)
        self.ns = "%s:%d" % (ip, self.port)
        self.conf = os.path.join(d, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write("server:\n  interface: %s@%d\n  port: %d\n  username: \"\"\n  chroot: \"\"\n"
                    "  directory: \"%s\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n"
                    "  verbosity: 1\n  val-log-level: 2\n  do-not-query-localhost: no\n"
                    "  access-control: 127.0.0.0/8 allow\n  module-config: \"validator iterator\"\n"
                    "  trust-anchor-file: \"%s\"\n  domain-insecure: \"plain.test\"\n"
                    "  qname-minimisation: no\n  aggressive-nsec: no\n  prefetch: no\n  local-zone: \"test.\" nodefault\n"
                    "  num-threads: 1\n  so-reuseport: no\n  harden-dnssec-stripped: yes\n"
                    "  remote-control:\n    control-enable: no\n"
                    % (ip, self.port, self.port, d, anchor_file))
            for zone in ("dane.test", "plain.test"):
                f.write("stub-zone:\n  name: \"%s\"\n  stub-addr: %s@%d\n" % (zone, nsd.ip, nsd.port))
        self.proc = None

    def start(self):
        self.err = self.conf + ".err"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(["unbound", "-d", "-c", self.conf], stdout=subprocess.DEVNULL,
                                         stderr=err)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def tail(path):
    try:
        with open(path) as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def dig(ns, name, qtype):
    """dig - (rcode, ad) of a query to ns ("ip:port") with DO set, by
    ldns's drill."""
    ip, port = ns.rsplit(":", 1)
    p = subprocess.run(["drill", "-D", "-p", port, "@" + ip, name, qtype],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    text = p.stdout.decode()
    m = re.search(r"rcode: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*)", text)
    return (m.group(1) if m else "?"), bool(flags and " ad" in " " + flags.group(1))


class DANE(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.net = mailnet.Addresses(len(DOMAINS) + 2)
        self.mx_ip = dict(zip(DOMAINS, self.net.ips))
        dns_ip, resolver_ip = self.net.ips[len(DOMAINS)], self.net.ips[len(DOMAINS) + 1]
        pki = os.path.join(self.tmp, "pki")
        make_pki(pki, ["mx." + d for d in DOMAINS])
        self.pki = pki
        port = self.net.port
        spki = digest(pki, "server.pem", 1)
        ca_cert = digest(pki, "ca.pem", 0)
        other = digest(pki, "other.pem", 1)
        zd = os.path.join(self.tmp, "zones")
        os.makedirs(zd)
        secure = ["$ORIGIN dane.test.", "$TTL 60",
                  "@ IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 60",
                  "@ IN NS ns.dane.test.", "ns IN A %s" % dns_ip]
        tlsa = {"good": "3 1 1 " + spki, "ta": "2 0 1 " + ca_cert, "mismatch": "3 1 1 " + other,
                "bogus": "3 1 1 " + spki}
        for s in SECURE:
            secure += ["%s IN MX 10 mx.%s" % (s, s), "mx.%s IN A %s" % (s, self.mx_ip[s + ".dane.test"]),
                       "_%d._tcp.mx.%s IN TLSA %s" % (port, s, tlsa[s])]
        with open(os.path.join(zd, "dane.test.zone"), "w") as f:
            f.write("\n".join(secure) + "\n")
        key = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "dane.test"], zd).strip()
        run(["ldns-signzone", "-n", "dane.test.zone", key], zd)
        # The bogus host: its TLSA data changed after signing, so the
        # RRSIG over it no longer verifies.
        signed = os.path.join(zd, "dane.test.zone.signed")
        with open(signed) as f:
            text = f.read()
        owner = "_%d._tcp.mx.bogus.dane.test." % port
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(owner) and "\tTLSA\t" in line:
                lines[i] = line[:-1] + ("0" if line[-1] != "0" else "1")
                break
        else:
            self.fail("no TLSA line for %s in the signed zone" % owner)
        with open(signed, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(zd, "plain.test.zone"), "w") as f:
            f.write("$ORIGIN plain.test.\n$TTL 60\n"
                    "@ IN SOA ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 60\n"
                    "@ IN NS ns.plain.test.\nns IN A %s\n@ IN MX 10 mx\nmx IN A %s\n"
                    "_%d._tcp.mx IN TLSA 3 1 1 %s\n" % (dns_ip, self.mx_ip["plain.test"], port, other))
        self.nsd = self.started(Nsd(zd, dns_ip, [("dane.test", signed),
                                                  ("plain.test", os.path.join(zd, "plain.test.zone"))]))
        self.unbound = self.started(Unbound(zd, resolver_ip, self.nsd, os.path.join(zd, key + ".key")))
        # Up and validating: the good MX answer comes with AD.
        got = mailnet.wait_until(lambda: dig(self.unbound.ns, "good.dane.test", "MX") == ("NOERROR", True),
                                 20, 0.2)
        if not got:
            self.fail("unbound does not validate dane.test: %r; nsd: %s; unbound: %s"
                      % (dig(self.unbound.ns, "good.dane.test", "MX"),
                         tail(self.nsd.err) + tail(os.path.join(self.nsd.d, "nsd.log")),
                         tail(self.unbound.err)))

    def server_ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.pki, "chain.pem"), os.path.join(self.pki, "server.key"))
        return ctx

    def metrics(self, d):
        url = "http://%s/metrics" % d.settings["metrics"]["listen"][0]
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def test_dane_outcomes(self):
        # The DNS the test built, as the resolver sees it.
        self.assertEqual(dig(self.unbound.ns, "_%d._tcp.mx.good.dane.test" % self.net.port, "TLSA"),
                         ("NOERROR", True))
        self.assertEqual(dig(self.unbound.ns, "_%d._tcp.mx.bogus.dane.test" % self.net.port, "TLSA")[0],
                         "SERVFAIL")
        self.assertEqual(dig(self.unbound.ns, "plain.test", "MX"), ("NOERROR", False))

        rcv = {d: self.started(TLSReceiver(self.mx_ip[d], self.net.port, self.server_ctx())) for d in DOMAINS}
        extra = mailnet.relay_settings(self.net.port, self.unbound.ns)
        extra["dane"] = {"enabled": True}
        extra["mta_sts"] = {"enabled": False}
        extra["metrics"] = {"listen": ["127.0.0.1:%d" % harness.free_port("127.0.0.1")]}
        # TLS-RPT counts DANE sessions under policy-type "tlsa" (no report
        # goes out in the test: the period is a day).
        extra["tls_rpt"] = {"enabled": True, "save_interval": "200ms"}
        d = self.relay(extra)
        for domain in DOMAINS:
            rcpt = "bob@" + domain
            msg = mailnet.make_message("%s@client.test" % domain.split(".")[0], "alice@client.test", [rcpt])
            mailnet.submit(d.host, d.port, [("alice@client.test", [rcpt], msg, [], [])], connections=1)

        def by(ls, domain):
            return [x for x in ls if x.get("domain") == domain]

        def done(ls):
            return (all(any(x["status"] == "delivered" for x in by(ls, dom))
                        for dom in ("good.dane.test", "ta.dane.test", "plain.test")) and
                    all(any(x["status"] == "deferred" for x in by(ls, dom))
                        for dom in ("mismatch.dane.test", "bogus.dane.test")))
        t0 = time.monotonic()
        lines = self.wait_log(d, done, 40, "every domain's outcome")
        # Workers publish their counters every so often: wait for all of them.
        wants = [re.compile(r"(?m)^ringmail_dane_lookups_total [4-9]"),
                 re.compile(r"(?m)^ringmail_dane_verified_total [2-9]"),
                 re.compile(r"(?m)^ringmail_dane_failures_total [1-9]"),
                 re.compile(r'(?m)^ringmail_delivery_tls_policy_total\{policy="opportunistic"\} [1-9]')]
        mailnet.wait_until(lambda: all(w.search(m) for m in [self.metrics(d)] for w in wants), 20, 0.2)
        metrics = self.metrics(d)
        spool_rc, spool, spool_err = mailnet.spool_live(d.settings["spool"]["dir"])
        text = self.stop_relay(d)
        self.assertLess(time.monotonic() - t0, 45)

        # TLSA 3 1 1 of the server's key: delivered over TLS, DANE verified.
        for domain in ("good.dane.test", "ta.dane.test"):
            got = by(lines, domain)
            self.assertEqual([x["status"] for x in got], ["delivered"], got)
            self.assertEqual(got[0]["tls_policy"], "dane", got)
            self.assertRegex(got[0]["tls"], r"^TLSv1\.2/", got)
            self.assertEqual(rcv[domain].handler.over_tls, [True])
            self.assertTrue(any("mx=mx.%s " % domain in x for x in mailnet.events(text, "dane_verified")),
                            mailnet.events(text, "dane_verified"))
            tls_line = [x for x in mailnet.events(text, "delivery_tls") if "domain=%s " % domain in x]
            self.assertTrue(tls_line and "policy=dane" in tls_line[0] and "verified=1" in tls_line[0], tls_line)

        # A record of another key: the host is refused, nothing is sent,
        # the mail waits in the queue.
        got = by(lines, "mismatch.dane.test")
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["dsn"], "4.7.5", got)
        self.assertEqual(got[0]["tls_policy"], "dane", got)
        self.assertIn("DANE", got[0]["reply"])
        self.assertIn("result-type=certificate-not-trusted", got[0]["reply"])
        self.assertEqual(rcv["mismatch.dane.test"].handler.snapshot(), [])
        self.assertTrue(any("result_type=certificate-not-trusted" in x
                            for x in mailnet.events(text, "dane_refused")), mailnet.events(text, "dane_refused"))
        self.assertEqual(spool_rc, 0, spool_err)
        self.assertIn("bob@mismatch.dane.test", spool)
        self.assertIn("bob@bogus.dane.test", spool)
        self.assertNotIn("bob@good.dane.test", spool)

        # A bogus TLSA answer in a signed zone: deferred, never connected.
        got = by(lines, "bogus.dane.test")
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["dsn"], "4.7.5", got)
        self.assertIn("result-type=dnssec-invalid", got[0]["reply"])
        self.assertEqual(rcv["bogus.dane.test"].handler.snapshot(), [])
        self.assertEqual(rcv["bogus.dane.test"].handler.over_tls, [])

        # An unsigned zone: its TLSA record means nothing; the usual policy.
        got = by(lines, "plain.test")
        self.assertEqual([x["status"] for x in got], ["delivered"], got)
        self.assertEqual(got[0]["tls_policy"], "opportunistic", got)

        self.assertRegex(metrics, r'(?m)^ringmail_delivery_tls_policy_total\{policy="dane"\} [1-9]')
        self.assertRegex(metrics, r"(?m)^ringmail_dane_lookups_total [4-9]")
        self.assertRegex(metrics, r"(?m)^ringmail_dane_verified_total [2-9]")
        self.assertRegex(metrics, r"(?m)^ringmail_dane_failures_total [1-9]")

        # TLS-RPT (RFC 8460): the sessions under DANE were counted as "tlsa"
        # with the host's records as the policy strings, the refused one
        # with its result type; the unsigned zone as no-policy-found.
        rpt_dir = os.path.join(d.settings["spool"]["dir"], "tlsrpt")
        saved = "".join(open(os.path.join(rpt_dir, f)).read() for f in os.listdir(rpt_dir)
                        if f.endswith(".json"))
        self.assertIn('"tlsa"', saved)
        self.assertRegex(saved, r'"3 1 1 [0-9a-f]{64}"')
        self.assertIn("certificate-not-trusted", saved)
        self.assertIn("no-policy-found", saved)


if __name__ == "__main__":
    unittest.main()
