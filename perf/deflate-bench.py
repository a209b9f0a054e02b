#!/usr/bin/env python3
"""Compressed echo side by side: ringws (shared, dedicated), uWebSockets (uws_echo shared, dedicated) and Node ws
(perf/ws-deflate-echo.js), server pinned to CPU 0, client to CPU 1, servers interleaved within each round.

Usage: perf/deflate-bench.py ROUND_LABEL   (one round; call it once per round on a quiet machine, then --report)
       perf/deflate-bench.py --report      (markdown table of every row in $ROWS: medians and min-max ranges)

Clients: `loadtest --deflate --json-payload` (ringws' client: compresses every message with a context-free or
context-taking stream as negotiated, checks every echo, measures the server's compression ratio on what it receives)
and uWebSockets' `load_test CONNS HOST PORT 0 1 SIZE` (DEFLATE=1: one precompressed JSON message resent).
Env: CASES ["100x200 10x16384"], SERVERS [all five], CLIENTS ["loadtest uws"], DURATION [4s], ROWS
[perf/deflate-bench.jsonl], RINGWS / LOADTEST [target/release/...], UWS_DIR [/tmp/uws-peer], WS_NODE_PATH
[/tmp/ws-deflate-peer/node_modules]."""
import json, os, socket, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RINGWS = os.environ.get("RINGWS", f"{REPO}/target/release/ringws")
LT = os.environ.get("LOADTEST", f"{REPO}/target/release/loadtest")
UWS = os.environ.get("UWS_DIR", "/tmp/uws-peer")
WS_NODE_PATH = os.environ.get("WS_NODE_PATH", "/tmp/ws-deflate-peer/node_modules")
ROWS = os.environ.get("ROWS", f"{HERE}/deflate-bench.jsonl")
CASES = os.environ.get("CASES", "100x200 10x16384").split()
SERVERS = os.environ.get("SERVERS", "ringws-shared ringws-dedicated uws-shared uws-dedicated ws").split()
CLIENTS = os.environ.get("CLIENTS", "loadtest uws").split()
DUR = os.environ.get("DURATION", "4s")

CMD = {
    "ringws-shared": [RINGWS, "--workers", "1", "--port", "{port}", "--compression", "shared"],
    "ringws-dedicated": [RINGWS, "--workers", "1", "--port", "{port}", "--compression", "dedicated"],
    "uws-shared": [f"{UWS}/uws_echo", "{port}", "shared"],
    "uws-dedicated": [f"{UWS}/uws_echo", "{port}", "dedicated"],
    "ws": ["node", f"{HERE}/ws-deflate-echo.js", "{port}"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name):
    port = free_port()
    env = dict(os.environ, NODE_PATH=WS_NODE_PATH)
    srv = subprocess.Popen(["taskset", "-c", "0"] + [a.replace("{port}", str(port)) for a in CMD[name]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return srv, port
        except OSError:
            time.sleep(0.05)
    srv.kill()
    raise RuntimeError(f"{name} did not start")


def run_loadtest(port, pid, conns, size):
    out = subprocess.run(["taskset", "-c", "1", LT, "--url", f"ws://127.0.0.1:{port}/echo", "--conns", conns,
                          "--size", size, "--deflate", "--json-payload", "--duration", DUR, "--warmup", "1s",
                          "--server-pid", str(pid), "--json", "--quiet"], capture_output=True, text=True)
    d = json.loads(out.stdout)
    dd = d.get("deflate") or {}
    return dict(msgs_per_s=d["msgs_per_s"], server_us=d["server_cpu_us_per_msg"], server_pct=d["server_cpu_pct"],
                client_pct=d["client_cpu_pct"], p50=d["latency_us"]["p50"], p99=d["latency_us"]["p99"],
                errors=d["errors_total"], negotiated=dd.get("response"), server_ratio=dd.get("received_ratio"),
                client_ratio=dd.get("sent_ratio"), server_rss_kib=d["server_rss_kib"])


def run_uws(port, pid, conns, size):
    out = subprocess.run(["python3", f"{HERE}/benchlib.py", "uws-client", "--kind", "load", "--conns", conns,
                          "--server-pid", str(pid), "--warmup", "2s", "--duration", "4s", "--",
                          "taskset", "-c", "1", f"{UWS}/load_test", conns, "127.0.0.1", str(port), "0", "1", size],
                         capture_output=True, text=True)
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return dict(msgs_per_s=d.get("msgs_per_s"), server_us=d.get("server_cpu_us_per_msg"),
                server_pct=d.get("server_cpu_pct"), client_pct=d.get("client_cpu_pct"), errors=d.get("errors_total"),
                error=d.get("error"))


def one_round(label):
    with open(ROWS, "a") as f:
        for case in CASES:
            conns, size = case.split("x")
            for client in CLIENTS:
                for name in SERVERS:
                    srv, port = start(name)
                    try:
                        r = (run_loadtest if client == "loadtest" else run_uws)(port, srv.pid, conns, size)
                    except Exception as e:  # a failed run is a row with its error, never a silent gap
                        r = dict(error=str(e)[-300:])
                    finally:
                        srv.terminate()
                        srv.wait()
                    r.update(round=label, case=case, server=name, client=client)
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(json.dumps(r), file=sys.stderr)


def cell(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    return (fmt % m) + (" (" + fmt % min(vals) + "-" + fmt % max(vals) + ")" if len(vals) > 1 else "")


def report():
    rows = [json.loads(l) for l in open(ROWS)]
    print("| case | client | server | rounds | server CPU-µs/msg | msg/s | server CPU % | client CPU % | "
          "p50 / p99 µs | server wire/plain | negotiated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in rows:
        k = (r["case"], r["client"], r["server"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rs = [r for r in rows if (r["case"], r["client"], r["server"]) == k and not r.get("error")]
        if not rs:
            print(f"| {k[0]} | {k[1]} | {k[2]} | 0 | failed | | | | | | |")
            continue
        lat = "-" if k[1] != "loadtest" else cell([r["p50"] for r in rs], "%.0f") + " / " + cell(
            [r["p99"] for r in rs], "%.0f")
        ratio = cell([r.get("server_ratio") for r in rs], "%.3f")
        neg = rs[0].get("negotiated") or ("-" if k[1] != "loadtest" else "not negotiated")
        print(f"| {k[0]} | {k[1]} | {k[2]} | {len(rs)} | {cell([r['server_us'] for r in rs], '%.2f')} | "
              f"{cell([r['msgs_per_s'] / 1000 for r in rs], '%.1fk')} | {cell([r['server_pct'] for r in rs], '%.0f')} | "
              f"{cell([r['client_pct'] for r in rs], '%.0f')} | {lat} | {ratio} | {neg} |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report()
    else:
        one_round(sys.argv[1] if len(sys.argv) > 1 else "1")
