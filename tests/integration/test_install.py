"""`cmake --install` (issue 26): the daemon, the tool, the manual pages, the
systemd unit, the logrotate file and the documentation land where the unit
file says they are; ringmail.conf(5) lists every key `ringmaild
--config-keys` knows (the pages are made from the programs, not by hand)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

BUILD = os.path.dirname(harness.BIN)


class Install(unittest.TestCase):
    def setUp(self):
        self.dest = tempfile.mkdtemp(prefix="ringmail-install-")
        self.addCleanup(shutil.rmtree, self.dest, True)

    def test_install_tree_and_manual_pages(self):
        p = subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=self.dest),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        prefix = os.path.join(self.dest, "usr/local")
        for path in ("sbin/ringmaild", "bin/ringmailctl", "share/man/man8/ringmaild.8",
                     "share/man/man8/ringmailctl.8", "share/man/man5/ringmail.conf.5",
                     "lib/systemd/system/ringmaild.service", "share/doc/ringmail/OPERATIONS.md",
                     "share/doc/ringmail/CONFIGURATION.md"):
            self.assertTrue(os.path.isfile(os.path.join(prefix, path)), path)
        self.assertTrue(os.path.isfile(os.path.join(self.dest, "etc/logrotate.d/ringmail")))
        self.assertTrue(os.access(os.path.join(prefix, "sbin/ringmaild"), os.X_OK))

        # What the unit names is installed.
        with open(os.path.join(prefix, "lib/systemd/system/ringmaild.service")) as f:
            unit = f.read()
        for m in re.finditer(r"(?m)^(?:ExecStart(?:Pre)?=|Documentation=file:)(/usr/local/\S+)", unit):
            self.assertTrue(os.path.exists(self.dest + m.group(1)), m.group(1))

        # The pages: roff with a title, and every configuration key.
        keys = subprocess.run([os.path.join(harness.BIN, "ringmaild"), "--config-keys"],
                              capture_output=True, text=True, timeout=60).stdout.split("\n")
        keys = [line.split()[0] for line in keys if line.strip()]
        self.assertGreater(len(keys), 50)
        with open(os.path.join(prefix, "share/man/man5/ringmail.conf.5")) as f:
            conf = f.read()
        self.assertTrue(conf.startswith(".TH RINGMAIL.CONF 5 "), conf[:80])
        missing = [k for k in keys if (".B %s\n" % k.replace("\\", "\\e")) not in conf]
        self.assertEqual(missing, [], "keys missing from ringmail.conf(5)")
        for page, want in (("man8/ringmaild.8", "--check-config FILE"),
                           ("man8/ringmailctl.8", "ringmailctl addresses")):
            with open(os.path.join(prefix, "share/man", page)) as f:
                text = f.read()
            self.assertTrue(text.startswith(".TH "), page)
            self.assertIn(want.replace("-", "-"), text, page)
            self.assertNotIn("Sanitizer", text, page)


if __name__ == "__main__":
    unittest.main(verbosity=2)
