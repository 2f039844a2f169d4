#!/usr/bin/python3
"""test_pop3bench - bench/pop3bench on a small mailbox (300 messages, 1 run):
both ringmaild and a private Dovecot pop3d list every message and return the
same bytes for the RETRs, and no Dovecot process of the run is left behind.

No speed is asserted. Skipped without /usr/sbin/dovecot or when not root
(the private Dovecot instance needs root for its login and auth services).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POP3BENCH = os.path.join(ROOT, "bench", "pop3bench")


def dovecot_pids_under(tmp):
    """dovecot_pids_under - PIDs whose command line mentions tmp (the private
    instance's config lives there)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if tmp.encode() in cmd and b"dovecot" in cmd:
            pids.append(int(entry))
    return pids


@unittest.skipUnless(os.path.exists("/usr/sbin/dovecot") and os.getuid() == 0,
                     "needs /usr/sbin/dovecot and root")
class Pop3Bench(unittest.TestCase):
    def test_small_mailbox_both_servers(self):
        env = dict(os.environ)
        env.setdefault("RINGMAIL_BIN", os.path.join(ROOT, "build", "bin"))
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "pop3.json")
            p = subprocess.run(["/usr/bin/python3", POP3BENCH, "--messages", "300", "--runs", "1",
                                "--json", out],
                               env=env, capture_output=True, text=True, timeout=300)
            sys.stderr.write(p.stdout[-2000:] + p.stderr[-4000:])
            self.assertEqual(p.returncode, 0, "got bench/pop3bench exit %d, want 0" % p.returncode)
            with open(out) as f:
                res = json.load(f)
            rm, dc = res["runs"]["ringmaild"], res["runs"]["dovecot"]
            self.assertEqual(len(rm), 1, "got %d ringmaild runs, want 1" % len(rm))
            self.assertEqual(len(dc), 1, "got %d dovecot runs, want 1" % len(dc))
            self.assertEqual(rm[0]["messages"], 300,
                             "got %d messages from ringmaild, want 300" % rm[0]["messages"])
            self.assertEqual(rm[0]["bytes"], dc[0]["bytes"],
                             "got %d RETR bytes from ringmaild, want Dovecot's %d"
                             % (rm[0]["bytes"], dc[0]["bytes"]))
        self.assertEqual(dovecot_pids_under("pop3bench-"), [],
                         "got dovecot processes of pop3bench left, want none")


if __name__ == "__main__":
    unittest.main()
