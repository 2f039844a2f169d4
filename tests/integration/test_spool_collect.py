"""The running daemon deletes spool segments once their messages are
delivered: 4,000 messages of 2 KB through 1 MiB segments (a rotation every
few hundred messages per shard) to a sink, then more mail to rotate again;
the spool keeps only the segments it still needs, and a restart finds
nothing to deliver."""
import glob
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from mailnet import Sink, wait_until  # noqa: E402


def segments(spool):
    return sorted(glob.glob(os.path.join(spool, "w*", "seg-*.rms")))


class Collect(unittest.TestCase):
    def test_delivered_segments_are_deleted(self):
        tmp = tempfile.mkdtemp(prefix="ringmail-collect-")
        sink = Sink(tmp, ["127.0.0.1"], harness.free_port(), store=False).start()
        self.addCleanup(sink.stop)
        spool = os.path.join(tmp, "spool")
        d = harness.Ringmaild(workers=2, tmp=tmp, extra={
            "delivery": {"relayhost": "[127.0.0.1]:%d" % sink.port},
            "spool": {"segment_size": "1M"},
        })
        d.start()
        self.addCleanup(d.stop)

        def inject(n):
            subprocess.run([os.path.join(harness.BIN, "ringmail-bench"), "--target",
                            "127.0.0.1:%d" % d.port, "--messages", str(n), "--connections", "4",
                            "--size", "2000", "--domains", "10"],
                           check=True, capture_output=True, timeout=300)
        inject(4000)
        self.assertTrue(wait_until(lambda: sink.stats()["messages"] >= 4000, 120), sink.stats())
        written = len(segments(spool))
        # More mail: every shard rotates again, and each rotation collects.
        inject(1200)
        self.assertTrue(wait_until(lambda: sink.stats()["messages"] >= 5200, 120), sink.stats())
        left = segments(spool)
        print("\ncollect: %d segments after the first 4,000 messages, %d after 5,200" %
              (written, len(left)), flush=True)
        # 5,200 x ~2.3 KB over two shards is over 11 MiB: a dozen segments
        # if nothing were deleted; a shard keeps its current segment and
        # those still holding live messages or needed outcomes.
        self.assertLessEqual(len(left), 6, left)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(d.sanitizer_reports(), [], d.log_text())

        # a restart has nothing to requeue
        p = subprocess.run([os.path.join(harness.BIN, "ringmailctl"), "spool", "dump", spool],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
