#!/usr/bin/python3
"""test_cluster - three ringmaild nodes sharing their shaping state in one
redis-server (cluster.*, docs/CLUSTER.md), measured at one receiver "site".

- Rates and connections: a site with message_rate = "12/s" and
  max_connections = 2, mail for it handed to all three nodes: the
  receiver's DATA times give 12/s within 10% (not three times that), and it
  never sees more than 2 sessions at once.
- Suspension: a 421 4.7.28 seen by one node suspends the site on all three
  (each logs it, source=cluster); mail handed to every node meanwhile makes
  no connection at all; `shaping resume` on another node resumes all three.
- Suppression: `ringmailctl suppression add` on one node refuses the
  address at RCPT on the others; `remove` on another node lifts it on all.
- Redis killed mid-run (SIGKILL by PID): every node says state=down and
  goes on under its local share (12/s / 3 each); Redis back on the same
  port: every node says state=up; every message arrives exactly once.
redis-server runs with a password (AUTH from cluster.password_file) on a
free port of a random 127.a.b.x address; everything is stopped by PID.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import mailnet  # noqa: E402

CTL = os.path.join(harness.BIN, "ringmailctl")
PASSWORD = "cluster-test-secret"
NODES = 3


class Redis:
    """Redis - a redis-server on ip:port with requirepass, no persistence."""

    def __init__(self, tmp, ip, port):
        self.tmp, self.ip, self.port = tmp, ip, port
        self.proc = None

    def start(self):
        with open(os.path.join(self.tmp, "redis.log"), "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", self.ip, "--save", "", "--appendonly", "no",
                 "--requirepass", PASSWORD, "--dir", self.tmp],
                stdout=log, stderr=subprocess.STDOUT)
        harness.wait_port(self.ip, self.port, proc=self.proc)
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Site(mailnet.RecordingHandler):
    """Site - the receiver: sessions open at once (EHLO to QUIT), the most
    seen, each EHLO with its node's name and time, DATA times; the first
    RCPT to storm@ gets 421 4.7.28 (later ones 250)."""

    def __init__(self):
        super().__init__()
        self.open = 0
        self.most = 0
        self.ehlos = []
        self.times = []
        self.storms = 0

    def rcpt_reply(self, address):
        if address.startswith("storm@") and self.storms == 0:
            self.storms += 1
            return "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"
        return None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
            self.ehlos.append((time.monotonic(), hostname))
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.open -= 1
        return await super().handle_QUIT(server, session, envelope)

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.03)
        with self.lock:
            self.times.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


SHAPING = """
sites = ( { name = "bigmail"; mx = [ ".bigmail.test" ]; message_rate = "12/s"; max_connections = 2; } );
responses = ( { code = "421"; enhanced = "4.7.28"; action = "suspend"; scope = "site"; duration = "60s"; } );
"""


class Cluster(mailnet.NetTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.net = mailnet.Addresses(2 + NODES)
        zone = []
        for dom in ("a.test", "b.test"):
            zone += mailnet.mx_zone(dom, [(10, "mx.bigmail.test", self.net.ips[0])])
        dns = self.started(mailnet.Dnsmasq(self.tmp, zone))
        self.rcv = self.started(mailnet.Receiver(self.net.ips[0], self.net.port, Site()))
        self.redis = self.started(Redis(self.tmp, self.net.ips[1], harness.free_port(self.net.ips[1])))
        shaping = os.path.join(self.tmp, "shaping.conf")
        with open(shaping, "w") as f:
            f.write(SHAPING)
        pw = os.path.join(self.tmp, "redis.password")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        harness.give_to_daemon(pw)
        self.nodes = []
        for i in range(NODES):
            settings = mailnet.relay_settings(self.net.port, dns.ns)
            settings["shaping"] = {"file": shaping}
            settings["hostname"] = "n%d.relay.test" % i
            settings["cluster"] = {"redis": "%s:%d" % (self.redis.ip, self.redis.port), "node_name": "n%d" % i,
                                   "nodes": NODES, "password_file": pw, "batch": 4, "timeout": "300ms",
                                   "reconnect_max": "500ms", "poll_interval": "200ms", "lease_ttl": "3s"}
            d = harness.Ringmaild(workers=1, host=self.net.ips[2 + i], extra=settings,
                                  tmp=tempfile.mkdtemp(prefix="node-", dir=self.tmp))
            self.addCleanup(d.stop)
            self.nodes.append(d.start())
        for d in self.nodes:
            self.wait_for(lambda d=d: "event=cluster_redis state=up" in d.log_text(), 10, "Redis up", d)

    def wait_for(self, pred, timeout, what, d=None):
        if not mailnet.wait_until(pred, timeout, 0.05):
            self.fail("timed out waiting for %s\n%s" % (what, (d or self.nodes[0]).log_text()[-4000:]))

    def ctl(self, d, *args):
        p = subprocess.run([CTL, "--config", d.config_path] + list(args), capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, "ringmailctl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p.stdout

    def cluster_status(self, d):
        return json.loads(self.ctl(d, "cluster", "status", "--json").splitlines()[0])

    def send(self, d, rcpts, tag):
        mailnet.submit(d.host, d.port, [("s@client.test", [r], mailnet.make_message(
            "%s%d@client.test" % (tag, i), "s@client.test", [r]), [], []) for i, r in enumerate(rcpts)],
            connections=2)

    def delivered(self):
        return sorted(r for m in self.rcv.handler.snapshot() for r in m.rcpts)

    def wait_delivered(self, want, timeout):
        self.wait_for(lambda: len(self.delivered()) >= len(want), timeout, "all delivered")
        self.assertEqual(self.delivered(), sorted(want), "lost or delivered twice")

    def stop_all(self):
        for d in self.nodes:
            self.stop_relay(d)

    def test_global_rate_and_connections(self):
        rcpts = {}
        for i, d in enumerate(self.nodes):
            rcpts[i] = ["r%d.%d@%s" % (i, k, "a.test" if k % 2 else "b.test") for k in range(70)]
            self.send(d, rcpts[i], "n%d-" % i)
        want = [r for i in rcpts for r in rcpts[i]]
        self.wait_delivered(want, 60)
        times = sorted(self.rcv.handler.times)
        rate = (len(times) - 1) / (times[-1] - times[0])
        print("measured %.2f msg/s over %.1f s, at most %d sessions at once" %
              (rate, times[-1] - times[0], self.rcv.handler.most), file=sys.stderr)
        self.assertLess(abs(rate - 12.0), 1.2, "measured %.2f/s over %.1f s, want 12/s +-10%%" %
                        (rate, times[-1] - times[0]))
        self.assertLessEqual(self.rcv.handler.most, 2, "more than max_connections at once across the nodes")
        names = {h for _, h in self.rcv.handler.ehlos}
        self.assertEqual(names, {"n%d.relay.test" % i for i in range(NODES)}, "every node delivered")
        trips = sum(self.cluster_status(d)["round_trips"] for d in self.nodes)
        print("Redis round trips of the three nodes: %d for %d messages (%.2f per message, polls included)" %
              (trips, len(want), trips / len(want)), file=sys.stderr)
        st = self.cluster_status(self.nodes[0])
        self.assertEqual((st["state"], st["mode"], st["node"], st["nodes"]), ("up", "shared", "n0", 3), st)
        self.assertEqual([s["site"] for s in st["sites"]], ["bigmail"], st)
        self.assertGreater(st["tokens_taken"], 0, st)
        text = self.ctl(self.nodes[1], "cluster", "status")
        self.assertIn("bigmail", text)
        self.stop_all()

    def test_storm_on_one_node_suspends_all(self):
        self.send(self.nodes[0], ["storm@a.test"], "storm")
        self.wait_for(lambda: "action=suspend scope=site site=bigmail" in self.nodes[0].log_text(), 20,
                      "node 0's suspension")
        t_suspend = time.monotonic()
        for d in self.nodes[1:]:
            self.wait_for(lambda d=d: "source=cluster" in d.log_text(), 3, "the suspension on another node", d)
        lag = time.monotonic() - t_suspend
        self.assertLess(lag, 2.0, "a suspension took %.1f s to reach every node" % lag)
        time.sleep(0.5)
        t0 = time.monotonic()
        want = []
        for i, d in enumerate(self.nodes):
            rcpts = ["s%d.%d@b.test" % (i, k) for k in range(4)]
            self.send(d, rcpts, "s%d-" % i)
            want += rcpts
        time.sleep(4)
        late = [(t - t0, h) for t, h in self.rcv.handler.ehlos if t > t0]
        self.assertEqual(late, [], "connections during the suspension")
        self.assertEqual(self.delivered(), [])
        # One operator's resume, on another node, reaches all three.
        self.ctl(self.nodes[1], "shaping", "resume", "bigmail")
        self.wait_delivered(want + ["storm@a.test"], 20)
        self.assertEqual(self.rcv.handler.storms, 1)
        names = {h for t, h in self.rcv.handler.ehlos if t > t0}
        self.assertEqual(names, {"n%d.relay.test" % i for i in range(NODES)}, "every node resumed")
        for d in (self.nodes[0], self.nodes[2]):
            self.assertIn("action=resume site=bigmail source=cluster", d.log_text())
        self.stop_all()

    def rcpt_code(self, d, address):
        import smtplib
        s = smtplib.SMTP(d.host, d.port, timeout=30)
        try:
            s.ehlo("client.test")
            s.mail("s@client.test")
            return s.rcpt(address)[0]
        finally:
            s.quit()

    def listed(self, d, address):
        out = subprocess.run([CTL, "--config", d.config_path, "suppression", "list", address, "--json"],
                             capture_output=True, text=True, timeout=30).stdout
        return [json.loads(x) for x in out.splitlines() if x.strip()]

    def test_suppression_list_shared(self):
        self.ctl(self.nodes[0], "suppression", "add", "Gone@a.test", "--reason", "asked by phone")
        for d in self.nodes[1:]:
            self.wait_for(lambda d=d: self.rcpt_code(d, "gone@a.test") == 550, 5, "the entry on another node", d)
            rows = self.listed(d, "gone@a.test")
            self.assertEqual(len(rows), 1, rows)
            self.assertEqual(rows[0]["reason"], "asked by phone")
        self.assertEqual(self.rcpt_code(self.nodes[2], "other@a.test"), 250)
        self.ctl(self.nodes[2], "suppression", "remove", "gone@a.test")
        for d in self.nodes[:2]:
            self.wait_for(lambda d=d: self.rcpt_code(d, "gone@a.test") == 250, 5, "the removal on another node", d)
        st = self.cluster_status(self.nodes[1])
        self.assertEqual((st["suppression_sent"], st["suppression_received"]), (0, 2), st)
        self.stop_all()

    def test_redis_lost_and_back(self):
        want = []
        for i, d in enumerate(self.nodes):
            rcpts = ["k%d.%d@a.test" % (i, k) for k in range(60)]
            self.send(d, rcpts, "k%d-" % i)
            want += rcpts
        self.wait_for(lambda: len(self.delivered()) >= 40, 20, "the first deliveries")
        self.redis.kill()
        t_kill = time.monotonic()
        for d in self.nodes:
            self.wait_for(lambda d=d: "event=cluster_redis state=down" in d.log_text(), 5, "fallback", d)
            self.assertEqual(self.cluster_status(d)["mode"], "fallback")
        n_kill = len(self.delivered())
        self.wait_for(lambda: len(self.delivered()) >= n_kill + 60, 20, "delivery under local limits")
        self.redis.start()
        t_back = time.monotonic()
        for d in self.nodes:
            self.wait_for(lambda d=d: d.log_text().count("event=cluster_redis state=up") >= 2, 10, "Redis again", d)
            self.assertEqual(self.cluster_status(d)["state"], "up")
        self.wait_delivered(want, 60)
        # Under local limits the three nodes together still kept about the site's rate.
        during = [t for t in self.rcv.handler.times if t_kill + 1 < t < t_back]
        if len(during) > 10:
            rate = (len(during) - 1) / (during[-1] - during[0])
            print("while Redis was down: %.2f msg/s over %.1f s" % (rate, during[-1] - during[0]), file=sys.stderr)
            self.assertLess(rate, 12 * 1.1, "%.1f/s while Redis was down" % rate)
        self.stop_all()


if __name__ == "__main__":
    unittest.main()
