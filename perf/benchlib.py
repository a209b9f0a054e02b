#!/usr/bin/env python3
"""Helpers for scripts/bench-peers.sh (standard library only).

  benchlib.py free-port
      Print a TCP port on 127.0.0.1 that nothing listens on right now.

  benchlib.py uws-client --kind load|broadcast --conns N --server-pid PID --warmup 2s --duration 10s
                         [--interval 4] [--timeout SECONDS] -- CMD ARGS...
      Run one of uWebSockets' C clients (`load_test`, `broadcast_test`), which print a rate every `--interval`
      seconds (their LIBUS_TIMEOUT_GRANULARITY, 4 s) and never exit. Skips ceil(warmup / interval) reports after
      "Running benchmark now", measures max(1, ceil(duration / interval)) more, then stops the client. The server's
      and the client's CPU time (utime + stime from /proc/PID/stat, as `loadtest --server-pid` reads it) are sampled
      at the first and the last counted report, so CPU and message counts cover the same window. Prints one JSON
      object with the keys `loadtest --json` uses (msgs_per_s, server_cpu_pct, server_cpu_us_per_msg, client_cpu_pct,
      client_cpu_us_per_msg, server_rss_kib); for broadcast also rounds_per_s, and a message is one delivery
      (rounds x CONNS^2).

  benchlib.py rates ROWS.jsonl --cases "100x20 ..." --fractions "0.25 0.5" [--server uws] [--rates "100x20=175000"]
      Print "CASE FRACTION RATE" lines: FRACTION x the saturated msg/s of --server (median of its `probe` rows in
      ROWS, or the value given in --rates, which wins).

  benchlib.py report ROWS.jsonl [--client-bound 90] [--title TEXT] [--method TEXT]
      Markdown tables from the rows (one JSON object per line, written by bench-peers.sh): every cell is the median
      over rounds with the range (min-max) beside it.
"""

import argparse
import json
import math
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def parse_duration(s):
    m = re.fullmatch(r"([\d.]+)(ms|s|m)?", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {s!r}")
    v, unit = float(m.group(1)), m.group(2) or "s"
    return v / 1000 if unit == "ms" else v * 60 if unit == "m" else v


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RATE_LINE = {
    "load": re.compile(r"^Msg/sec: ([\d.]+)"),
    "broadcast": re.compile(r"^Iterations/second \(\d+ clients\): ([\d.]+)"),
}


def uws_client(a):
    pattern = RATE_LINE[a.kind]
    skip = math.ceil(a.warmup / a.interval)
    count = max(1, math.ceil(a.duration / a.interval - 1e-9))
    limit = a.timeout or (skip + count + 2) * a.interval + 120
    out = {"conns": a.conns, "errors_total": 0, "notes": []}
    # Line-buffered stdout (the clients use printf); the client keeps this process's pid through stdbuf's exec.
    # SIGTERM (from bench-peers.sh's exit trap) unwinds through the `finally` below, which stops the client.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = subprocess.Popen(["stdbuf", "-oL", *a.command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace")
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    samples = []  # (t, server_cpu, client_cpu, value) at "Running" (value None) and at each report
    started = False
    deadline = time.monotonic() + limit
    buf = ""
    try:
        while len(samples) < 1 + skip + count:
            left = deadline - time.monotonic()
            if left <= 0:
                out["error"] = f"timed out after {limit:.0f} s ({len(samples)} reports)"
                break
            if not sel.select(timeout=min(left, 1.0)):
                if p.poll() is not None:
                    out["error"] = f"client exited with {p.returncode}"
                    break
                continue
            chunk = os.read(p.stdout.fileno(), 65536).decode(errors="replace")
            if not chunk:
                out["error"] = f"client exited with {p.wait()}"
                break
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                now = time.monotonic()
                if line.startswith("Running benchmark now"):
                    started = True
                    samples = [(now, proc_cpu(a.server_pid), proc_cpu(p.pid), None)]
                elif started and (m := pattern.match(line)):
                    samples.append((now, proc_cpu(a.server_pid), proc_cpu(p.pid), float(m.group(1))))
                elif line.startswith(("Closed!", "Client was disconnected", "ERROR")):
                    out["errors_total"] += 1
                    if len(out["notes"]) < 3:
                        out["notes"].append(line.strip())
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    out["server_rss_kib"] = proc_rss_kib(a.server_pid)
    if "error" not in out and len(samples) == 1 + skip + count:
        first, last = samples[skip], samples[-1]
        wall = last[0] - first[0]
        reports = sum(s[3] for s in samples[skip + 1:]) * a.interval  # the clients print count / interval
        per_report = a.conns * a.conns if a.kind == "broadcast" else 1
        msgs = reports * per_report
        out.update(duration_s=round(wall, 3), received=round(msgs), msgs_per_s=msgs / wall if wall > 0 else 0.0)
        if a.kind == "broadcast":
            out["rounds_per_s"] = reports / wall if wall > 0 else 0.0
        for side, i in (("server", 1), ("client", 2)):
            if first[i] is None or last[i] is None:
                out[f"{side}_cpu_pct"] = out[f"{side}_cpu_us_per_msg"] = None
                continue
            cpu = last[i] - first[i]
            out[f"{side}_cpu_pct"] = 100 * cpu / wall if wall > 0 else None
            out[f"{side}_cpu_us_per_msg"] = 1e6 * cpu / msgs if msgs else None
    elif "error" not in out:
        out["error"] = "too few reports"
    print(json.dumps(out))
    return 0 if "error" not in out else 1


def load_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def rates(a):
    given = dict(kv.split("=", 1) for kv in a.rates.split()) if a.rates else {}
    rows = load_rows(a.rows) if os.path.exists(a.rows) else []
    for case in a.cases.split():
        if case in given:
            sat = float(given[case])
        else:
            v = [r["msgs_per_s"] for r in rows if r.get("table") == "probe" and r.get("case") == case
                 and r.get("server") == a.server and r.get("msgs_per_s")]
            if not v:
                print(f"benchlib: no saturated rate for {case} (probe failed and not in RATES)", file=sys.stderr)
                continue
            sat = statistics.median(v)
        for fr in a.fractions.split():
            print(case, fr, round(float(fr) * sat))
    return 0


def cell(values, fmt):
    """median (min-max) of the values that exist; '-' when none."""
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    med = format(statistics.median(v), fmt)
    if len(v) == 1:
        return med
    lo, hi = format(min(v), fmt), format(max(v), fmt)
    return med if lo == hi else f"{med} ({lo}-{hi})"


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def groups(rows, table, key):
    """Rows of `table` grouped by key(row), in first-seen order."""
    out = {}
    for r in rows:
        if r.get("table") == table:
            out.setdefault(key(r), []).append(r)
    return out


def notes_of(rs):
    n = []
    for r in rs:
        for x in r.get("notes", []):
            if x not in n:
                n.append(x)
    ok = sum(1 for r in rs if r.get("msgs_per_s") is not None)
    if ok < len(rs):
        n.insert(0, f"{len(rs) - ok} of {len(rs)} rounds failed")
    return "; ".join(n[:4])


def bound(rs, limit):
    c = median([r.get("client_cpu_pct") for r in rs])
    s = median([r.get("server_cpu_pct") for r in rs])
    if c is not None and c >= limit:
        return "client"
    if s is not None and s >= limit:
        return "server"
    return "neither" if c is not None else "-"


def lat(rs, q):
    return [(r.get("latency_us") or {}).get(q) for r in rs]


def report(a):
    rows = load_rows(a.rows)
    out = []
    if a.title:
        out += [f"## {a.title}", ""]
    if a.method:
        out += [a.method, ""]
    rss = lambda rs: [None if r.get("server_rss_kib") is None else r["server_rss_kib"] / 1024 for r in rs]

    echo = groups(rows, "echo", lambda r: (r["case"], r["server"], r["client"]))
    if echo:
        out += ["### Closed loop (one message in flight per connection), saturated", "",
                "| conns x bytes | server | client | msg/s | server µs/msg | server CPU% | client CPU% | "
                "client µs/msg | p50 / p99 µs | server RSS MiB | bound | rounds | notes |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (case, server, client), rs in echo.items():
            p = f'{cell(lat(rs, "p50"), ".0f")} / {cell(lat(rs, "p99"), ".0f")}' if client == "loadtest" else "-"
            out.append(f'| {case} | {server} | {client} | {cell([r.get("msgs_per_s") for r in rs], ".0f")} | '
                       f'{cell([r.get("server_cpu_us_per_msg") for r in rs], ".2f")} | '
                       f'{cell([r.get("server_cpu_pct") for r in rs], ".0f")} | '
                       f'{cell([r.get("client_cpu_pct") for r in rs], ".0f")} | '
                       f'{cell([r.get("client_cpu_us_per_msg") for r in rs], ".2f")} | {p} | '
                       f'{cell(rss(rs), ".1f")} | {bound(rs, a.client_bound)} | {len(rs)} | {notes_of(rs)} |')
        out.append("")
        # Ratios of medians of server CPU per message: ringws against uWebSockets (same client) and the floor.
        med = {k: median([r.get("server_cpu_us_per_msg") for r in rs]) for k, rs in echo.items()}
        ratio_rows = []
        for (case, server, client), m in med.items():
            if server != "ringws" or m is None:
                continue
            u = med.get((case, "uws", client))
            if u:
                ratio_rows.append(f"| {case} | ringws / uws | {client} | {m / u:.2f} |")
            for floor in ("uring_echo", "tokio_uring_echo"):
                f = med.get((case, floor, "tcp_load"))
                if f and client == "loadtest":
                    ratio_rows.append(f"| {case} | ringws / {floor} | loadtest / tcp_load | {m / f:.2f} |")
        if ratio_rows:
            out += ["Server CPU per message, ratio of medians:", "",
                    "| conns x bytes | ratio | client | server µs/msg ratio |", "|---|---|---|---|", *ratio_rows, ""]

    rate = groups(rows, "rate", lambda r: (r["case"], r["fraction"], r["server"]))
    if rate:
        out += ["### Open loop (`loadtest --mode rate`), fixed offered rate", ""]
        probe = groups(rows, "probe", lambda r: (r["case"], r["server"]))
        if probe:
            sat = ", ".join(f'{case} {server} {cell([r.get("msgs_per_s") for r in rs], ".0f")} msg/s'
                            for (case, server), rs in probe.items())
            out += [f"Offered rates are fractions of these saturated rates (`loadtest`, closed loop): {sat}.", ""]
        out += ["| conns x bytes | offered msg/s | server | achieved msg/s | server µs/msg | server CPU% | "
                "client CPU% | p50 µs | p99 µs | rounds | notes |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for (case, fraction, server), rs in rate.items():
            offered = rs[0].get("rate")
            out.append(f'| {case} | {offered} ({float(fraction) * 100:.0f}% of uws) | {server} | '
                       f'{cell([r.get("msgs_per_s") for r in rs], ".0f")} | '
                       f'{cell([r.get("server_cpu_us_per_msg") for r in rs], ".2f")} | '
                       f'{cell([r.get("server_cpu_pct") for r in rs], ".0f")} | '
                       f'{cell([r.get("client_cpu_pct") for r in rs], ".0f")} | {cell(lat(rs, "p50"), ".0f")} | '
                       f'{cell(lat(rs, "p99"), ".0f")} | {len(rs)} | {notes_of(rs)} |')
        out.append("")

    bc = groups(rows, "broadcast", lambda r: (r["case"], r["server"]))
    if bc:
        out += ["### Fan-out (`broadcast_test`: each round every client sends 20 B, waits for CONNS^2 deliveries)", "",
                "| conns | server | rounds/s | deliveries/s | server CPU% | client CPU% | server µs/delivery | "
                "bound | rounds | notes |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for (case, server), rs in bc.items():
            out.append(f'| {case} | {server} | {cell([r.get("rounds_per_s") for r in rs], ".1f")} | '
                       f'{cell([r.get("msgs_per_s") for r in rs], ".0f")} | '
                       f'{cell([r.get("server_cpu_pct") for r in rs], ".0f")} | '
                       f'{cell([r.get("client_cpu_pct") for r in rs], ".0f")} | '
                       f'{cell([r.get("server_cpu_us_per_msg") for r in rs], ".3f")} | {bound(rs, a.client_bound)} | '
                       f'{len(rs)} | {notes_of(rs)} |')
        out.append("")

    out.append(f"`bound`: client if the client's median CPU >= {a.client_bound}% of its core (the row then measures the "
               f"client: compare server µs/msg), server if the server's is; cells are median (min-max) over rounds.")
    print("\n".join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    u = sub.add_parser("uws-client")
    u.add_argument("--kind", choices=sorted(RATE_LINE), required=True)
    u.add_argument("--conns", type=int, required=True)
    u.add_argument("--server-pid", type=int, required=True)
    u.add_argument("--warmup", type=parse_duration, default=2.0)
    u.add_argument("--duration", type=parse_duration, default=10.0)
    u.add_argument("--interval", type=float, default=4.0)
    u.add_argument("--timeout", type=float, default=0)
    u.add_argument("command", nargs="+")
    r = sub.add_parser("rates")
    r.add_argument("rows")
    r.add_argument("--cases", required=True)
    r.add_argument("--fractions", required=True)
    r.add_argument("--server", default="uws")
    r.add_argument("--rates", default="")
    p = sub.add_parser("report")
    p.add_argument("rows")
    p.add_argument("--client-bound", type=float, default=90)
    p.add_argument("--title", default="")
    p.add_argument("--method", default="")
    a = ap.parse_args()
    if a.cmd == "free-port":
        print(free_port())
        return 0
    return {"uws-client": uws_client, "rates": rates, "report": report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
