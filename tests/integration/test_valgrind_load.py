#!/usr/bin/python3
"""test_valgrind_load - tests/valgrind/run-load: ringmaild under valgrind
memcheck (ring.poll_wait) relays 2,000 plain messages, 200 through MX
lookups, 100 over STARTTLS and 20 with STARTTLS + AUTH (half of them to a
local mailbox, read back over POP3 with STLS), then stops on SIGTERM with
no memcheck error and no definite leak (docs/RELIABILITY.md, "valgrind").

Skipped without valgrind, and in the ASan build (valgrind cannot run an
ASan binary). No timing is asserted.
"""
import os
import shutil
import subprocess
import sys
import unittest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "valgrind", "run-load")


class ValgrindLoad(unittest.TestCase):
    @unittest.skipIf(shutil.which("valgrind") is None, "valgrind is not installed")
    @unittest.skipIf(harness.SANITIZED, "valgrind cannot run an ASan build")
    def test_load_is_memcheck_clean(self):
        env = dict(os.environ)
        env.setdefault("RINGMAIL_BIN", harness.BIN)
        p = subprocess.run(["/usr/bin/python3", RUN], env=env,
                           capture_output=True, text=True, timeout=540)
        sys.stderr.write(p.stderr[-20000:])
        sys.stderr.write(p.stdout)
        self.assertEqual(p.returncode, 0,
                         "got run-load exit %d, want 0 (see the memcheck log above)" % p.returncode)


if __name__ == "__main__":
    unittest.main()
