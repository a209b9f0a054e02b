#!/usr/bin/env python3
"""`--flush-delay` against CPU and latency, at fixed offered rates (open loop), beside uWebSockets and the tokio peers.

For each case (CONNSxBYTES@RATE) and round, every server runs once, interleaved: ringws with each delay in DELAYS,
then the peers in PEERS. Server pinned to CPU 0, `loadtest --mode rate` on CPU 1. One JSON line per run goes to
ROWS; `--report` prints the markdown table (median and min-max range over the rounds).

Usage: perf/flush_delay_curve.py          (measure; env below)
       perf/flush_delay_curve.py --report
Env: CASES ["10x1024@30000 100x20@50000"], DELAYS ["0 50us 100us 250us 500us 1ms 2ms"], PEERS ["uws fastwebsockets
tokio-websockets"], ROUNDS [3], DURATION [4s], ROWS [perf/flush-delay-curve.jsonl], RINGWS / LOADTEST
[target/release/...], UWS_DIR [/tmp/uws-peer], PEERS_TARGET [/tmp/peers-target]."""
import json, os, socket, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

REPO = os.path.dirname(HERE)
RINGWS = os.environ.get("RINGWS", f"{REPO}/target/release/ringws")
LT = os.environ.get("LOADTEST", f"{REPO}/target/release/loadtest")
UWS = os.environ.get("UWS_DIR", "/tmp/uws-peer")
PT = os.environ.get("PEERS_TARGET", "/tmp/peers-target")
ROWS = os.environ.get("ROWS", f"{HERE}/flush-delay-curve.jsonl")
CASES = os.environ.get("CASES", "10x1024@30000 100x20@50000").split()
DELAYS = os.environ.get("DELAYS", "0 50us 100us 250us 500us 1ms 2ms").split()
PEERS = os.environ.get("PEERS", "uws fastwebsockets tokio-websockets").split()
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DUR = os.environ.get("DURATION", "4s")


def command(server, port):
    if server.startswith("ringws@"):
        return [RINGWS, "--workers", "1", "--port", str(port), "--flush-delay", server.split("@", 1)[1]], "/echo"
    return {
        "uws": ([f"{UWS}/uws_echo", str(port), "plain"], "/"),
        "fastwebsockets": ([f"{PT}/release/fastws_echo", f"127.0.0.1:{port}"], "/"),
        "tokio-websockets": ([f"{PT}/release/tokiows_echo", f"127.0.0.1:{port}"], "/"),
    }[server]


def run(case, server):
    conns, rest = case.split("x")
    size, rate = rest.split("@")
    port = benchlib.free_port()
    cmd, path = command(server, port)
    srv = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        out = subprocess.run(["taskset", "-c", "1", LT, "--url", f"ws://127.0.0.1:{port}{path}", "--mode", "rate",
                              "--rate", rate, "--conns", conns, "--size", size, "--duration", DUR, "--warmup", "1s",
                              "--server-pid", str(srv.pid), "--json"], capture_output=True, text=True, timeout=120)
        d = json.loads(out.stdout)
    finally:
        srv.terminate()
        srv.wait()
    return {"case": case, "server": server, "msgs_per_s": d["msgs_per_s"],
            "server_us": d["server_cpu_us_per_msg"], "server_pct": d["server_cpu_pct"],
            "client_pct": d["client_cpu_pct"], "p50": d["latency_us"]["p50"], "p99": d["latency_us"]["p99"]}


def report():
    rows = [json.loads(l) for l in open(ROWS) if l.strip()]
    print("| case | server | rounds | server CPU-µs/msg | p50 µs | p99 µs | msg/s | server CPU % |")
    print("|---|---|---|---|---|---|---|---|")
    seen = []
    for r in rows:
        if (r["case"], r["server"]) not in seen:
            seen.append((r["case"], r["server"]))
    for case, server in seen:
        rs = [r for r in rows if r["case"] == case and r["server"] == server]
        cell = lambda k, f: f"{statistics.median([r[k] for r in rs]):{f}} ({min(r[k] for r in rs):{f}}-{max(r[k] for r in rs):{f}})"
        print(f"| {case} | {server} | {len(rs)} | {cell('server_us', '.2f')} | {cell('p50', '.0f')} | "
              f"{cell('p99', '.0f')} | {cell('msgs_per_s', '.0f')} | {cell('server_pct', '.0f')} |")


def main():
    if sys.argv[1:] == ["--report"]:
        return report()
    servers = [f"ringws@{d}" for d in DELAYS] + PEERS
    with open(ROWS, "a") as f:
        for rnd in range(1, ROUNDS + 1):
            for case in CASES:
                for server in servers:
                    print(f"round {rnd}/{ROUNDS}: {case} {server}", file=sys.stderr, flush=True)
                    try:
                        row = run(case, server)
                    except Exception as e:  # a server that fails is reported, the rest still run
                        print(f"  failed: {e}", file=sys.stderr)
                        continue
                    row["round"] = rnd
                    f.write(json.dumps(row) + "\n")
                    f.flush()
    report()


if __name__ == "__main__":
    main()
