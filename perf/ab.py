#!/usr/bin/env python3
"""Interleaved A/B/C of ringws binaries: server pinned to CPU 0, loadtest on CPU 1; server CPU-us per message.

Usage: perf/ab.py NAME=BINARY ... (env CASES, ROUNDS, DURATION, LOADTEST). Prints a markdown table."""
import json, os, socket, statistics, subprocess, sys, time
BINS = dict(a.split("=", 1) for a in sys.argv[1:])
CASES = os.environ.get("CASES", "100x20 10x1024 10x16384 1000x20 10000x20").split()
ROUNDS = int(os.environ.get("ROUNDS", "3")); DUR = os.environ.get("DURATION", "4s")
LT = os.environ.get("LOADTEST", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "loadtest"))
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
res = {}
for r in range(ROUNDS):
    for case in CASES:
        conns, size = case.split("x")
        for name, b in BINS.items():
            port = free_port()
            srv = subprocess.Popen(["taskset", "-c", "0", b, "--workers", "1", "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
                except OSError: time.sleep(0.05)
            out = subprocess.run(["taskset", "-c", "1", LT, "--url", f"ws://127.0.0.1:{port}/echo", "--conns", conns,
                                  "--size", size, "--duration", DUR, "--warmup", "1s", "--server-pid", str(srv.pid),
                                  "--json"], capture_output=True, text=True)
            srv.terminate(); srv.wait()
            try: d = json.loads(out.stdout)
            except Exception: print("fail", name, case, out.stderr[-300:], file=sys.stderr); continue
            res.setdefault((case, name), []).append((d["server_cpu_us_per_msg"], d["msgs_per_s"], d["server_cpu_pct"],
                                                     d["client_cpu_pct"], d["latency_us"]["p99"]))
            print(r, case, name, "%.2f us/msg %.0f msg/s srv %.0f%% cli %.0f%%" % res[(case, name)][-1][:4], file=sys.stderr)
print("| case | " + " | ".join(f"{n} µs/msg (range) | {n} msg/s" for n in BINS) + " |")
print("|---|" + "---|---|" * len(BINS))
for case in CASES:
    row = [case]
    for n in BINS:
        v = res.get((case, n), [])
        if not v: row += ["-", "-"]; continue
        c = [x[0] for x in v]; m = [x[1] for x in v]
        row += ["%.2f (%.2f-%.2f)" % (statistics.median(c), min(c), max(c)), "%.0fk" % (statistics.median(m) / 1000)]
    print("| " + " | ".join(row) + " |")
