"""test_single_instance - one ringmaild per spool directory and per listen
address (issue 26): a second daemon on the same spool.dir (other ports)
exits nonzero naming the first one's PID; a third on another spool but the
first's listen address exits nonzero naming the address, even though the
workers listen with SO_REUSEPORT. The first keeps taking mail meanwhile and
its spool holds only what it accepted. When the first stops (SIGTERM, and
again after SIGKILL) the next daemon on the same spool starts: the lock
dies with its holder.

A refused daemon must exit by itself: one still running after a few
seconds is stopped by its PID and the test fails. No timing asserts.
"""
import os
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import (DaemonTestCase, closed_delivery, send_smtplib,  # noqa: E402
                            spool_messages)

MESSAGE = b"From: a@src.test\r\nTo: b@dest.test\r\nSubject: single\r\n\r\nhello\r\n"
REFUSE_WAIT = 15


class SingleInstance(DaemonTestCase):
    def start_on(self, spool, port=None):
        """start_on - a daemon in its own directory on the given spool."""
        tmp = tempfile.mkdtemp(dir=self.tmp)
        d = harness.Ringmaild(workers=2, port=port, tmp=tmp,
                              extra={"delivery": closed_delivery(), "spool": {"dir": spool}})
        self.daemons.append(d)
        return d

    def refused(self, d):
        """refused - start d, which must exit nonzero on its own; returns its
        output (stdout and stderr)."""
        d.write_config()
        proc = subprocess.Popen([os.path.join(harness.BIN, "ringmaild"), "-c", d.config_path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=REFUSE_WAIT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            self.fail("a second ringmaild is still running after %ds:\n%s"
                      % (REFUSE_WAIT, out.decode("utf-8", "replace")[-2000:]))
        text = out.decode("utf-8", "replace")
        self.assertNotEqual(proc.returncode, 0, "refused daemon exited 0:\n" + text)
        return text

    def lock_pid(self, spool):
        with open(os.path.join(spool, "ringmaild.lock")) as f:
            return int(f.read().strip())

    def assert_still_serving(self, d, spool):
        """assert_still_serving - d takes a message, and its spool holds
        only that one: nobody else recovered or wrote there."""
        qid = send_smtplib(d, "a@src.test", ["b@dest.test"], MESSAGE)
        self.assertEqual([m["queue_id"] for m in spool_messages(spool)], [qid])
        self.assertIn("event=queued id=%s " % qid, d.log_text())
        self.finish(d)

    def test_same_spool_refused(self):
        spool = os.path.join(self.tmp, "spool")
        first = self.start_on(spool).start()
        text = self.refused(self.start_on(spool))
        self.assertIn("spool.dir %s is in use by another ringmaild (pid %d)"
                      % (spool, first.proc.pid), text)
        self.assertEqual(self.lock_pid(spool), first.proc.pid)
        self.assert_still_serving(first, spool)

    def test_same_listen_address_refused(self):
        spool = os.path.join(self.tmp, "spool")
        first = self.start_on(spool).start()
        other = self.start_on(os.path.join(self.tmp, "spool-other"), port=first.port)
        text = self.refused(other)
        self.assertIn("listen 127.0.0.1:%d is in use by another process" % first.port, text)
        self.assert_still_serving(first, spool)

    def test_spool_free_after_stop_and_crash(self):
        spool = os.path.join(self.tmp, "spool")
        first = self.start_on(spool).start()
        qid = send_smtplib(first, "a@src.test", ["b@dest.test"], MESSAGE)
        self.finish(first)
        second = self.start_on(spool, port=first.port).start()
        self.assertEqual(self.lock_pid(spool), second.proc.pid)
        second.kill9()
        third = self.start_on(spool, port=first.port).start()
        qid2 = send_smtplib(third, "a@src.test", ["b@dest.test"], MESSAGE)
        self.assertEqual(sorted(m["queue_id"] for m in spool_messages(spool)), sorted([qid, qid2]))
        self.finish(third)


if __name__ == "__main__":
    unittest.main(verbosity=2)
