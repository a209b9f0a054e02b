#!/usr/bin/env python3
"""wss vs ws, and TLS handshakes: interleaved rounds, server pinned to CPU 0, loadtest on CPU 1 (see perf/tls.md).

Usage:
  perf/tls_bench.py echo      CERT KEY   # ringws ws:// vs ringws wss:// (+ node ws over https if NODE_PEER is set)
  perf/tls_bench.py handshake CERT KEY   # full and resumed TLS 1.3 handshakes + WebSocket upgrade, same servers
Env: ROUNDS (3), DURATION (4s), CASES (echo: "100x20 10x16384"), CLIENTS (handshake: 8), RINGWS, LOADTEST
(default target/release/*), NODE_PEER (path to perf/peers/ws-https-echo.js with `ws` resolvable), VARIANTS (filter),
AB ("old=BIN,new=BIN": the wss rows once per ringws binary, for an A/B of a server change).
Prints one line per run on stderr and a markdown table (medians, ranges) on stdout; the echo table splits the server's
CPU per message into user space and kernel (from /proc after the warm-up and at the end of each run)."""
import json, os, socket, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
RINGWS = os.environ.get("RINGWS", os.path.join(HERE, "..", "target", "release", "ringws"))
LT = os.environ.get("LOADTEST", os.path.join(HERE, "..", "target", "release", "loadtest"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DUR = os.environ.get("DURATION", "4s")
NODE = os.environ.get("NODE_PEER")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


AB = [tuple(x.split("=", 1)) for x in os.environ.get("AB", "").split(",") if x]


def start(kind, port, cert, key):
    if kind == "node":
        cmd = ["node", NODE, str(port), cert, key]
    else:
        binary = dict(AB).get(kind.split(":")[-1], RINGWS) if ":" in kind else RINGWS
        cmd = [binary, "--workers", "1", "--port", str(port)]
        if kind.startswith("ringws-tls"):
            cmd += ["--tls-cert", cert, "--tls-key", key]
    srv = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); break
        except OSError:
            time.sleep(0.05)
    return srv


def cpu_split(pid):
    """(utime, stime) of a process in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def loadtest(srv, args):
    """loadtest's JSON, plus the server's user and kernel CPU-µs/msg (from /proc, sampled after the 1 s warm-up and
    at the end: a close approximation of loadtest's own window)."""
    lt = subprocess.Popen(["taskset", "-c", "1", LT, "--duration", DUR, "--warmup", "1s", "--server-pid", str(srv.pid),
                           "--json", "--quiet"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    u0, s0 = cpu_split(srv.pid)
    out, err = lt.communicate()
    u1, s1 = cpu_split(srv.pid)
    try:
        d = json.loads(out)
    except Exception:
        print("fail", args, err[-300:], file=sys.stderr)
        return None
    n = d.get("received") or d.get("handshakes") or 0
    d["server_user_us"] = (u1 - u0) * 1e6 / n if n else 0.0
    d["server_sys_us"] = (s1 - s0) * 1e6 / n if n else 0.0
    return d


def med(v, fmt):
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(v), min(v), max(v)) if v else "-"


def echo(cert, key):
    cases = os.environ.get("CASES", "100x20 10x16384").split()
    variants = [("ringws ws", "ringws", "ws"), ("ringws wss", "ringws-tls", "wss")]
    if AB:
        variants = variants[:1] + [(f"ringws wss {n}", f"ringws-tls:{n}", "wss") for n, _ in AB]
    if NODE:
        variants.append(("node ws https", "node", "wss"))
    res = {}
    for r in range(ROUNDS):
        for case in cases:
            conns, size = case.split("x")
            for name, kind, scheme in variants:
                port = free_port(); srv = start(kind, port, cert, key)
                args = ["--url", f"{scheme}://127.0.0.1:{port}/echo", "--conns", conns, "--size", size]
                if scheme == "wss":
                    args += ["--ca-file", cert]
                d = loadtest(srv, args); srv.terminate(); srv.wait()
                if not d:
                    continue
                row = (d["server_cpu_us_per_msg"], d["msgs_per_s"], d["server_cpu_pct"], d["client_cpu_pct"],
                       d["latency_us"]["p50"], d["latency_us"]["p99"], d["errors_total"] + d["mismatches"],
                       d["server_user_us"], d["server_sys_us"])
                res.setdefault((case, name), []).append(row)
                print(r, case, name, "%.2f us/msg %.0f msg/s srv %.0f%% cli %.0f%% p50 %d p99 %d err %d"
                      " user %.2f sys %.2f" % row, file=sys.stderr)
    print("| case | server | server CPU-µs/msg | ratio to ws | user µs/msg | kernel µs/msg | msg/s | server CPU % "
          "| client CPU % | p50 µs | p99 µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        base = [x[0] for x in res.get((case, "ringws ws"), [])]
        for name, _, _ in variants:
            v = res.get((case, name), [])
            if not v:
                continue
            c = [x[0] for x in v]
            ratio = [x / b for x, b in zip(c, base)] if base else []
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                case, name, med(c, "%.2f"), med(ratio, "%.2f"), med([x[7] for x in v], "%.2f"),
                med([x[8] for x in v], "%.2f"), med([x[1] / 1000 for x in v], "%.0fk"),
                med([x[2] for x in v], "%.0f"), med([x[3] for x in v], "%.0f"), med([x[4] for x in v], "%d"),
                med([x[5] for x in v], "%d")))


def handshake(cert, key):
    clients = os.environ.get("CLIENTS", "8")
    variants = [("ringws ws (no TLS)", "ringws", "ws", False), ("ringws wss full", "ringws-tls", "wss", False),
                ("ringws wss resumed", "ringws-tls", "wss", True)]
    if AB:
        variants = [(f"ringws wss {m} {n}", f"ringws-tls:{n}", "wss", m == "resumed") for n, _ in AB
                    for m in ("full", "resumed")]
    if NODE:
        variants += [("node ws https full", "node", "wss", False), ("node ws https resumed", "node", "wss", True)]
    want = os.environ.get("VARIANTS")
    if want:
        variants = [v for v in variants if any(w in v[0] for w in want.split(","))]
    res = {}
    for r in range(ROUNDS):
        for name, kind, scheme, resume in variants:
            port = free_port(); srv = start(kind, port, cert, key)
            args = ["--mode", "handshake", "--url", f"{scheme}://127.0.0.1:{port}/echo", "--conns", clients]
            if scheme == "wss":
                args += ["--ca-file", cert] + (["--resume"] if resume else [])
            d = loadtest(srv, args); srv.terminate(); srv.wait()
            if not d:
                continue
            row = (d["server_cpu_us_per_handshake"], d["handshakes_per_s"], d["server_cpu_pct"], d["client_cpu_pct"],
                   d["client_cpu_us_per_handshake"], d["latency_us"]["p50"], d["latency_us"]["p99"],
                   d["resumed"] / max(1, d["handshakes"]), sum(d["errors"].values()))
            res.setdefault(name, []).append(row)
            print(r, name, "srv %.1f us/hs %.0f hs/s srv %.0f%% cli %.0f%% cli %.1f us/hs p50 %d p99 %d resumed %.2f err %d"
                  % row, file=sys.stderr)
    print("| server | server CPU-µs/handshake | handshakes/s | server CPU % | client CPU % | client CPU-µs/handshake"
          " | p50 µs | p99 µs | resumed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, *_ in variants:
        v = res.get(name, [])
        if v:
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% |" % (
                name, med([x[0] for x in v], "%.1f"), med([x[1] for x in v], "%.0f"), med([x[2] for x in v], "%.0f"),
                med([x[3] for x in v], "%.0f"), med([x[4] for x in v], "%.1f"), med([x[5] for x in v], "%d"),
                med([x[6] for x in v], "%d"), 100 * statistics.median([x[7] for x in v])))


if __name__ == "__main__":
    {"echo": echo, "handshake": handshake}[sys.argv[1]](sys.argv[2], sys.argv[3])
