#!/usr/bin/python3
"""test_dns - ringmail-resolve against a real DNS server (dnsmasq) on loopback.

Starts dnsmasq on a free port with MX/A/AAAA records, a null MX, a domain
without MX and nothing for NXDOMAIN; plus a UDP socket that never answers
(temporary failure). Checks the resolve CLI's output and exit status.
Every process started here is stopped by PID.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BIN = os.environ.get("RINGMAIL_BIN", "build/bin")
RESOLVE = os.path.join(BIN, "ringmail-resolve")

ZONE = """\
mx-host=two.test,mx1.two.test,10
mx-host=two.test,mx2.two.test,20
host-record=mx1.two.test,127.0.0.11,::11
host-record=mx2.two.test,127.0.0.12
mx-host=eq.test,a.eq.test,5
mx-host=eq.test,b.eq.test,5
mx-host=eq.test,c.eq.test,5
host-record=a.eq.test,127.0.0.21
host-record=b.eq.test,127.0.0.22
host-record=c.eq.test,127.0.0.23
mx-host=nullmx.test,.,0
host-record=nomx.test,127.0.0.31
host-record=relay.test,127.0.0.41
mx-host=deadmx.test,nowhere.test,10
"""

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


def resolve(*args, timeout=30):
    p = subprocess.run([RESOLVE, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def start_dnsmasq(tmp):
    conf = os.path.join(tmp, "zone.conf")
    with open(conf, "w") as f:
        f.write(ZONE)
    port = harness.free_port()
    cmd = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=%d" % port,
           "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
           "--conf-file=" + conf, "--local=/test/", "--log-facility=-"]
    if os.geteuid() == 0:
        cmd += ["--user=root", "--group=root"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ns = "127.0.0.1:%d" % port
    for _ in range(50):  # ready when it answers
        if proc.poll() is not None:
            raise RuntimeError("dnsmasq exited %d" % proc.returncode)
        rc, out, _ = resolve("--nameserver", ns, "--timeout", "1", "--tries", "1",
                             "nomx.test")
        if rc == 0:
            return proc, ns
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("dnsmasq did not answer")


def blackhole():
    """A bound UDP socket that reads and drops: a nameserver that never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                s.recv(4096)
            except socket.timeout:
                pass
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    return s, stop, t


def parse(out):
    """{domain: (status line, [host lines])}"""
    result, cur = {}, None
    for line in out.splitlines():
        if line.startswith("  "):
            result[cur][1].append(line.strip())
        else:
            cur = line.split()[0]
            result[cur] = (line, [])
    return result


def test_mx(ns):
    rc, out, err = resolve("--nameserver", ns, "--port", "2526", "two.test", "eq.test",
                           "nullmx.test", "nomx.test", "nx.test", "[127.0.0.9]",
                           "deadmx.test")
    print(out, err, flush=True)
    check(rc == 1, "exit status %d with failures, want 1" % rc)
    r = parse(out)
    check(r["two.test"][0].startswith("two.test ok"), "two.test ok")
    check(r["two.test"][1] == ["mx 10 mx1.two.test port 2526: 127.0.0.11",
                               "mx 20 mx2.two.test port 2526: 127.0.0.12"],
          "two.test hosts: %r" % (r["two.test"][1],))
    eq = r["eq.test"][1]
    check(sorted(h.split()[2] for h in eq) == ["a.eq.test", "b.eq.test", "c.eq.test"],
          "eq.test hosts: %r" % (eq,))
    check(all(h.startswith("mx 5 ") for h in eq), "eq.test preferences")
    check(r["nullmx.test"][0] == "nullmx.test permfail 556 5.1.10 domain nullmx.test "
          "does not accept mail (null MX)", "null MX: %r" % (r["nullmx.test"][0],))
    check(r["nomx.test"][1] == ["mx 0 nomx.test port 2526: 127.0.0.31"],
          "implicit MX: %r" % (r["nomx.test"][1],))
    check(r["nx.test"][0].startswith("nx.test permfail 550 5.1.2"), "NXDOMAIN")
    check(r["[127.0.0.9]"][1] == ["mx 0 [127.0.0.9] port 2526: 127.0.0.9"], "literal")
    check(r["deadmx.test"][0].startswith("deadmx.test permfail 554 5.4.4"),
          "MX without address: %r" % (r["deadmx.test"][0],))


def test_shuffle(ns):
    orders = set()
    for _ in range(12):
        rc, out, _ = resolve("--nameserver", ns, "eq.test")
        check(rc == 0, "eq.test exit %d" % rc)
        orders.add(tuple(h.split()[2] for h in parse(out)["eq.test"][1]))
    check(len(orders) > 1, "equal preferences never shuffled: %r" % (orders,))


def test_families(ns):
    rc, out, _ = resolve("--nameserver", ns, "--ipv6", "two.test")
    check(rc == 0, "ipv6 two.test exit %d" % rc)
    check(parse(out)["two.test"][1] == ["mx 10 mx1.two.test port 25: ::11"],
          "ipv6 hosts: %r" % (out,))
    rc, out, _ = resolve("--nameserver", ns, "--both", "two.test")
    check(parse(out)["two.test"][1][0] == "mx 10 mx1.two.test port 25: ::11 127.0.0.11",
          "both: %r" % (out,))


def test_static_routes(ns):
    rc, out, _ = resolve("--nameserver", ns, "--route", "nullmx.test=relay.test:2600",
                         "--route", "nx.test=[127.0.0.8]:2700", "nullmx.test", "nx.test")
    print(out, flush=True)
    check(rc == 0, "static routes exit %d" % rc)
    r = parse(out)
    check(r["nullmx.test"][1] == ["mx 0 relay.test port 2600: 127.0.0.41"],
          "static host route: %r" % (r["nullmx.test"][1],))
    check(r["nx.test"][1] == ["mx 0 [127.0.0.8] port 2700: 127.0.0.8"],
          "static literal route: %r" % (r["nx.test"][1],))
    rc, out, _ = resolve("--nameserver", ns, "--relayhost", "relay.test", "any.where")
    check(parse(out)["any.where"][1] == ["mx 0 relay.test port 25: 127.0.0.41"],
          "relayhost: %r" % (out,))


def test_timeout():
    s, stop, t = blackhole()
    try:
        ns = "127.0.0.1:%d" % s.getsockname()[1]
        rc, out, _ = resolve("--nameserver", ns, "--timeout", "1", "--tries", "1",
                             "slow.test")
        print(out, flush=True)
        check(rc == 1, "timeout exit %d, want 1" % rc)
        check(out.startswith("slow.test tempfail 451 4.4.3"), "timeout: %r" % (out,))
    finally:
        stop.set()
        t.join()
        s.close()


def main():
    if not os.access(RESOLVE, os.X_OK):
        print("missing", RESOLVE)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        proc, ns = start_dnsmasq(tmp)
        try:
            test_mx(ns)
            test_shuffle(ns)
            test_families(ns)
            test_static_routes(ns)
            test_timeout()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if FAILURES:
        print("%d failures" % len(FAILURES))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
