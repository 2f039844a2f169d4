"""ringmailctl users: add, passwd, del, verify and check on a passwd-file;
comments and other users' lines survive; passwords come from a pipe or,
without echo, from a terminal; hashes made by other tools (mkpasswd from
Debian's whois package, Python's crypt module) verify."""
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")


def ctl(*args, password=None):
    """Run ringmailctl with password (a line) on stdin; returns the result."""
    return subprocess.run([CTL, *args], input=password, capture_output=True, text=True,
                          timeout=60)


class UsersCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="test_users_cli.")
        self.path = os.path.join(self.tmp.name, "users")

    def tearDown(self):
        self.tmp.cleanup()

    def read(self):
        with open(self.path) as f:
            return f.read()

    def verify(self, name, password):
        r = ctl("users", "verify", "--file", self.path, name, password=password + "\n")
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return r.returncode == 0

    def test_add_passwd_del(self):
        with open(self.path, "w") as f:
            f.write("# ringmail users\n\nbob:{BLF-CRYPT}$2b$05$Yk54OqX5CbnZafTSGgXjwurlVu65NJMm3o0"
                    "VeljVwacVug1c4w..C:1000:1000::/home/bob:\n")
        before = self.read()

        r = ctl("users", "add", "--file", self.path, "alice", password="correct horse\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        text = self.read()
        self.assertTrue(text.startswith(before), text)
        line = text[len(before):]
        self.assertRegex(line, r"^alice:\$y\$[./A-Za-z0-9$]+\n$")
        self.assertTrue(self.verify("alice", "correct horse"))
        self.assertFalse(self.verify("alice", "correct horsE"))
        self.assertFalse(self.verify("nobody", "correct horse"))

        r = ctl("users", "add", "--file", self.path, "alice", password="other\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        self.assertEqual(self.read(), text)

        r = ctl("users", "passwd", "--file", self.path, "--scheme", "sha512-crypt", "alice",
                password="battery staple\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(self.read(), r"\nalice:\$6\$[^\n]+\n$")
        self.assertTrue(self.read().startswith(before))
        self.assertTrue(self.verify("alice", "battery staple"))
        self.assertFalse(self.verify("alice", "correct horse"))

        r = ctl("users", "passwd", "--file", self.path, "carol", password="x\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no user carol", r.stderr)

        r = ctl("users", "check", "--file", self.path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 users", r.stdout)

        r = ctl("users", "del", "--file", self.path, "alice")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read(), before)
        r = ctl("users", "del", "--file", self.path, "alice")
        self.assertEqual(r.returncode, 1)
        leftovers = sorted(os.listdir(self.tmp.name))
        self.assertEqual(leftovers, ["users"])

    def test_new_file_and_errors(self):
        r = ctl("users", "add", "--file", self.path, "dave", password="")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no password", r.stderr)
        self.assertFalse(os.path.exists(self.path))
        r = ctl("users", "add", "--file", self.path, "dave", password="\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("empty password", r.stderr)
        r = ctl("users", "add", "--file", self.path, "da:ve", password="pw\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad user name", r.stderr)
        self.assertFalse(os.path.exists(self.path))

        r = ctl("users", "add", "--file=" + self.path, "dave", password="pw\nignored\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)
        self.assertTrue(self.verify("dave", "pw"))

        for args in (["users"], ["users", "add"], ["users", "frob", "x"],
                     ["users", "add", "a", "b"], ["users", "check", "x"],
                     ["users", "add", "--bogus", "a"]):
            r = ctl(*args, password="pw\n")
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr))
            self.assertIn("usage", r.stderr)

        with open(self.path, "a") as f:
            f.write("# a bad line follows\neve:{PLAIN}secret\n")
        r = ctl("users", "check", "--file", self.path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.path + ":3: unsupported {SCHEME}", r.stderr)

    def test_terminal_prompt_without_echo(self):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(CTL, [CTL, "users", "add", "--file", self.path, "frank"])
            finally:
                os._exit(127)
        out = b""
        try:
            out += self.expect(fd, b"Password: ")
            os.write(fd, b"tty secret\n")
            out += self.expect(fd, b"Retype password: ")
            os.write(fd, b"tty secret\n")
            out += self.drain(fd)
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertNotIn(b"tty secret", out)
        self.assertTrue(self.verify("frank", "tty secret"))

    def expect(self, fd, want, timeout=30):
        data = b""
        deadline = time.monotonic() + timeout
        while want not in data:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "no %r in %r" % (want, data))
            if select.select([fd], [], [], left)[0]:
                data += os.read(fd, 1024)
        return data

    def drain(self, fd):
        data = b""
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                return data
            if not chunk:
                return data
            data += chunk

    def test_foreign_hashes_verify(self):
        hashes = {}
        mkpasswd = shutil.which("mkpasswd")
        if mkpasswd:
            for method in ("sha-512", "yescrypt"):
                r = subprocess.run([mkpasswd, "-m", method, "-s"], input="foreign pw\n",
                                   capture_output=True, text=True, timeout=60)
                if r.returncode == 0:
                    hashes["mk-" + method] = r.stdout.strip()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
            hashes["py-sha512"] = crypt.crypt("foreign pw", crypt.mksalt(crypt.METHOD_SHA512))
        except ImportError:
            pass
        if not hashes:
            self.skipTest("neither mkpasswd (package whois) nor Python's crypt module")
        with open(self.path, "w") as f:
            for name, h in hashes.items():
                prefix = "{SHA512-CRYPT}" if h.startswith("$6$") else ""
                f.write("%s:%s%s\n" % (name, prefix, h))
        for name in hashes:
            self.assertTrue(self.verify(name, "foreign pw"), name)
            self.assertFalse(self.verify(name, "foreign pW"), name)
        if not mkpasswd:
            print("note: mkpasswd not installed (Debian package whois); checked Python's crypt only",
                  file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
