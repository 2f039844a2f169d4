#!/usr/bin/python3
"""test_tlsrpt - TLS-RPT (RFC 8460) end to end: sessions counted, the
counts kept across a restart, the daily report (a period of seconds
here) sent by mail through ringmail itself and by HTTPS POST.

The MTA-STS fixture of test_mta_sts.py (a test CA, its policies served
over HTTPS, dnsmasq) plus:

  enforce.test   MTA-STS enforce, its MX listed, STARTTLS with a certificate
                 from the CA: one successful session; _smtp._tls TXT with a
                 mailto: and an https: rua
  badcert.test   MTA-STS enforce, its MX listed, a self-signed certificate:
                 one failed session (certificate-not-trusted); mailto: rua
  reports.test   the mailto: rua's domain: a plain receiver (the sink) that
                 collects the report mail; no TXT record of its own, so its
                 own sessions are counted and never reported
  tlsrpt.reports.test   the https: rua, tlsrpt_https_sink.py with the CA's
                 certificate

The relay counts the two sessions and is stopped before the period's
report is due; a second relay on the same spool sends the reports: the
counts survived. The mail attachment is gunzipped and parsed as RFC 8460
JSON, as is the POST body. A third start sends nothing again. Every
process is stopped by PID; ringmaild must exit 0 without sanitizer
reports.
"""
import email
import email.policy
import glob
import gzip
import json
import os
import ssl
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from test_mta_sts import PolicyServer, make_pki  # noqa: E402
from test_outbound_tls import TLSReceiver  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = {
    "enforce.test": "version: STSv1\nmode: enforce\nmx: mx.enforce.test\nmax_age: 86400\n",
    "badcert.test": "version: STSv1\nmode: enforce\nmx: mx.badcert.test\nmax_age: 86400\n",
}


class HttpsSink:
    """HttpsSink - tlsrpt_https_sink.py on ip:port, saving into out_dir."""

    def __init__(self, cert, key, ip, out_dir):
        self.cmd = ["/usr/bin/python3", os.path.join(HERE, "tlsrpt_https_sink.py"), cert, key, ip, out_dir, "0"]
        self.out_dir = out_dir
        self.proc = None
        self.port = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("tlsrpt_https_sink did not start: %s" % self.proc.stderr.read(2000))
        self.port = int(line)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def posts(self):
        out = []
        for meta in sorted(glob.glob(os.path.join(self.out_dir, "*.meta"))):
            with open(meta) as f:
                path, ctype = f.read().split("\n")[:2]
            with open(meta[:-5] + ".body", "rb") as f:
                out.append((path, ctype, f.read()))
        return out


def report_of_mail(raw):
    """report_of_mail - (message, report JSON) of a TLS-RPT mail."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    return msg, json.loads(gzip.decompress(part[0].get_payload(decode=True)))


def totals(reports, domain):
    """totals - {policy-type: [successes, failures, [failure-details]]} over
    every report for domain (a run may straddle two periods)."""
    out = {}
    for r in reports:
        for p in r["policies"]:
            if p["policy"]["policy-domain"] != domain:
                continue
            t = out.setdefault(p["policy"]["policy-type"], [0, 0, []])
            t[0] += p["summary"]["total-successful-session-count"]
            t[1] += p["summary"]["total-failure-session-count"]
            t[2] += p.get("failure-details", [])
    return out


class TLSRPT(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        names = ["mx.enforce.test", "mx.badcert.test", "mta-sts.enforce.test", "mta-sts.badcert.test",
                 "tlsrpt.reports.test"]
        self.ca, self.cert, self.key = make_pki(self.tmp, names)
        self.net = mailnet.Addresses(4)
        self.mx_ip = {"enforce.test": self.net.ips[0], "badcert.test": self.net.ips[1],
                      "reports.test": self.net.ips[2]}
        self.web_ip = self.net.ips[3]
        self.https_port = 443 if os.geteuid() == 0 else harness.free_port(self.web_ip)
        policy_dir = os.path.join(self.tmp, "policies")
        os.makedirs(policy_dir)
        for domain, text in POLICIES.items():
            with open(os.path.join(policy_dir, "mta-sts." + domain), "w") as f:
                f.write(text)
        self.sink_dir = os.path.join(self.tmp, "posts")
        os.makedirs(self.sink_dir)
        self.web = self.started(PolicyServer(self.cert, self.key, self.web_ip, self.https_port, policy_dir))
        self.https = self.started(HttpsSink(self.cert, self.key, self.web_ip, self.sink_dir))
        zone = []
        for domain in ("enforce.test", "badcert.test", "reports.test"):
            zone += mailnet.mx_zone(domain, [(10, "mx." + domain, self.mx_ip[domain])])
        for domain in POLICIES:
            zone.append("txt-record=_mta-sts.%s,v=STSv1; id=20261205" % domain)
            zone.append("host-record=mta-sts.%s,%s" % (domain, self.web_ip))
        self.https_uri = "https://tlsrpt.reports.test:%d/v1/tlsrpt" % self.https.port
        # Quoted: dnsmasq takes a bare comma as the end of one TXT string.
        zone.append('txt-record=_smtp._tls.enforce.test,"v=TLSRPTv1; rua=mailto:reports@reports.test,%s"'
                    % self.https_uri)
        zone.append("txt-record=_smtp._tls.badcert.test,v=TLSRPTv1;rua=mailto:reports@reports.test")
        zone.append("host-record=tlsrpt.reports.test,%s" % self.web_ip)
        self.dns = self.started(mailnet.Dnsmasq(self.tmp, zone))

    def settings(self):
        extra = mailnet.relay_settings(self.net.port, self.dns.ns, tls_ca_file=self.ca)
        # One attempt per domain: badcert.test's deferral is not retried in the test.
        extra["delivery"].update({"min_backoff": "1h", "max_backoff": "1h"})
        extra["mta_sts"] = {"https_port": self.https_port, "fetch_timeout": "5s"}
        extra["metrics"] = {"listen": ["127.0.0.1:%d" % harness.free_port("127.0.0.1")]}
        # Periods of 4 s; reports 6 s after one ends: the first relay stops
        # before any is due.
        extra["tls_rpt"] = {"enabled": True, "report_interval": "4s", "report_delay": "6s",
                            "save_interval": "200ms", "retry_interval": "1s", "max_attempts": 5,
                            "sender": "tlsrpt@relay.test", "organization_name": "Ringmail Test",
                            "contact_info": "ops@relay.test"}
        return extra

    def send(self, d, domain):
        rcpt = "bob@" + domain
        msg = mailnet.make_message("%s@client.test" % domain.split(".")[0], "alice@client.test", [rcpt])
        mailnet.submit(d.host, d.port, [("alice@client.test", [rcpt], msg, [], [])], connections=1)

    def state(self, d):
        out = {}
        for path in glob.glob(os.path.join(d.settings["spool"]["dir"], "tlsrpt", "*.json")):
            with open(path) as f:
                for dom in json.load(f)["domains"]:
                    out.setdefault(dom["name"], []).append(dom)
        return out

    def test_counts_survive_restart_and_reports_go_out(self):
        good_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        good_ctx.load_cert_chain(self.cert, self.key)
        self_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = os.path.dirname(self.ca)
        self_ctx.load_cert_chain(os.path.join(pki, "self.pem"), os.path.join(pki, "self.key"))
        mx_good = self.started(TLSReceiver(self.mx_ip["enforce.test"], self.net.port, good_ctx))
        self.started(TLSReceiver(self.mx_ip["badcert.test"], self.net.port, self_ctx))
        sink = self.started(mailnet.Receiver(self.mx_ip["reports.test"], self.net.port))

        # 1. Two sessions counted, then a stop before the report is due.
        d = self.relay(self.settings())
        self.send(d, "enforce.test")
        self.send(d, "badcert.test")

        def outcomes(ls):
            return (any(x["domain"] == "enforce.test" and x["status"] == "delivered" for x in ls) and
                    any(x["domain"] == "badcert.test" and x["status"] == "deferred" for x in ls))
        self.wait_log(d, outcomes, 60, "both outcomes")
        self.assertEqual(len(mx_good.handler.snapshot()), 1)
        counted = mailnet.wait_until(lambda: "enforce.test" in self.state(d) and "badcert.test" in self.state(d),
                                     10, 0.1)
        text = self.stop_relay(d)
        self.assertTrue(counted, text[-3000:])
        self.assertEqual(mailnet.events(text, "tlsrpt_report"), [], "a report before its time")
        st = self.state(d)
        pols = [p for dom in st["enforce.test"] for p in dom["policies"]]
        self.assertEqual(sum(p["success"] for p in pols), 1, st)
        self.assertEqual([p["type"] for p in pols], ["sts"], st)
        pols = [p for dom in st["badcert.test"] for p in dom["policies"]]
        self.assertEqual(sum(p["failure"] for p in pols), 1, st)
        self.assertEqual(sink.handler.snapshot(), [])

        # 2. A new start on the same spool sends the reports.
        offset = os.path.getsize(d.log_path)
        d2 = harness.Ringmaild(workers=2, extra=self.settings(), tmp=d.tmp)
        self.addCleanup(d2.stop)
        d2.start()

        def mails():
            return [report_of_mail(m.content) for m in sink.handler.snapshot()
                    if b"TLS-Report-Domain" in m.content]

        def arrived():
            doms = {msg["TLS-Report-Domain"] for msg, _ in mails()}
            return {"enforce.test", "badcert.test"} <= doms and self.https.posts()
        got = mailnet.wait_until(arrived, 40, 0.2)
        metrics_url = "http://%s/metrics" % d2.settings["metrics"]["listen"][0]
        with urllib.request.urlopen(metrics_url, timeout=10) as r:
            metrics = r.read().decode()
        text2 = self.stop_relay(d2)[offset:]
        self.assertTrue(got, text2[-5000:])

        # The mail: RFC 8460 5.3.
        by_domain = {}
        for msg, report in mails():
            by_domain.setdefault(msg["TLS-Report-Domain"], []).append((msg, report))
        msg, report = by_domain["enforce.test"][0]
        self.assertEqual(msg["TLS-Report-Submitter"], "relay.test")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "tlsrpt")
        self.assertRegex(str(msg["Subject"]),
                         r"^Report Domain: enforce\.test Submitter: relay\.test Report-ID: <[^>]+>$")
        self.assertEqual(report["organization-name"], "Ringmail Test")
        self.assertEqual(report["contact-info"], "ops@relay.test")
        self.assertIn("@relay.test", report["report-id"])
        self.assertRegex(report["date-range"]["start-datetime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertRegex(report["date-range"]["end-datetime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIn(report["report-id"], str(msg["Subject"]))
        filename = [p.get_filename() for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"][0]
        self.assertRegex(filename, r"^relay\.test!enforce\.test!\d+!\d+!.*\.json\.gz$")

        enforce = totals([r for _, r in by_domain["enforce.test"]], "enforce.test")
        self.assertEqual(enforce, {"sts": [1, 0, []]}, by_domain["enforce.test"])
        sts_policy = by_domain["enforce.test"][0][1]["policies"][0]["policy"]
        self.assertEqual(sts_policy["policy-string"],
                         ["version: STSv1", "mode: enforce", "mx: mx.enforce.test", "max_age: 86400"])
        self.assertEqual(sts_policy["mx-host"], ["mx.enforce.test"])

        bad = totals([r for _, r in by_domain["badcert.test"]], "badcert.test")
        self.assertEqual(list(bad), ["sts"], bad)
        self.assertEqual(bad["sts"][:2], [0, 1], bad)
        detail = bad["sts"][2][0]
        self.assertEqual(detail["result-type"], "certificate-not-trusted", detail)
        self.assertEqual(detail["receiving-mx-hostname"], "mx.badcert.test", detail)
        self.assertEqual(detail["receiving-ip"], self.mx_ip["badcert.test"], detail)
        self.assertEqual(detail["failed-session-count"], 1, detail)

        # The POST: the same report for enforce.test.
        posts = self.https.posts()
        path, ctype, body = posts[0]
        self.assertEqual(path, "/v1/tlsrpt")
        self.assertEqual(ctype, "application/tlsrpt+gzip")
        posted = [json.loads(gzip.decompress(b)) for _, _, b in posts]
        self.assertEqual(totals(posted, "enforce.test"), {"sts": [1, 0, []]}, posted)
        self.assertEqual({r["report-id"] for r in posted},
                         {r["report-id"] for _, r in by_domain["enforce.test"]})

        # reports.test (the report mail's own sessions, in clear: no STARTTLS there)
        # is counted; it publishes no record, so it is never reported (below).
        st = self.state(d2)
        none = [p for dom in st["reports.test"] for p in dom["policies"]]
        self.assertEqual({p["type"] for p in none}, {"no-policy-found"}, st)
        self.assertTrue(all(x["result"] == "starttls-not-supported" for p in none for x in p["details"]), none)
        self.assertRegex(metrics, r"(?m)^ringmail_tlsrpt_reports_sent_total [2-9]")
        st = self.state(d2)
        for dom in ("enforce.test", "badcert.test"):
            self.assertTrue(all(x["state"] == "sent" for x in st[dom]), st[dom])

        # 3. A third start sends nothing again.
        count = len(mails()), len(self.https.posts())
        offset = os.path.getsize(d.log_path)
        d3 = harness.Ringmaild(workers=2, extra=self.settings(), tmp=d.tmp)
        self.addCleanup(d3.stop)
        d3.start()
        no_record = mailnet.wait_until(lambda: any("domain=reports.test" in x and "result=no_record" in x for x in
                                                   mailnet.events(d3.log_text()[offset:], "tlsrpt_report")), 20, 0.2)
        text3 = self.stop_relay(d3)[offset:]
        self.assertTrue(no_record, text3[-3000:])
        self.assertEqual((len(mails()), len(self.https.posts())), count)
        self.assertFalse(any("result=sent" in x for x in mailnet.events(text3, "tlsrpt_report")), text3[-3000:])
        st = self.state(d3)
        self.assertTrue(all(x["state"] == "no-record" for x in st["reports.test"]), st["reports.test"])


if __name__ == "__main__":
    unittest.main()
