#!/usr/bin/env python3
"""Compressed fan-out: 10,000 subscribers of one /chat room, one publisher, ringws `--workers 1` on CPU 0 with
`--compression off|shared|dedicated`, loadtest (with `--deflate` when the server compresses) on CPU 1. One round per
call (modes interleaved); rows appended to $ROWS. `--report` prints the table.

Per row: deliveries/s, server CPU % and CPU-µs per delivery, delivery latency p50/p99, and from the server's
/metrics before and after the run: publishes, publish compressions (ringws_deflate_publish_compressions_total) and
their ratio, which must be 1 per window class (all subscribers of one mode share one class).
Env: CONNS [10000], RATE [20] publishes/s, SIZE [200] text bytes, DURATION [6s], MODES ["off shared dedicated"],
ROWS [perf/deflate-fanout.jsonl], RINGWS / LOADTEST [target/release/...]."""
import json, os, socket, statistics, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RINGWS = os.environ.get("RINGWS", f"{REPO}/target/release/ringws")
LT = os.environ.get("LOADTEST", f"{REPO}/target/release/loadtest")
ROWS = os.environ.get("ROWS", f"{HERE}/deflate-fanout.jsonl")
CONNS = os.environ.get("CONNS", "10000")
RATE = os.environ.get("RATE", "20")
SIZE = os.environ.get("SIZE", "200")
DUR = os.environ.get("DURATION", "6s")
MODES = os.environ.get("MODES", "off shared dedicated").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, v = line.rsplit(" ", 1)
        name = name.split("{")[0]
        try:
            out[name] = out.get(name, 0) + float(v)
        except ValueError:
            pass
    return out


def one_round(label):
    with open(ROWS, "a") as f:
        for mode in MODES:
            port = free_port()
            srv = subprocess.Popen(["taskset", "-c", "0", RINGWS, "--workers", "1", "--port", str(port),
                                    "--compression", mode], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(200):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                m0 = metrics(port)
                args = ["taskset", "-c", "1", LT, "--url", f"ws://127.0.0.1:{port}/chat", "--mode", "pubsub",
                        "--conns", CONNS, "--publishers", "1", "--rate", RATE, "--size", SIZE, "--duration", DUR,
                        "--warmup", "1s", "--server-pid", str(srv.pid), "--json", "--quiet"]
                if mode != "off":
                    args.append("--deflate")
                out = subprocess.run(args, capture_output=True, text=True)
                m1 = metrics(port)
                d = json.loads(out.stdout)
                delta = lambda k: m1.get(k, 0) - m0.get(k, 0)
                pubs = delta("ringws_publishes_total")
                comps = delta("ringws_deflate_publish_compressions_total")
                dd = d.get("deflate") or {}
                r = dict(round=label, mode=mode, deliveries_per_s=d["msgs_per_s"], fanout=d["fanout"],
                         server_pct=d["server_cpu_pct"], server_us=d["server_cpu_us_per_msg"],
                         client_pct=d["client_cpu_pct"], p50=d["latency_us"]["p50"], p99=d["latency_us"]["p99"],
                         errors=d["errors_total"], publishes=pubs, publish_compressions=comps,
                         compressions_per_publish=(comps / pubs) if pubs else None,
                         negotiated=dd.get("response"), wire_ratio=dd.get("received_ratio"),
                         server_rss_kib=d["server_rss_kib"])
            except Exception as e:
                r = dict(round=label, mode=mode, error=str(e)[-300:])
            finally:
                srv.terminate()
                srv.wait()
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
    print("| compression | rounds | deliveries/s | server CPU % | server µs/delivery | latency p50 / p99 ms | "
          "compressions per publish | wire/plain | server RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode and not r.get("error")]
        if not rs:
            continue
        print(f"| {mode} | {len(rs)} | {cell([r['deliveries_per_s'] / 1000 for r in rs], '%.0fk')} | "
              f"{cell([r['server_pct'] for r in rs], '%.0f')} | {cell([r['server_us'] for r in rs], '%.2f')} | "
              f"{cell([r['p50'] / 1000 for r in rs], '%.0f')} / {cell([r['p99'] / 1000 for r in rs], '%.0f')} | "
              f"{cell([r['compressions_per_publish'] for r in rs], '%.3f')} | {cell([r['wire_ratio'] for r in rs], '%.3f')} | "
              f"{cell([r['server_rss_kib'] / 1024 for r in rs], '%.1f')} |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report()
    else:
        one_round(sys.argv[1] if len(sys.argv) > 1 else "1")
