#!/usr/bin/python3
"""test_requiretls - REQUIRETLS and "TLS-Required: No" (RFC 8689), end to end.

ringmaild takes mail over STARTTLS (smtplib) and delivers it through the
MTA-STS fixture of test_mta_sts (a test CA, dnsmasq with MX, _mta-sts TXT
and mta-sts.DOMAIN records, mta_sts_server.py over HTTPS). Receivers are
aiosmtpd; the REQUIRETLS one advertises the keyword after STARTTLS and
takes the MAIL parameter.

  inbound          REQUIRETLS is offered only after STARTTLS; MAIL FROM
                   ... REQUIRETLS in clear gets 530 5.7.10
  req.test         enforce, verified TLS, server offers REQUIRETLS:
                   delivered, the server sees REQUIRETLS on MAIL FROM
  nort.test        enforce, verified TLS, server without REQUIRETLS:
                   bounced 5.7.30, nothing sent, the DSN reaches the sender
  plain.test       no MTA-STS, plain server: bounced 5.7.10, nothing sent;
                   the DSN is redacted (no part of the original in it)
  nosts.test       no MTA-STS, a server with STARTTLS (certificate of the
                   test CA) and REQUIRETLS: bounced 5.7.10, nothing sent:
                   opportunistic TLS is not authenticated TLS
  optout.test      enforce, self-signed certificate: "TLS-Required: No"
                   delivers (opportunistic, logged); without it deferred
  restart          a REQUIRETLS message deferred (server down) survives a
                   restart and then goes with REQUIRETLS

Every process is stopped by PID; ringmaild must exit 0 without sanitizer
reports. No timing asserts.
"""
import os
import re
import smtplib
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import mailnet  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402
from test_mta_sts import PolicyServer, make_pki, openssl  # noqa: E402
from test_outbound_tls import TLSRecorder, TLSReceiver  # noqa: E402
import harness  # noqa: E402

DOMAINS = ("req.test", "nort.test", "plain.test", "optout.test", "later.test", "senders.test",
           "nosts.test")
POLICIES = {
    "req.test": "version: STSv1\nmode: enforce\nmx: mx.req.test\nmax_age: 86400\n",
    "nort.test": "version: STSv1\nmode: enforce\nmx: mx.nort.test\nmax_age: 86400\n",
    "optout.test": "version: STSv1\nmode: enforce\nmx: mx.optout.test\nmax_age: 86400\n",
    "later.test": "version: STSv1\nmode: enforce\nmx: mx.later.test\nmax_age: 86400\n",
}
SENDER = "alice@senders.test"


class RequireTLSSMTP(SMTP):
    """RequireTLSSMTP - aiosmtpd that takes MAIL FROM ... REQUIRETLS (it
    stays in envelope.mail_options, where the test looks for it)."""

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None:
            result.pop("REQUIRETLS", None)
        return result


class RequireTLSRecorder(TLSRecorder):
    """RequireTLSRecorder - advertises REQUIRETLS, only over TLS."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses


class RequireTLSController(Controller):
    def factory(self):
        return RequireTLSSMTP(self.handler, **self.SMTP_kwargs)


class RequireTLSReceiver(mailnet.Receiver):
    def __init__(self, ip, port, ctx):
        self.handler = RequireTLSRecorder()
        self.controller = RequireTLSController(self.handler, hostname=ip, port=port,
                                               server_hostname="mx.req.test", ready_timeout=10,
                                               tls_context=ctx)
        self.ip, self.port = ip, port


def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RequireTLS(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        names = ["mx.%s" % d for d in DOMAINS] + ["mta-sts.%s" % d for d in POLICIES]
        self.ca, self.cert, self.key = make_pki(self.tmp, names)
        pki = os.path.dirname(self.ca)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", "optout.key", "-out", "optout.pem", "-days", "2",
                "-subj", "/CN=mx.optout.test", "-addext", "subjectAltName=DNS:mx.optout.test",
                cwd=pki)
        self.self_cert = (os.path.join(pki, "optout.pem"), os.path.join(pki, "optout.key"))
        self.net = mailnet.Addresses(len(DOMAINS) + 1)
        self.mx_ip = dict(zip(DOMAINS, self.net.ips))
        self.web_ip = self.net.ips[len(DOMAINS)]
        self.https_port = 443 if os.geteuid() == 0 else harness.free_port(self.web_ip)
        policy_dir = os.path.join(self.tmp, "policies")
        os.makedirs(policy_dir)
        for domain, text in POLICIES.items():
            with open(os.path.join(policy_dir, "mta-sts." + domain), "w") as f:
                f.write(text)
        zone = []
        for domain in DOMAINS:
            zone += mailnet.mx_zone(domain, [(10, "mx." + domain, self.mx_ip[domain])])
            if domain in POLICIES:
                zone.append("txt-record=_mta-sts.%s,v=STSv1; id=20261205r" % domain)
                zone.append("host-record=mta-sts.%s,%s" % (domain, self.web_ip))
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        self.started(PolicyServer(self.cert, self.key, self.web_ip, self.https_port, policy_dir))
        self.dsn = self.started(mailnet.Receiver(self.mx_ip["senders.test"], self.net.port))

    def ctx(self, cert=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*(cert or (self.cert, self.key)))
        return ctx

    def settings(self):
        extra = mailnet.relay_settings(self.net.port, self.dns.ns, tls_ca_file=self.ca)
        extra["mta_sts"] = {"https_port": self.https_port, "fetch_timeout": "5s"}
        extra["tls"] = {"cert_file": self.cert, "key_file": self.key}
        return extra

    def send_tls(self, d, rcpt, tag, requiretls=True, header=b""):
        msg = mailnet.make_message("%s@client.test" % tag, SENDER, [rcpt], subject="secret-" + tag)
        msg = header + msg
        s = smtplib.SMTP(d.host, d.port, timeout=30)
        try:
            s.ehlo("client.test")
            self.assertNotIn("requiretls", s.esmtp_features)
            s.starttls(context=unverified())
            s.ehlo("client.test")
            self.assertIn("requiretls", s.esmtp_features, "REQUIRETLS not offered over TLS")
            s.sendmail(SENDER, [rcpt], msg, ["REQUIRETLS"] if requiretls else [])
        finally:
            s.quit()

    def dsns(self):
        return [m for m in self.dsn.handler.snapshot() if m.sender == "<>"]

    def test_requiretls_delivery_bounces_and_opt_out(self):
        req = self.started(RequireTLSReceiver(self.mx_ip["req.test"], self.net.port, self.ctx()))
        nort = self.started(TLSReceiver(self.mx_ip["nort.test"], self.net.port, self.ctx()))
        plain = self.started(mailnet.Receiver(self.mx_ip["plain.test"], self.net.port))
        nosts = self.started(RequireTLSReceiver(self.mx_ip["nosts.test"], self.net.port, self.ctx()))
        optout = self.started(TLSReceiver(self.mx_ip["optout.test"], self.net.port,
                                          self.ctx(self.self_cert)))
        d = self.relay(self.settings())

        # In clear: not offered, and refused when asked for anyway.
        s = smtplib.SMTP(d.host, d.port, timeout=30)
        s.ehlo("client.test")
        self.assertNotIn("requiretls", s.esmtp_features)
        code, text = s.mail(SENDER, ["REQUIRETLS"])
        self.assertEqual(code, 530, text)
        self.assertTrue(text.startswith(b"5.7.10"), text)
        s.quit()

        self.send_tls(d, "bob@req.test", "req")
        self.send_tls(d, "bob@nort.test", "nort")
        self.send_tls(d, "bob@plain.test", "plain")
        self.send_tls(d, "bob@nosts.test", "nosts")
        self.send_tls(d, "bob@optout.test", "optout", requiretls=False, header=b"TLS-Required: No\r\n")
        self.send_tls(d, "carol@optout.test", "enforced", requiretls=False)

        def done(ls):
            st = {x["rcpt"]: x["status"] for x in ls}
            return (st.get("bob@req.test") == "delivered" and st.get("bob@nort.test") == "bounced" and
                    st.get("bob@plain.test") == "bounced" and st.get("bob@optout.test") == "delivered" and
                    st.get("bob@nosts.test") == "bounced" and
                    st.get("carol@optout.test") == "deferred" and len(self.dsns()) >= 3)
        lines = self.wait_log(d, done, 90, "every outcome and two DSNs")
        text = self.stop_relay(d)
        by = {}
        for x in lines:
            by.setdefault(x["rcpt"], []).append(x)

        # Verified by MTA-STS, REQUIRETLS offered: it goes, with REQUIRETLS.
        got = by["bob@req.test"]
        self.assertEqual([x["status"] for x in got], ["delivered"], got)
        self.assertEqual(got[0]["tls_policy"], "require-tls", got)
        self.assertRegex(got[0]["tls"], r"^TLSv1\.2/", got)
        msgs = req.handler.snapshot()
        self.assertEqual(len(msgs), 1)
        self.assertIn("REQUIRETLS", msgs[0].mail_options)
        self.assertEqual(req.handler.over_tls, [True])

        # Verified TLS, but no REQUIRETLS at the server: 5.7.30, nothing sent.
        got = by["bob@nort.test"]
        self.assertEqual([(x["status"], x["dsn"]) for x in got], [("bounced", "5.7.30")], got)
        self.assertEqual(got[0]["tls_policy"], "require-tls", got)
        self.assertEqual(nort.handler.snapshot(), [])

        # No MTA-STS: the TLS is not authenticated: 5.7.10, nothing sent.
        got = by["bob@plain.test"]
        self.assertEqual([(x["status"], x["dsn"]) for x in got], [("bounced", "5.7.10")], got)
        self.assertIn("REQUIRETLS: no TLS to the server", got[0]["reply"])
        self.assertEqual(plain.handler.snapshot(), [])
        self.assertTrue(any("domain=plain.test" in x for x in mailnet.events(text, "requiretls_refused")))

        # Opportunistic TLS to a REQUIRETLS server is not enough.
        got = by["bob@nosts.test"]
        self.assertEqual([(x["status"], x["dsn"]) for x in got], [("bounced", "5.7.10")], got)
        self.assertIn("not authenticated by MTA-STS or DANE", got[0]["reply"])
        self.assertRegex(got[0]["tls"], r"^TLSv1\.2/", got)
        self.assertEqual(nosts.handler.snapshot(), [])

        # The DSNs: to the sender, the status given, redacted (RFC 8689 5).
        statuses = []
        for m in self.dsns():
            status = re.search(rb"(?m)^Status: (\S+)", m.content)
            statuses.append(status.group(1).decode() if status else "?")
        self.assertEqual(sorted(statuses), ["5.7.10", "5.7.10", "5.7.30"],
                         [m.content[:400] for m in self.dsns()])
        for m in self.dsns():
            self.assertEqual(m.rcpts, [SENDER])
            self.assertNotIn(b"secret-", m.content, "the original is in a REQUIRETLS DSN")
            self.assertNotIn(b"Undelivered Message", m.content)
            self.assertNotIn("REQUIRETLS", m.mail_options)

        # TLS-Required: No: the self-signed certificate does not stop it.
        got = by["bob@optout.test"]
        self.assertEqual([x["status"] for x in got], ["delivered"], got)
        self.assertEqual(got[0]["tls_policy"], "opportunistic", got)
        self.assertTrue(any("rcpt=<bob@optout.test>" in x and "tls_policy=opportunistic" in x
                            for x in mailnet.events(text, "tls_required_no")))
        self.assertEqual(len(optout.handler.snapshot()), 1)
        self.assertIn(b"secret-optout", optout.handler.snapshot()[0].content)
        # Without the header the domain's policy holds: deferred 4.7.5.
        got = by["carol@optout.test"]
        self.assertTrue(got and all(x["status"] == "deferred" for x in got), got)
        self.assertEqual(got[0]["tls_policy"], "mta-sts", got)
        self.assertEqual(got[0]["dsn"], "4.7.5", got)

    def test_requiretls_survives_restart(self):
        d = self.relay(self.settings())
        self.send_tls(d, "bob@later.test", "later")
        # Nobody listens at mx.later.test yet: deferred.
        self.wait_log(d, lambda ls: any(x["rcpt"] == "bob@later.test" and x["status"] == "deferred"
                                        for x in ls), 60, "a deferral")
        self.stop_relay(d)
        later = self.started(RequireTLSReceiver(self.mx_ip["later.test"], self.net.port, self.ctx()))
        d.start()
        lines = self.wait_log(d, lambda ls: any(x["rcpt"] == "bob@later.test" and x["status"] == "delivered"
                                                for x in ls), 90, "the delivery after the restart")
        self.stop_relay(d)
        got = [x for x in lines if x["rcpt"] == "bob@later.test" and x["status"] == "delivered"]
        self.assertEqual(got[0]["tls_policy"], "require-tls", got)
        msgs = later.handler.snapshot()
        self.assertEqual(len(msgs), 1)
        self.assertIn("REQUIRETLS", msgs[0].mail_options)


if __name__ == "__main__":
    unittest.main()
