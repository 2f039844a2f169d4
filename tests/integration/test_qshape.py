"""`ringmailctl queue summary`, qshape-like: queued items by destination
domain and age, the largest domains first, `--top N` keeping the N largest
and folding the rest into one "others" row that TOTAL still counts, in text
and JSON, against a real queue: a ringmaild relaying to a port where
nothing listens holds 6 domains' mail (40, 25, 12, 6, 3, 1 messages) and
the summary and `queue list` agree with what was sent."""
import json
import os
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from mailnet import wait_until  # noqa: E402

COUNTS = {"big.test": 40, "second.test": 25, "third.test": 12, "four.test": 6, "five.test": 3,
          "six.test": 1}
AGES = ["5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"]


class QShape(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.holder = socket.socket()
        cls.holder.bind(("127.0.0.1", 0))      # bound, never listening: refused
        cls.d = harness.Ringmaild(workers=2, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % cls.holder.getsockname()[1],
                         "min_backoff": "1h", "max_backoff": "2h", "domain_backoff": "1h"},
        })
        cls.d.start()
        cls.sock = os.path.join(cls.d.tmp, "spool", "control.sock")
        for domain, n in COUNTS.items():
            subprocess.run([os.path.join(harness.BIN, "ringmail-bench"), "--target",
                            "127.0.0.1:%d" % cls.d.port, "--messages", str(n), "--connections", "2",
                            "--size", "600", "--domains", "1", "--domain-pattern", domain],
                           check=True, capture_output=True, timeout=120)
        total = sum(COUNTS.values())
        if not wait_until(lambda: cls.summary("--deferred")[0]["total"] == total, 60):
            raise AssertionError("not all deferred: %r" % cls.summary("--deferred"))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.holder.close()

    @classmethod
    def ctl(cls, *args, check=True):
        p = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "queue", *args,
                            "--socket", cls.sock], capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("ringmailctl queue %s: %d %s" % (" ".join(args), p.returncode, p.stderr))
        return p

    @classmethod
    def summary(cls, *args):
        return [json.loads(line) for line in cls.ctl("summary", "--json", *args).stdout.splitlines()]

    def test_every_domain_by_size_with_ages(self):
        rows = self.summary()
        total = sum(COUNTS.values())
        self.assertEqual(rows[0]["domain"], "TOTAL")
        self.assertEqual(rows[0]["total"], total)
        self.assertEqual(list(rows[0]["age_minutes"]), AGES)
        # fresh mail: everything under 5 minutes old
        self.assertEqual(rows[0]["age_minutes"]["5"], total)
        got = [(r["domain"], r["total"]) for r in rows[1:]]
        want = sorted(COUNTS.items(), key=lambda kv: (-kv[1], kv[0]))
        self.assertEqual(got, want)
        for r in rows[1:]:
            self.assertEqual(sum(r["age_minutes"].values()), r["total"], r)
        # queue list streams one row per item: the same count
        items = self.ctl("list", "--json").stdout.splitlines()
        self.assertEqual(len(items), total)

    def test_top_keeps_the_largest_and_counts_the_rest(self):
        rows = self.summary("--top", "2")
        total = sum(COUNTS.values())
        self.assertEqual(rows[0]["total"], total, "TOTAL counts the domains left out too")
        self.assertEqual([(r.get("domain"), r["total"]) for r in rows[1:3]],
                         [("big.test", 40), ("second.test", 25)])
        self.assertEqual(len(rows), 4, rows)
        self.assertEqual(rows[3]["others"], 4)
        self.assertEqual(rows[3]["total"], 12 + 6 + 3 + 1)
        self.assertEqual(rows[3]["age_minutes"]["5"], 22)

        text = self.ctl("summary", "--top", "3").stdout.splitlines()
        self.assertEqual(text[0].split(), ["T"] + AGES)
        self.assertEqual(text[1].split()[:3], ["TOTAL", str(total), str(total)])
        self.assertEqual([line.split()[0] for line in text[2:5]], ["big.test", "second.test", "third.test"])
        self.assertEqual(text[5].split()[:5], ["(3", "other", "domains)", "10", "10"])
        self.assertEqual(len(text), 6, text)

        # more than there are: everything, no others row
        rows = self.summary("--top", "100")
        self.assertEqual(len(rows), 1 + len(COUNTS))
        self.assertFalse(any("others" in r for r in rows))

    def test_top_with_filters(self):
        rows = self.summary("--deferred", "--top", "1")
        self.assertEqual((rows[1]["domain"], rows[1]["total"]), ("big.test", 40))
        self.assertEqual(rows[2]["others"], len(COUNTS) - 1)
        rows = self.summary("--domain", "third.test", "--top", "5")
        self.assertEqual([(r["domain"], r["total"]) for r in rows], [("TOTAL", 12), ("third.test", 12)])

    def test_bad_top_is_refused(self):
        for bad in ("0", "x", "-1", "100001"):
            p = self.ctl("summary", "--top", bad, check=False)
            self.assertEqual(p.returncode, 2, (bad, p.stdout, p.stderr))
            self.assertIn("bad top", p.stderr)
        p = self.ctl("list", "--top", "3", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("top=N is for queue summary", p.stderr)


if __name__ == "__main__":
    unittest.main()
