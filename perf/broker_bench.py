#!/usr/bin/env python3
"""Cross-node pub/sub through Redis, measured (standard library only; results in perf/broker.md).

  broker_bench.py round --round N --out ROWS.jsonl [--fanout-rates "10 30 60 100 150"] [--pubcost-rates "2000 8000"]
      One round, every case interleaved: starts redis-server on a free loopback port, two `ringws --redis` nodes
      (A and B) and one plain `ringws` (S, no Redis), runs `loadtest --mode pubsub` against them and appends one
      JSON row per run to ROWS.jsonl; stops everything it started.
      - fan-out: 10,000 subscribers on `/broadcast` (subscribed at open, no join message), one publisher, 20-byte
        payloads at each publish rate; `two-nodes`: subscribers alternate between A and B, the publisher is on A;
        `one-node`: all on S.
      - pubcost: 2 subscribers + the publisher at a high publish rate, so the cost per publish dominates;
        `two-nodes`: one subscriber on A (with the publisher), one on B; `one-node`: both on S.
      Pinning (2 cores): every ringws (one worker each) on CPU 0, redis-server and loadtest on CPU 1.

  broker_bench.py report ROWS.jsonl
      Markdown tables: median (min-max) over the rounds.

Environment: RINGWS (default target/release/ringws), LOADTEST (target/release/loadtest), DURATION (5s),
WARMUP (2s), SERVER_CPU (0), CLIENT_CPU (1).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

RINGWS = os.environ.get("RINGWS", "target/release/ringws")
LOADTEST = os.environ.get("LOADTEST", "target/release/loadtest")
DURATION = os.environ.get("DURATION", "5s")
WARMUP = os.environ.get("WARMUP", "2s")
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def healthz(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return r.read().decode().strip()


class Procs:
    """Everything this round started; stopped (by pid) on exit, whatever happens."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, name, cpu, argv):
        log = open(os.path.join(self.logdir, f"{name}.log"), "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT if name != "redis" else signal.SIGTERM)
        for name, p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def loadtest(urls, pids, conns, rate):
    argv = ["taskset", "-c", CLIENT_CPU, LOADTEST, "--mode", "pubsub", "--conns", str(conns), "--publishers", "1",
            "--rate", str(rate), "--size", "20", "--sub-msg", "", "--pub-template", "{payload}",
            "--duration", DURATION, "--warmup", WARMUP, "--json", "--quiet"]
    for u in urls:
        argv += ["--url", u]
    for p in pids:
        argv += ["--server-pid", str(p)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    try:
        return json.loads(out.stdout), argv
    except json.JSONDecodeError:
        sys.exit(f"loadtest failed ({out.returncode}): {out.stderr[-2000:]}")


def metric(port, name):
    """The sum of a metric's series (all labels) on a node's /metrics."""
    total = None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total = (total or 0) + float(line.split()[-1])
    return total


def round_(a):
    logdir = tempfile.mkdtemp(prefix="broker-bench-")
    procs = Procs(logdir)
    try:
        rport, pa, pb, ps = free_port(), free_port(), free_port(), free_port()
        redis = procs.start("redis", CLIENT_CPU, ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                                  "--save", "", "--appendonly", "no", "--dir", logdir])
        wait_port(rport, redis, "redis-server")
        url = f"redis://127.0.0.1:{rport}"
        nodes = {}
        for name, port, extra in (("A", pa, ["--redis", url]), ("B", pb, ["--redis", url]), ("S", ps, [])):
            p = procs.start(name, SERVER_CPU, [RINGWS, "--port", str(port), "--workers", "1", "--no-pin"] + extra)
            wait_port(port, p, f"ringws {name}")
            nodes[name] = (port, p)
        for name in ("A", "B"):
            for _ in range(100):
                if healthz(nodes[name][0]) == "ok":
                    break
                time.sleep(0.05)
            else:
                sys.exit(f"node {name} never connected to Redis: {healthz(nodes[name][0])}")
        ws = {n: f"ws://127.0.0.1:{port}/broadcast" for n, (port, _) in nodes.items()}
        pid = {n: p.pid for n, (_, p) in nodes.items()}
        cases = [("fanout", r, a.fanout_conns) for r in a.fanout_rates.split()]
        cases += [("pubcost", r, 2) for r in a.pubcost_rates.split()]
        with open(a.out, "a") as out:
            for table, rate, conns in cases:
                setups = [("two-nodes", [ws["A"], ws["B"]], [pid["A"], pid["B"], redis.pid]),
                          ("one-node", [ws["S"]], [pid["S"]])]
                if a.round % 2 == 0:
                    setups.reverse()
                for setup, urls, pids in setups:
                    drops = [metric(nodes[n][0], "ringws_broker_drops_total") for n in ("A", "B")]
                    v, argv = loadtest(urls, pids, conns, rate)
                    drops_after = [metric(nodes[n][0], "ringws_broker_drops_total") for n in ("A", "B")]
                    row = {"table": table, "setup": setup, "rate": float(rate), "round": a.round,
                           "conns": conns, "load": os.getloadavg()[0], "argv": " ".join(argv[3:]),
                           "broker_drops": [None if x is None or y is None else y - x
                                                    for x, y in zip(drops, drops_after)]}
                    for k in ("sent", "received", "msgs_per_s", "sent_per_s", "fanout", "latency_us", "client_cpu_pct",
                              "client_cpu_us_per_msg", "errors_total", "connected", "servers", "duration_s"):
                        row[k] = v.get(k)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    srv = ", ".join(f"{s['cpu_pct']:.0f}%" for s in v["servers"] if s.get("cpu_pct") is not None)
                    print(f"{table} {setup} rate {rate}: {v['msgs_per_s']:.0f} deliveries/s, p50 "
                          f"{v['latency_us']['p50']} p99 {v['latency_us']['p99']} µs, servers {srv}, client "
                          f"{v['client_cpu_pct']:.0f}%", flush=True)
    finally:
        procs.stop()


def med(values, fmt):
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    m = format(statistics.median(v), fmt)
    lo, hi = format(min(v), fmt), format(max(v), fmt)
    return m if lo == hi else f"{m} ({lo}-{hi})"


def report(a):
    rows = [json.loads(x) for x in open(a.rows) if x.strip()]
    conns = {r["conns"] for r in rows if r["table"] == "fanout"}
    print(f"### Fan-out: {', '.join(map(str, conns))} subscribers on one topic, 1 publisher, 20 B\n")
    print("| publishes/s | setup | deliveries/s | p50 / p99 latency (ms) | CPU 0: nodes (A + B, or S) | "
          "A / B | redis | client (CPU 1) | server CPU-µs per delivery |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rate in sorted({r["rate"] for r in rows if r["table"] == "fanout"}):
        for setup in ("one-node", "two-nodes"):
            rs = [r for r in rows if r["table"] == "fanout" and r["rate"] == rate and r["setup"] == setup]
            if not rs:
                continue
            nodes = [sum(s["cpu_pct"] for s in r["servers"][:2 if setup == "two-nodes" else 1]) for r in rs]
            per_del = [sum(s["cpu_s"] for s in r["servers"][:2 if setup == "two-nodes" else 1]) * 1e6 /
                       max(1, r["received"]) for r in rs]
            ab = "-" if setup == "one-node" else (med([r["servers"][0]["cpu_pct"] for r in rs], ".0f") + "% / " +
                                                  med([r["servers"][1]["cpu_pct"] for r in rs], ".0f") + "%")
            redis = "-" if setup == "one-node" else med([r["servers"][2]["cpu_pct"] for r in rs], ".1f") + "%"
            print(f"| {rate:.0f} | {setup} | {med([r['msgs_per_s'] / 1e3 for r in rs], '.0f')}k | "
                  f"{med([r['latency_us']['p50'] / 1e3 for r in rs], '.1f')} / "
                  f"{med([r['latency_us']['p99'] / 1e3 for r in rs], '.1f')} | {med(nodes, '.0f')}% | {ab} | "
                  f"{redis} | {med([r['client_cpu_pct'] for r in rs], '.0f')}% | {med(per_del, '.3f')} |")
    print("\n### Cost per publish: 2 subscribers + the publisher\n")
    print("| publishes/s | setup | publishes/s done | p50 / p99 latency (µs) | publishing node (A or S) "
          "CPU-µs per publish | receiving node B CPU-µs per publish | redis CPU-µs per publish | drops |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in sorted({r["rate"] for r in rows if r["table"] == "pubcost"}):
        for setup in ("one-node", "two-nodes"):
            rs = [r for r in rows if r["table"] == "pubcost" and r["rate"] == rate and r["setup"] == setup]
            if not rs:
                continue
            col = lambda i: med([r["servers"][i]["cpu_us_per_sent"] if len(r["servers"]) > i else None
                                 for r in rs], ".1f")
            drops = sum(sum(x or 0 for x in r["broker_drops"]) for r in rs) if setup == "two-nodes" else "-"
            print(f"| {rate:.0f} | {setup} | {med([r['sent_per_s'] for r in rs], '.0f')} | "
                  f"{med([r['latency_us']['p50'] for r in rs], '.0f')} / "
                  f"{med([r['latency_us']['p99'] for r in rs], '.0f')} | {col(0)} | "
                  f"{col(1) if setup == 'two-nodes' else '-'} | {col(2) if setup == 'two-nodes' else '-'} | {drops} |")
    print(f"\nRounds: {len({r['round'] for r in rows})}; load average at the runs: "
          f"{min(r['load'] for r in rows):.1f}-{max(r['load'] for r in rows):.1f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("round")
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--fanout-rates", default="10 30 60 100 150")
    r.add_argument("--pubcost-rates", default="2000 8000")
    r.add_argument("--fanout-conns", type=int, default=10_000)
    p = sub.add_parser("report")
    p.add_argument("rows")
    a = ap.parse_args()
    round_(a) if a.cmd == "round" else report(a)


if __name__ == "__main__":
    main()
