#!/usr/bin/python3
"""test_dkim - DKIM signing at reception (issue 18), checked by real verifiers.

ringmaild signs mail for example.test with two keys (RSA-2048 from
`openssl genrsa`, Ed25519 from `ringmailctl dkim keygen`) and delivers it
through dnsmasq's MX records to an aiosmtpd receiver. The public keys are
TXT records in the same dnsmasq (--txt-record lines in its zone file).
Every received message is verified by:

- python3-dkim: dkim.DKIM(msg).verify(idx, dnsfunc) for each signature,
  with a dnsfunc that asks the test's dnsmasq (dnspython, on its port);
- OpenDKIM's opendkim-testmsg, which has no resolver option: it runs in a
  private network and mount namespace (unshare) where a second dnsmasq
  serves the same zone file on 127.0.0.1:53 and /etc/resolv.conf is
  bind-mounted to point at it. So it reads the keys from DNS as well.

A message whose body was changed after signing must fail both verifiers.
Mail from an authenticated client outside relay_networks is signed; mail
from outside to a local domain is not.
"""
import base64
import json
import os
import re
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402
from mailnet import Addresses, Dnsmasq, NetTestCase, Receiver, mx_zone, relay_settings, wait_until  # noqa: E402

import dkim  # noqa: E402  (python3-dkim)
import dns.resolver  # noqa: E402  (python3-dnspython)

CTL = os.path.join(harness.BIN, "ringmailctl")
RESOLVE = os.path.join(harness.BIN, "ringmail-resolve")
OUTSIDE = "127.0.0.2"
PASSWORD = "dkim-test-password"


def txt_record_line(name, value):
    """txt_record_line - a dnsmasq txt-record line, the value cut into
    strings of at most 255 octets (one TXT record, several strings)."""
    parts = [value[i:i + 255] for i in range(0, len(value), 255)]
    return "txt-record=%s,%s" % (name, ",".join('"%s"' % p for p in parts))


def make_keys(tmp):
    """make_keys - (rsa key path, its DNS value, ed25519 key path, its DNS value)."""
    rsa = os.path.join(tmp, "example.test.rsa.pem")
    subprocess.run(["openssl", "genrsa", "-out", rsa, "2048"], check=True, capture_output=True, timeout=120)
    der = subprocess.run(["openssl", "rsa", "-in", rsa, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    rsa_value = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    ed = os.path.join(tmp, "example.test.ed25519.pem")
    r = subprocess.run([CTL, "dkim", "keygen", "--domain", "example.test", "--selector", "s2026e",
                        "--algorithm", "ed25519", "--out", ed], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("keygen: %s" % r.stderr)
    fields = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    if fields["name"] != "s2026e._domainkey.example.test":
        raise AssertionError("keygen printed name %r" % fields["name"])
    if os.stat(ed).st_mode & 0o777 != 0o600:
        raise AssertionError("keygen wrote mode %o" % (os.stat(ed).st_mode & 0o777))
    return rsa, rsa_value, ed, fields["value"]


def dnsfunc_for(port):
    """dnsfunc_for - a python3-dkim dnsfunc asking dnsmasq on 127.0.0.1:port."""
    def dnsfunc(name, timeout=5):
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = ["127.0.0.1"]
        res.port = port
        res.lifetime = timeout
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = res.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(rr.strings) for rr in answer)
    return dnsfunc


def dkimpy_verifies(msg, idx, dnsfunc):
    """dkimpy_verifies - python3-dkim's verdict on signature idx; a body
    hash mismatch is an exception there, a failure here."""
    try:
        return dkim.DKIM(msg).verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        return False


def without_signature(msg, selector):
    """without_signature - msg with the DKIM-Signature field of selector
    removed: each remaining signature must verify on its own."""
    return re.sub(rb"(?ims)^DKIM-Signature:[^\r]*?s=" + selector.encode() + rb";.*?\r\n(?=[^ \t])",
                  b"", msg, count=1)


def signatures(msg):
    """signatures - the (d, s, a) of every DKIM-Signature field, top first."""
    out = []
    for field in re.findall(rb"(?ims)^DKIM-Signature:(.*?)(?=\r\n[^ \t])", msg):
        tags = dict((k.strip(), v.strip()) for k, _, v in
                    (t.partition(b"=") for t in re.sub(rb"\s+", b"", field).split(b";") if t))
        out.append((tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode(), tags.get(b"a", b"").decode()))
    return out


def message(subject, sender="Alice Example <alice@example.test>", to="bob@recv.test", body=b"Hello.\r\n",
            extra=b""):
    head = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@example.test>\r\n" % (sender, to, subject, subject)).encode()
    return head + extra + b"\r\n" + body


def long_headers_message():
    """Folded headers with tabs and runs of spaces, several lines each."""
    extra = (b"References: <a1@example.test>\r\n\t<a2@example.test>   <a3@example.test>\r\n"
             b"  <a4@example.test>\r\n"
             b"Cc: one@recv.test,\r\n   two@recv.test,\t\r\n\tthree@recv.test\r\n"
             b"Content-Type: text/plain;\r\n\tcharset=\"us-ascii\"\r\n"
             b"MIME-Version: 1.0\r\n"
             b"List-Unsubscribe: <https://example.test/u/" + b"x" * 300 + b">\r\n"
             b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    subject = "long-folded-" + " ".join("word%d" % i for i in range(60))
    # Fold the subject by hand: CRLF + whitespace every few words.
    folded = re.sub(r"(word\d*5) ", r"\1\r\n\t  ", subject)
    return message(folded.replace("long-folded-", "long-folded "), extra=extra)


def run_opendkim(tmp, zone_conf, messages):
    """run_opendkim - opendkim-testmsg on each message (bytes) inside a
    namespace whose resolver is a dnsmasq on 127.0.0.1:53 with zone_conf.
    Returns [(exit status, stderr)], or None when namespaces are not
    available to us."""
    paths = []
    for i, m in enumerate(messages):
        p = os.path.join(tmp, "opendkim-%d.eml" % i)
        with open(p, "wb") as f:
            f.write(m)
        paths.append(p)
    resolv = os.path.join(tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    user = "--user=root --group=root" if os.geteuid() == 0 else ""
    script = r"""
set -e
ip link set lo up
mount --bind {resolv} /etc/resolv.conf
dnsmasq --no-daemon --no-resolv --no-hosts --port=53 --listen-address=127.0.0.1 \
  --bind-interfaces --pid-file= --conf-file={zone} --local=/test/ {user} \
  --host-record=probe.test,127.0.0.1 --log-facility=- >/dev/null 2>&1 &
dns=$!
i=0
until {resolve} --nameserver 127.0.0.1:53 --timeout 1 --tries 1 probe.test >/dev/null 2>&1; do
  i=$((i+1)); [ $i -lt 100 ] || {{ echo "dnsmasq did not start" >&2; kill $dns; exit 3; }}
  sleep 0.1
done
set +e
for m in {messages}; do
  opendkim-testmsg < "$m" 2>"$m.err"
  echo "$?" > "$m.rc"
done
kill $dns
wait $dns 2>/dev/null
exit 0
""".format(resolv=resolv, zone=zone_conf, user=user, resolve=RESOLVE, messages=" ".join(paths))
    p = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "Operation not permitted" in p.stderr:
        return None
    if p.returncode != 0:
        raise AssertionError("opendkim namespace: exit %d %s" % (p.returncode, p.stderr))
    out = []
    for path in paths:
        with open(path + ".rc") as f:
            rc = int(f.read().strip())
        with open(path + ".err") as f:
            out.append((rc, f.read()))
    return out


class Dkim(NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        rsa, rsa_value, ed, ed_value = make_keys(self.tmp)
        self.addrs = Addresses(1)
        self.zone = mx_zone("recv.test", [(10, "mx.recv.test", self.addrs.ips[0])]) + [
            txt_record_line("s2026r._domainkey.example.test", rsa_value),
            txt_record_line("s2026e._domainkey.example.test", ed_value),
        ]
        self.dns = self.started(Dnsmasq(self.tmp, self.zone))
        self.receiver = self.started(Receiver(self.addrs.ips[0], self.addrs.port))
        self.mailroot = os.path.join(self.tmp, "mail")
        os.mkdir(self.mailroot)
        users = os.path.join(self.tmp, "users")
        for name in ("sender", "local"):
            r = subprocess.run([CTL, "users", "add", "--file", users, "--scheme", "sha512-crypt", name],
                               input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        extra = relay_settings(self.addrs.port, self.dns.ns)
        extra.update({
            "relay_networks": ["127.0.0.1/32"],
            "local_domains": ["local.test"],
            "users": {"file": users},
            "smtp": {"auth_plaintext": True},
            "mailbox": {"root": self.mailroot},
            "log": {"level": "info", "delivery_file": os.path.join(self.tmp, "delivery.json")},
            "dkim": {"sign": [
                {"domain": "example.test", "selector": "s2026r", "key_file": rsa},
                {"domain": "example.test", "selector": "s2026e", "key_file": ed},
            ]},
        })
        self.d = self.relay(extra)
        self.dnsfunc = dnsfunc_for(self.dns.port)

    def send(self, msg, rcpts=("bob@recv.test",), source=None, login=False, mail_options=()):
        s = smtplib.SMTP(self.d.host, self.d.port, timeout=60,
                         source_address=(source, 0) if source else None)
        s.ehlo("client.test")
        if login:
            s.login("sender", PASSWORD)
        s.sendmail("alice@example.test", list(rcpts), msg, list(mail_options))
        s.quit()

    def received(self, n):
        got = wait_until(lambda: len(self.receiver.handler.snapshot()) >= n and self.receiver.handler.snapshot(),
                         timeout=60)
        self.assertTrue(got, "the receiver has %d of %d messages; log:\n%s"
                        % (len(self.receiver.handler.snapshot()), n, self.d.log_text()[-4000:]))
        return got

    def by_subject(self, got, subject):
        for m in got:
            if re.search(rb"(?m)^Subject: " + re.escape(subject.encode()), m.content):
                return m.content
        self.fail("no message with subject %r" % subject)

    def assert_verifies(self, msg, what):
        sigs = signatures(msg)
        self.assertEqual(sigs, [("example.test", "s2026r", "rsa-sha256"),
                                ("example.test", "s2026e", "ed25519-sha256")],
                         "%s: signatures %r" % (what, sigs))
        for idx in range(2):
            self.assertTrue(dkimpy_verifies(msg, idx, self.dnsfunc),
                            "%s: python3-dkim rejects signature %d (%s)" % (what, idx, sigs[idx][2]))

    def test_signed_mail_verifies_and_tampering_fails(self):
        big_line = b"0123456789 abcdefghij  ABCDEFGHIJ\t0123456789 " * 2 + b"\r\n"
        cases = [
            ("plain", message("plain")),
            ("long-folded", long_headers_message()),
            ("eight-bit", message("eight-bit", body="Grüße aus Köln — 8-bit body, ünïcödé\r\n"
                                  "€ and naïve café\r\n".encode("utf-8"),
                                  extra=b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                        b"Content-Transfer-Encoding: 8bit\r\n")),
            ("crlf-edges", message("crlf-edges", body=b"line with trailing spaces   \r\n"
                                   b"\ttabbed  \t line\r\n   \r\n\r\nmiddle\r\n \r\n\r\n\r\n\r\n")),
            ("large", message("large", body=big_line * (1100 * 1024 // len(big_line)))),
            ("subdomain", message("subdomain", sender="News <news@mail.example.test>")),
        ]
        for subject, msg in cases:
            opts = ["BODY=8BITMIME"] if subject == "eight-bit" else []
            self.send(msg, mail_options=opts)
        got = self.received(len(cases))
        log = self.d.log_text()
        queued = [line for line in log.splitlines() if " event=queued " in line]
        self.assertEqual(len([q for q in queued if "dkim=example.test/s2026r,example.test/s2026e" in q]),
                         len(cases), "\n".join(queued))
        delivered = {}
        for subject, _ in cases:
            msg = self.by_subject(got, subject)
            self.assert_verifies(msg, subject)
            delivered[subject] = msg
        self.assertGreater(len(delivered["large"]), 1024 * 1024)
        # The JSON delivery log names the signers of each message.
        with open(os.path.join(self.tmp, "delivery.json")) as f:
            dlog = [json.loads(line) for line in f]
        self.assertEqual({x["dkim"] for x in dlog if x["status"] == "delivered"},
                         {"example.test/s2026r,example.test/s2026e"}, dlog)

        # A changed body breaks both signatures for python3-dkim.
        tampered = delivered["plain"].replace(b"Hello.", b"Hellp.")
        for idx in range(2):
            self.assertFalse(dkimpy_verifies(tampered, idx, self.dnsfunc),
                             "python3-dkim accepts a changed body (signature %d)" % idx)
        # A From added above the signed one breaks them too (over-signing).
        added = b"From: mallory@evil.test\r\n" + delivered["plain"]
        self.assertFalse(dkimpy_verifies(added, 0, self.dnsfunc),
                         "python3-dkim accepts an added From header")

        # OpenDKIM reads the same keys from DNS and agrees.
        # Each algorithm on its own too: strip the other signature.
        only = {"only-ed25519": without_signature(delivered["plain"], "s2026r"),
                "only-rsa": without_signature(delivered["plain"], "s2026e")}
        self.assertEqual([a for _, _, a in signatures(only["only-ed25519"])], ["ed25519-sha256"])
        self.assertEqual([a for _, _, a in signatures(only["only-rsa"])], ["rsa-sha256"])
        delivered.update(only)
        names = [s for s, _ in cases] + list(only)
        results = run_opendkim(self.tmp, self.dns.conf, [delivered[s] for s in names] + [tampered])
        if results is None:
            self.skipTest("unshare not permitted: opendkim-testmsg cannot reach dnsmasq")
        for name, (rc, err) in zip(names, results):
            self.assertEqual(rc, 0, "opendkim-testmsg rejects %s: %s" % (name, err))
        self.assertNotEqual(results[-1][0], 0, "opendkim-testmsg accepts a changed body")
        self.stop_relay(self.d)

    def test_who_gets_signed(self):
        # Authenticated, from outside relay_networks: signed.
        self.send(message("authenticated"), source=OUTSIDE, login=True)
        # From a relay network but From is not ours: not signed.
        self.send(message("foreign", sender="someone@other.test"))
        # From outside, unauthenticated, to a local domain: never signed.
        self.send(message("inbound", to="local@local.test"), rcpts=("local@local.test",), source=OUTSIDE)
        got = self.received(2)
        self.assert_verifies(self.by_subject(got, "authenticated"), "authenticated")
        self.assertEqual(signatures(self.by_subject(got, "foreign")), [])
        box = os.path.join(self.mailroot, "local", "new")
        files = wait_until(lambda: os.path.isdir(box) and os.listdir(box), timeout=30)
        self.assertTrue(files, "no local delivery; log:\n%s" % self.d.log_text()[-3000:])
        with open(os.path.join(box, files[0]), "rb") as f:
            local = f.read()
        self.assertIn(b"Subject: inbound", local)
        self.assertNotIn(b"DKIM-Signature", local)
        queued = [line for line in self.d.log_text().splitlines() if " event=queued " in line]
        self.assertEqual(len(queued), 3, "\n".join(queued))
        self.assertEqual(len([q for q in queued if " dkim=" in q]), 1, "\n".join(queued))
        self.assertIn("auth=sender", [q for q in queued if " dkim=" in q][0])
        self.stop_relay(self.d)

    def test_reload_swaps_keys_and_bad_key_is_refused(self):
        # A config with an unreadable key is refused on SIGHUP and the
        # running one (with its keys) stays.
        good = dict(self.d.settings)
        bad_sign = [{"domain": "example.test", "selector": "s2026r",
                     "key_file": os.path.join(self.tmp, "missing.pem")}]
        self.d.settings["dkim"] = {"sign": bad_sign}
        self.d.write_config()
        self.d.send_signal(1)
        self.assertTrue(wait_until(lambda: "result=rejected" in self.d.log_text(), timeout=20),
                        self.d.log_text()[-2000:])
        self.assertIn("missing.pem", self.d.log_text())
        self.send(message("after-bad-reload"))
        self.assert_verifies(self.by_subject(self.received(1), "after-bad-reload"), "after-bad-reload")
        # Now only the Ed25519 key: the next message has one signature.
        self.d.settings = good
        self.d.settings["dkim"] = {"sign": [good["dkim"]["sign"][1]], "expire": "7d"}
        self.d.write_config()
        self.d.send_signal(1)
        self.assertTrue(wait_until(lambda: "result=ok" in self.d.log_text(), timeout=20),
                        self.d.log_text()[-2000:])
        msg = None
        for i in range(20):
            self.send(message("after-reload-%d" % i))
            got = self.received(2 + i)
            msg = self.by_subject(got, "after-reload-%d" % i)
            if len(signatures(msg)) == 1:
                break
        self.assertEqual(signatures(msg), [("example.test", "s2026e", "ed25519-sha256")])
        self.assertTrue(dkimpy_verifies(msg, 0, self.dnsfunc))
        self.assertRegex(msg, rb"x=\d+")
        self.stop_relay(self.d)


if __name__ == "__main__":
    unittest.main()
