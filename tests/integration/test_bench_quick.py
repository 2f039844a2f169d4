#!/usr/bin/python3
"""test_bench_quick - bench/run --quick: 2,000 messages reach the sink through
the direct path, ringmaild and (if it starts) Postfix.

No speed is asserted; bench/run exits nonzero unless every message arrived.
bench/run stops every process it starts by PID (Postfix via postfix stop).
"""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "bench", "run")


class BenchQuick(unittest.TestCase):
    def test_quick_every_message_arrives(self):
        env = dict(os.environ)
        env.setdefault("RINGMAIL_BIN", os.path.join(ROOT, "build", "bin"))
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "quick.json")
            p = subprocess.run(["/usr/bin/python3", RUN, "--quick", "--out", out],
                               env=env, capture_output=True, text=True, timeout=300)
            sys.stderr.write(p.stderr[-4000:])
            self.assertEqual(p.returncode, 0, "got bench/run exit %d, want 0" % p.returncode)
            self.assertTrue(os.path.exists(out), "got no results file, want %s" % out)


if __name__ == "__main__":
    unittest.main()
