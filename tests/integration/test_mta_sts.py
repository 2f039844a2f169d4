#!/usr/bin/python3
"""test_mta_sts - MTA-STS (RFC 8461) applied to deliveries, end to end.

A test CA (openssl) signs one certificate naming every MX host and every
mta-sts.DOMAIN of the test; ringmaild gets the CA as delivery.tls_ca_file.
mta_sts_server.py serves the policies over HTTPS on port 443 of a 127.x
address (as root; otherwise on a free port named by mta_sts.https_port);
dnsmasq serves the MX records, the _mta-sts TXT records and the
mta-sts.DOMAIN addresses; the receivers are aiosmtpd with STARTTLS and
that certificate, or without STARTTLS.

  enforce.test     enforce, MX listed, STARTTLS + good certificate: delivered
  wrongmx.test     enforce, its MX not in the policy: deferred 4.7.5, nothing sent
  nostarttls.test  enforce, MX listed, no STARTTLS: deferred 4.7.4
  testing.test     testing, MX not listed, no STARTTLS: delivered, reported
  badcert.test     enforce, MX listed, STARTTLS with a self-signed certificate:
                   deferred 4.7.5, nothing sent
  new id           a new id in the TXT record (checked every
                   mta_sts.recheck_interval) fetches the policy again, while
                   the cached one keeps applying
  restart          the policy cached in SPOOL/mta-sts survives a restart with
                   the HTTPS server gone: enforce.test's MX without STARTTLS
                   is then refused

Every process is stopped by PID; ringmaild must exit 0 without sanitizer
reports. No timing asserts.
"""
import os
import re
import ssl
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from test_outbound_tls import TLSReceiver  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAINS = ("enforce.test", "wrongmx.test", "nostarttls.test", "testing.test", "badcert.test")
POLICIES = {
    "enforce.test": "version: STSv1\nmode: enforce\nmx: mx.enforce.test\nmax_age: 86400\n",
    "wrongmx.test": "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmx: *.other.test\nmax_age: 86400\n",
    "nostarttls.test": "version: STSv1\nmode: enforce\nmx: mx.nostarttls.test\nmax_age: 86400\n",
    "testing.test": "version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n",
    "badcert.test": "version: STSv1\nmode: enforce\nmx: mx.badcert.test\nmax_age: 86400\n",
}


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def make_pki(tmp, names):
    """make_pki - (ca, cert, key): a test CA and one server certificate
    for every name (subjectAltName DNS entries) signed by it."""
    d = os.path.join(tmp, "pki")
    os.makedirs(d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ringmail MTA-STS test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + names[0], cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                % ",".join("DNS:" + n for n in names))
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    # A self-signed certificate that names the host but chains to nothing.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "self.key", "-out", "self.pem", "-days", "2",
            "-subj", "/CN=mx.badcert.test", "-addext", "subjectAltName=DNS:mx.badcert.test", cwd=d)
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


class PolicyServer:
    """PolicyServer - mta_sts_server.py on ip:port, serving policy_dir."""

    def __init__(self, cert, key, ip, port, policy_dir):
        self.cmd = ["/usr/bin/python3", os.path.join(HERE, "mta_sts_server.py"), cert, key, ip,
                    policy_dir, str(port)]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("mta_sts_server did not start: %s" % self.proc.stderr.read(2000))
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class MTASTS(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        names = ["mx.%s" % d for d in DOMAINS] + ["mta-sts.%s" % d for d in DOMAINS]
        self.ca, self.cert, self.key = make_pki(self.tmp, names)
        # One address per MX host (they share a port), one for HTTPS.
        self.net = mailnet.Addresses(len(DOMAINS) + 1)
        self.mx_ip = dict(zip(DOMAINS, self.net.ips))
        self.web_ip = self.net.ips[len(DOMAINS)]
        self.https_port = 443 if os.geteuid() == 0 else harness.free_port(self.web_ip)
        self.policy_dir = os.path.join(self.tmp, "policies")
        os.makedirs(self.policy_dir)
        for domain, text in POLICIES.items():
            with open(os.path.join(self.policy_dir, "mta-sts." + domain), "w") as f:
                f.write(text)
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, self.zone("20261205a")))
        self.web = self.started(PolicyServer(self.cert, self.key, self.web_ip, self.https_port,
                                             self.policy_dir))

    def zone(self, sts_id):
        zone = []
        for domain in DOMAINS:
            zone += mailnet.mx_zone(domain, [(10, "mx." + domain, self.mx_ip[domain])])
            zone.append("txt-record=_mta-sts.%s,v=STSv1; id=%s" % (domain, sts_id))
            zone.append("host-record=mta-sts.%s,%s" % (domain, self.web_ip))
        return zone

    def server_ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def settings(self):
        extra = mailnet.relay_settings(self.net.port, self.dns.ns, tls_ca_file=self.ca)
        extra["mta_sts"] = {"https_port": self.https_port, "fetch_timeout": "5s"}
        extra["metrics"] = {"listen": ["127.0.0.1:%d" % harness.free_port("127.0.0.1")]}
        return extra

    def send(self, d, domain, tag):
        rcpt = "bob@" + domain
        msg = mailnet.make_message("%s@client.test" % tag, "alice@client.test", [rcpt])
        mailnet.submit(d.host, d.port, [("alice@client.test", [rcpt], msg, [], [])], connections=1)

    def lines_for(self, lines, domain):
        return [x for x in lines if x.get("domain") == domain]

    def metrics(self, d):
        url = "http://%s/metrics" % d.settings["metrics"]["listen"][0]
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def test_enforce_testing_and_refusals(self):
        tls_enforce = self.started(TLSReceiver(self.mx_ip["enforce.test"], self.net.port, self.server_ctx()))
        tls_wrong = self.started(TLSReceiver(self.mx_ip["wrongmx.test"], self.net.port, self.server_ctx()))
        plain_nostarttls = self.started(mailnet.Receiver(self.mx_ip["nostarttls.test"], self.net.port))
        plain_testing = self.started(mailnet.Receiver(self.mx_ip["testing.test"], self.net.port))
        self_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = os.path.dirname(self.ca)
        self_ctx.load_cert_chain(os.path.join(pki, "self.pem"), os.path.join(pki, "self.key"))
        tls_badcert = self.started(TLSReceiver(self.mx_ip["badcert.test"], self.net.port, self_ctx))
        d = self.relay(self.settings())
        for domain in DOMAINS:
            self.send(d, domain, domain.split(".")[0])

        def done(ls):
            by = {dom: self.lines_for(ls, dom) for dom in DOMAINS}
            return (any(x["status"] == "delivered" for x in by["enforce.test"]) and
                    any(x["status"] == "delivered" for x in by["testing.test"]) and
                    any(x["status"] == "deferred" for x in by["wrongmx.test"]) and
                    any(x["status"] == "deferred" for x in by["badcert.test"]) and
                    any(x["status"] == "deferred" for x in by["nostarttls.test"]))
        lines = self.wait_log(d, done, 90, "every domain's outcome")
        # Workers publish their counters every so often: wait for them.
        want = re.compile(r'(?m)^ringmail_delivery_tls_policy_total\{policy="mta-sts-testing"\} 1$')
        mailnet.wait_until(lambda: want.search(self.metrics(d)), 30, 0.2)
        metrics = self.metrics(d)
        text = self.stop_relay(d)

        # enforce + listed MX + verified certificate: delivered over TLS.
        got = self.lines_for(lines, "enforce.test")
        self.assertEqual([x["status"] for x in got], ["delivered"], got)
        self.assertEqual(got[0]["tls_policy"], "mta-sts", got)
        self.assertRegex(got[0]["tls"], r"^TLSv1\.2/", got)
        self.assertEqual(len(tls_enforce.handler.snapshot()), 1)
        self.assertEqual(tls_enforce.handler.over_tls, [True])
        tls_line = [x for x in mailnet.events(text, "delivery_tls") if "domain=enforce.test" in x]
        self.assertTrue(tls_line and "policy=verify" in tls_line[0] and "verified=1" in tls_line[0]
                        and "applied=mta-sts" in tls_line[0], tls_line)

        # enforce, MX not in the policy: deferred with a reason, never connected.
        got = self.lines_for(lines, "wrongmx.test")
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["dsn"], "4.7.5", got)
        self.assertEqual(got[0]["tls_policy"], "mta-sts", got)
        self.assertIn("MTA-STS policy of wrongmx.test (mode enforce", got[0]["reply"])
        self.assertIn("mx.wrongmx.test", got[0]["reply"])
        self.assertEqual(tls_wrong.handler.snapshot(), [])
        self.assertTrue(any("domain=wrongmx.test" in x for x in mailnet.events(text, "mta_sts_refused")))

        # enforce, listed MX without STARTTLS: deferred 4.7.4, nothing sent.
        got = self.lines_for(lines, "nostarttls.test")
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["dsn"], "4.7.4", got)
        self.assertIn("STARTTLS not offered", got[0]["reply"])
        self.assertIn("MTA-STS", got[0]["reply"])
        self.assertEqual(plain_nostarttls.handler.snapshot(), [])

        # enforce, listed MX whose certificate does not verify: 4.7.5.
        got = self.lines_for(lines, "badcert.test")
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["dsn"], "4.7.5", got)
        self.assertIn("TLS failed", got[0]["reply"])
        self.assertIn("MTA-STS", got[0]["reply"])
        self.assertEqual(tls_badcert.handler.snapshot(), [])

        # testing: delivered as configured ("may", in clear here), and what
        # enforce would have refused is logged.
        got = self.lines_for(lines, "testing.test")
        self.assertEqual([x["status"] for x in got], ["delivered"], got)
        self.assertEqual(got[0]["tls_policy"], "mta-sts-testing", got)
        self.assertEqual(len(plain_testing.handler.snapshot()), 1)
        reports = [x for x in mailnet.events(text, "mta_sts_report") if "domain=testing.test" in x]
        self.assertTrue(any("MX host not in the policy" in x for x in reports), reports)
        self.assertTrue(any("STARTTLS not offered" in x for x in reports), reports)

        # One fetch per domain, each stored durably.
        fetches = mailnet.events(text, "mta_sts_fetch")
        for domain in DOMAINS:
            ok = [x for x in fetches if "domain=%s " % domain in x and "result=ok" in x]
            self.assertEqual(len(ok), 1, fetches)
            self.assertIn("stored=yes", ok[0])
            path = os.path.join(d.settings["spool"]["dir"], "mta-sts", domain)
            with open(path) as f:
                self.assertIn("id: 20261205a\n", f.read())
        self.assertRegex(metrics, r'(?m)^ringmail_delivery_tls_policy_total\{policy="mta-sts"\} [1-9]')
        self.assertRegex(metrics, r'(?m)^ringmail_delivery_tls_policy_total\{policy="mta-sts-testing"\} 1$')
        self.assertRegex(metrics, r"(?m)^ringmail_mta_sts_fetches_total 5$")
        self.assertRegex(metrics, r"(?m)^ringmail_mta_sts_refused_total [1-9]")
        self.assertRegex(metrics, r"(?m)^ringmail_mta_sts_testing_reports_total [1-9]")

    def test_new_id_fetches_again(self):
        self.started(TLSReceiver(self.mx_ip["enforce.test"], self.net.port, self.server_ctx()))
        extra = self.settings()
        extra["mta_sts"]["recheck_interval"] = "1s"
        d = self.relay(extra)
        self.send(d, "enforce.test", "one")
        self.wait_log(d, lambda ls: len(ls) == 1 and ls[0]["status"] == "delivered", 60, "a delivery")
        # The domain rotates its policy: testing mode, new id; the same
        # name server port answers with the new TXT record.
        with open(os.path.join(self.policy_dir, "mta-sts.enforce.test"), "w") as f:
            f.write("version: STSv1\nmode: testing\nmx: mx.enforce.test\nmax_age: 3600\n")
        self.dns.stop()
        dns2 = mailnet.Dnsmasq(self.tmp, self.zone("20261205b"))
        dns2.port, dns2.ns = self.dns.port, self.dns.ns
        self.started(dns2)
        mailnet.wait_until(lambda: False, 1.5, 0.5)     # past mta_sts.recheck_interval
        self.send(d, "enforce.test", "two")
        self.wait_log(d, lambda ls: len(ls) == 2, 60, "the second delivery")
        got = mailnet.wait_until(lambda: any("id=20261205b" in x for x in
                                             mailnet.events(d.log_text(), "mta_sts_policy")), 30, 0.1)
        text = self.stop_relay(d)
        self.assertTrue(got, text[-4000:])
        lines = mailnet.deliveries(text)
        self.assertEqual([x["status"] for x in lines], ["delivered", "delivered"], lines)
        # The second went under the policy cached (the check ran behind it)
        # or the new one, never without one.
        self.assertIn(lines[1]["tls_policy"], ("mta-sts", "mta-sts-testing"), lines)
        fetches = [x for x in mailnet.events(text, "mta_sts_fetch") if "result=ok" in x]
        self.assertEqual(len(fetches), 2, fetches)
        self.assertIn("id=20261205b mode=testing max_age=3600", fetches[1])
        with open(os.path.join(d.settings["spool"]["dir"], "mta-sts", "enforce.test")) as f:
            self.assertIn("id: 20261205b\n", f.read())

    def test_cached_policy_survives_restart(self):
        rcv = self.started(TLSReceiver(self.mx_ip["enforce.test"], self.net.port, self.server_ctx()))
        d = self.relay(self.settings())
        self.send(d, "enforce.test", "first")
        self.wait_log(d, lambda ls: any(x["status"] == "delivered" for x in ls), 60, "a delivery")
        text = self.stop_relay(d)
        self.assertEqual(len(mailnet.events(text, "mta_sts_fetch")), 1, text[-3000:])
        rcv.stop()
        # The web server goes away, and the MX host loses its STARTTLS: only
        # the policy cached on disk can refuse the delivery now.
        self.web.stop()
        self.started(mailnet.Receiver(self.mx_ip["enforce.test"], self.net.port))
        offset = os.path.getsize(d.log_path)
        d2 = harness.Ringmaild(workers=2, extra=self.settings(), tmp=d.tmp)
        self.addCleanup(d2.stop)
        d2.start()
        self.send(d2, "enforce.test", "second")

        def after(ls):
            return [x for x in mailnet.deliveries(d2.log_text()[offset:]) if x["status"] == "deferred"]
        got = mailnet.wait_until(lambda: after(None), 60, 0.1)
        text2 = self.stop_relay(d2)[offset:]
        self.assertTrue(got, text2[-4000:])
        lines = mailnet.deliveries(text2)
        self.assertEqual(lines[0]["tls_policy"], "mta-sts", lines)
        self.assertEqual(lines[0]["dsn"], "4.7.4", lines)
        self.assertFalse(any(x["status"] == "delivered" for x in lines), lines)
        self.assertEqual(mailnet.events(text2, "mta_sts_fetch"), [], text2[-3000:])
        self.assertTrue(any("domain=enforce.test" in x and "mode=enforce" in x
                            for x in mailnet.events(text2, "mta_sts_policy")), text2[-3000:])


if __name__ == "__main__":
    unittest.main()
