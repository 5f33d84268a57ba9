#!/usr/bin/env python3
"""Side-by-side benchmark of proxy *variants* (same binary, different flags).

Answers two questions the proxy's design rests on, with the method of
../shared/bench/peers.py (wrk as the neutral client, interleaved repeats, medians, the
proxy's own CPU time per request from /proc):
  * runtime model: `--runtime per-core` vs `--runtime multi-thread`;
  * cost of the operations features: defaults vs PROXY v2 + metrics + JSON access log;
  * rustls API: `--rustls-io unbuffered` (the default) vs `--rustls-io buffered` (tokio-rustls).

Each variant runs pinned to the server CPUs beside one Unix-socket echo-server; wrk runs
pinned to the client CPUs. Build first: cargo build --release -p proxy -p echo-server.

usage: variants.py [--set runtime|features|rustls-io] [--sizes 10,10000] [--reps 3] [--dur 8]
                   [--conns 100] [--threads N] [--server-cpus 0] [--client-cpus 1]
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """user+sys of a process, all threads (from /proc/PID/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def readiness(proc, count):
    """Reads `count` 'listening on ADDR' lines from a child's stdout."""
    addrs = []
    while len(addrs) < count:
        line = proc.stdout.readline()
        if not line:
            sys.exit(f"FAIL: process exited before it was ready ({proc.args[0]})")
        if line.startswith("listening on "):
            addrs.append(line.split("listening on ", 1)[1].strip())
    return addrs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proj", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument("--set", choices=["runtime", "features", "rustls-io"], default="runtime")
    ap.add_argument("--sizes", default="10,10000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", type=int, default=8)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="proxy --threads (default: CPUs in its mask)")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--client-cpus", default="1")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="variants.")
    cert, key = f"{d}/cert.pem", f"{d}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    rel = f"{a.proj}/target/release"
    threads = ["--threads", str(a.threads)] if a.threads else []
    if a.set == "runtime":
        variants = {"per-core": ["--runtime", "per-core"], "multi-thread": ["--runtime", "multi-thread"]}
        backend = f"{d}/echo.sock"
    elif a.set == "rustls-io":
        variants = {"unbuffered": ["--rustls-io", "unbuffered"], "buffered": ["--rustls-io", "buffered"]}
        backend = f"{d}/echo.sock"
    else:
        # The all-on proxy sends PROXY v2 headers, so its echo-server reads them
        # (--proxy-protocol); the defaults proxy gets an echo-server of its own.
        variants = {
            "defaults": [],
            "all-on": ["--proxy-protocol", "v2", "--metrics-listen", "127.0.0.1:0",
                       "--log-format", "json", "--access-log"],
        }
        backend = f"{d}/echo.sock"
    procs = []

    def spawn(cmd, cpus, **kw):
        p = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=subprocess.PIPE, text=True,
                             stderr=open(f"{d}/{os.path.basename(cmd[0])}.{len(procs)}.err", "w"),
                             start_new_session=True, **kw)
        procs.append(p)
        return p

    try:
        term = {}
        for name, extra in variants.items():
            sock = backend
            if a.set == "features":
                sock = f"{d}/echo-{name}.sock"
                pp = ["--proxy-protocol"] if "--proxy-protocol" in extra else []
                spawn([f"{rel}/echo-server", "--mode", "unix", "--listen", sock] + pp, a.server_cpus)
                readiness(procs[-1], 1)
            elif not term:
                spawn([f"{rel}/echo-server", "--mode", "unix", "--listen", sock], a.server_cpus)
                readiness(procs[-1], 1)
            p = spawn([f"{rel}/proxy", "--listen", "127.0.0.1:0", "--upstream", f"unix:{sock}",
                       "--cert", cert, "--key", key] + threads + extra, a.server_cpus,
                      env=dict(os.environ, RUST_LOG="info"))
            listeners = 2 if "--metrics-listen" in extra else 1
            term[name] = (p, readiness(p, listeners)[0])
        rows = []
        for rep in range(a.reps):
            for size in [int(s) for s in a.sizes.split(",")]:
                lua = f"{d}/b{size}.lua"
                open(lua, "w").write(f'wrk.method="POST"; wrk.body=string.rep("a",{size})\n'
                    'done=function(s,l,r) io.write(string.format("CSV,%d,%d,%d,%d,%d\\n", s.requests, s.duration,'
                    ' l:percentile(50), l:percentile(99), s.errors.connect+s.errors.read+s.errors.write'
                    '+s.errors.timeout+s.errors.status)) end\n')
                for name, (p, addr) in term.items():
                    c0 = cpu_seconds(p.pid)
                    out = subprocess.run(["taskset", "-c", a.client_cpus, "wrk", "-t1", f"-c{a.conns}",
                                          f"-d{a.dur}s", "-s", lua, f"https://{addr}/"],
                                         capture_output=True, text=True).stdout
                    c1 = cpu_seconds(p.pid)
                    m = re.search(r"^CSV,(\d+),(\d+),(\d+),(\d+),(\d+)", out, re.M)
                    if not m:
                        sys.exit(f"FAIL: wrk gave no result for {name}: {out[-300:]}")
                    req, dur, p50, p99, err = map(int, m.groups())
                    rows.append(dict(variant=name, size=size, rps=req / (dur / 1e6), p50=p50, p99=p99,
                                     errors=err, cpu=(c1 - c0) * 1e6 / max(req, 1)))
        print("variant,size,median_rps,median_p50_us,median_p99_us,errors,median_cpu_us_per_req")
        for size in [int(s) for s in a.sizes.split(",")]:
            for name in term:
                rs = [r for r in rows if r["variant"] == name and r["size"] == size]
                med = lambda k: statistics.median(r[k] for r in rs)
                print(f"{name},{size},{med('rps'):.0f},{med('p50'):.0f},{med('p99'):.0f},"
                      f"{sum(r['errors'] for r in rs)},{med('cpu'):.1f}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        time.sleep(0.3)
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
