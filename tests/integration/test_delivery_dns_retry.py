"""A message deferred because DNS failed temporarily is retried and delivered
once the nameserver answers (regression: a deferral made inside the resolver's
timer callback did not schedule a wake-up for its retry)."""
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


class DnsRetry(unittest.TestCase):
    def test_dns_tempfail_then_delivered(self):
        tmp = tempfile.mkdtemp(prefix="ringmail-dnsretry-")
        dport = harness.free_port()
        sport = harness.free_port("127.0.1.1")
        stats = os.path.join(tmp, "sink.json")
        procs = []
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", dport))      # takes queries, never answers
        d = None
        try:
            sink = subprocess.Popen([os.path.join(harness.BIN, "ringmail-sink"), "--listen",
                                     "127.0.1.1:%d" % sport, "--stats-file", stats])
            procs.append(sink)
            d = harness.Ringmaild(workers=2, extra={
                "dns": {"nameservers": ["127.0.0.1:%d" % dport], "timeout": "1s", "tries": 1},
                "delivery": {"port": sport, "min_backoff": "1s", "max_backoff": "2s",
                             "domain_backoff": "1s"}}, tmp=tmp).start()
            s = smtplib.SMTP(d.host, d.port)
            s.sendmail("a@x.test", ["u@d1.test"], b"Subject: t\r\n\r\nhi\r\n")
            s.quit()
            deadline = time.monotonic() + 30
            while "status=deferred" not in d.log_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertIn("status=deferred", d.log_text())
            silent.close()
            conf = os.path.join(tmp, "zone.conf")
            with open(conf, "w") as f:
                f.write("mx-host=d1.test,mx.d1.test,10\nhost-record=mx.d1.test,127.0.1.1\n")
            procs.append(subprocess.Popen(
                ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=%d" % dport,
                 "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                 "--conf-file=" + conf, "--user=root", "--group=root"], stderr=subprocess.DEVNULL))
            delivered = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and delivered < 1:
                time.sleep(0.3)
                try:
                    with open(stats) as f:
                        delivered = json.load(f)["messages"]
                except (OSError, ValueError):
                    pass
            self.assertEqual(delivered, 1, d.log_text()[-3000:])
            self.assertEqual(d.stop(), 0)
            self.assertEqual(d.sanitizer_reports(), [])
        finally:
            silent.close()
            if d is not None:
                d.stop()
            for p in procs:
                p.terminate()
                p.wait()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
