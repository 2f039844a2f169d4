#!/usr/bin/python3
"""test_kill_loop - repeated kill -9 under load (issue 10).

ROUNDS times: start ringmaild on the same spool, let four clients send
messages (relayed at once to a ringmail-sink --store), and kill -9 the
daemon at a random moment between MIN_KILL and MAX_KILL seconds in. Then
one last start drains the queue. Every message that got its 250 must be at
the sink at least once; duplicates (delivered, but the outcome not yet
journaled at a kill) are counted and printed, not bounded tightly.
"""
import collections
import os
import random
import re
import smtplib
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from inbound_common import DaemonTestCase, spool_messages, wait_for  # noqa: E402

ROUNDS = 3
CLIENTS = 4
MIN_KILL, MAX_KILL = 0.5, 2.5
MID = re.compile(rb"(?im)^Message-ID:\s*<([^>\r\n]*)>")


class Sender(threading.Thread):
    """Sender - sends until the daemon goes away; acked: Message-IDs that got 250."""

    def __init__(self, host, port, tag):
        super().__init__(daemon=True)
        self.host, self.port, self.tag = host, port, tag
        self.acked = []
        self.sent = 0

    def run(self):
        try:
            s = smtplib.SMTP(self.host, self.port, timeout=30)
            s.ehlo("kill.test")
            n = 0
            while n < 100000:
                mid = "%s-%d@client.test" % (self.tag, n)
                body = ("Subject: %s\r\nMessage-ID: <%s>\r\n\r\nmessage %d\r\n" % (mid, mid, n)).encode()
                self.sent += 1
                s.sendmail("s@src.test", ["r%d@dest.test" % n], body)
                self.acked.append(mid.encode())
                n += 1
        except (OSError, smtplib.SMTPException):
            return


class KillLoop(DaemonTestCase):
    def same(self, d):
        """same - d's settings for a restart on the same spool, on a new port."""
        return {k: v for k, v in d.settings.items() if k != "listen"}

    def test_repeated_kill9_under_load(self):
        sink = self.sink()
        d = self.daemon({"delivery": {"relayhost": sink.address, "min_backoff": "1s",
                                      "max_backoff": "2s"}})
        rng = random.Random()
        seed = rng.randrange(1 << 30)
        rng.seed(seed)
        acked = []
        for r in range(ROUNDS):
            if r > 0:
                d = harness.Ringmaild(workers=2, extra=self.same(d), tmp=d.tmp).start()
                self.daemons.append(d)
            senders = [Sender(d.host, d.port, "r%dc%d" % (r, k)) for k in range(CLIENTS)]
            for s in senders:
                s.start()
            time.sleep(rng.uniform(MIN_KILL, MAX_KILL))
            d.kill9()
            for s in senders:
                s.join(60)
            got = sum(len(s.acked) for s in senders)
            acked += [m for s in senders for m in s.acked]
            print("\nkill_loop: round %d: %d acknowledged of %d sent; %d at the sink so far"
                  % (r + 1, got, sum(s.sent for s in senders), sink.stats().get("messages", 0)),
                  flush=True)
            self.assertGreater(got, 0, "round %d: nothing was acknowledged before the kill" % r)
        d = harness.Ringmaild(workers=2, extra=self.same(d), tmp=d.tmp).start()
        self.daemons.append(d)
        drained = wait_for(lambda: spool_messages(self.spool_dir(d)) == []
                           and sink.stats().get("messages", 0) >= len(acked), 120, 0.5)
        self.finish(d)
        # The sink's stats file (which bounds stored()) is written on a
        # timer; stopped, the sink writes its final count.
        sink.stop()
        seen = collections.Counter()
        for _, data in sink.stored():
            ids = MID.findall(data)
            self.assertEqual(len(ids), 1, data[:300])
            seen[ids[0]] += 1
        missing = set(acked) - set(seen)
        duplicates = sum(v - 1 for v in seen.values())
        print("kill_loop: seed %d; %d acknowledged, %d distinct at the sink, %d duplicates"
              " (%d messages twice or more)" % (seed, len(acked), len(seen), duplicates,
                                                sum(v > 1 for v in seen.values())), flush=True)
        self.assertEqual(missing, set(), "lost %d acknowledged messages, e.g. %r"
                         % (len(missing), sorted(missing)[:5]))
        self.assertTrue(drained, "queue did not drain")


if __name__ == "__main__":
    unittest.main(verbosity=2)
