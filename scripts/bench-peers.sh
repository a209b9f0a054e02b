#!/usr/bin/env bash
# Side-by-side echo benchmark: ringws and the peer servers in $REPO/../shared/peers, each pinned to one CPU, driven by
# `loadtest` pinned to another. Cases x servers are interleaved, in several rounds. Writes a markdown table to stdout
# and to $OUT.
#
# Environment (all optional):
#   DURATION=10s WARMUP=2s ROUNDS=2
#   CASES="100x20 10x1024 10x16384 1000x20 10000x20"        (connections x payload bytes)
#   SERVERS="ringws fastwebsockets tokio-websockets tokio-tungstenite ws scratch"
#   RINGWS_CMD="target/release/ringws --workers 1 --port {port}"   ({port} is replaced; run from the repo root)
#   SERVER_CPU=0 CLIENT_CPU=1  LOADTEST_ARGS="--inflight 1"  OUT=bench-peers-<date>.md  NOBUILD=1 (skip builds)
#   PORT_BASE=19100 (servers listen on PORT_BASE+1..6)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${PEERS:-$REPO/../shared/peers}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-2}
CASES=${CASES:-"100x20 10x1024 10x16384 1000x20 10000x20"}
SERVERS=${SERVERS:-"ringws fastwebsockets tokio-websockets tokio-tungstenite ws"}
RINGWS_CMD=${RINGWS_CMD:-"target/release/ringws --workers 1 --port {port}"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LOADTEST_ARGS=${LOADTEST_ARGS:-}
OUT=${OUT:-$REPO/bench-peers-$(date +%Y%m%d-%H%M%S).md}
LOADTEST=$REPO/target/release/loadtest

SERVER_PID=""
TMP=$(mktemp -d)
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-peers: $*" >&2; }

if [[ "${NOBUILD:-0}" != 1 ]]; then
    log "building ringws and loadtest"
    (cd "$REPO" && cargo build --release && cargo build --release -p loadtest) >&2
    if [[ -d "$PEERS/rust" ]]; then
        log "building Rust peers"
        (cd "$PEERS/rust" && cargo build --release) >&2
    fi
    if [[ -d "$PEERS/node" ]] && command -v npm >/dev/null; then
        log "installing Node peers"
        (cd "$PEERS/node" && npm ci --no-audit --no-fund) >&2
    fi
fi
[[ -x "$LOADTEST" ]] || { log "missing $LOADTEST"; exit 2; }

# name -> port and command line ({port} replaced).
# Ports: PORT_BASE + 1..6 (default 19100, away from the README's 910x which others may be using by hand).
port_of() {
    local b=${PORT_BASE:-19100}
    case "$1" in
        ringws) echo $((b + 1)) ;; fastwebsockets) echo $((b + 2)) ;; tokio-websockets) echo $((b + 3)) ;;
        tokio-tungstenite) echo $((b + 4)) ;; ws) echo $((b + 5)) ;; scratch) echo $((b + 6)) ;; *) return 1 ;;
    esac
}
cmd_of() {
    local p=$2
    case "$1" in
        ringws) echo "${RINGWS_CMD//\{port\}/$p}" ;;
        fastwebsockets) echo "$PEERS/rust/target/release/fastws_echo 127.0.0.1:$p" ;;
        tokio-websockets) echo "$PEERS/rust/target/release/tokiows_echo 127.0.0.1:$p" ;;
        tokio-tungstenite) echo "$PEERS/rust/target/release/tungstenite_echo 127.0.0.1:$p" ;;
        ws) echo "node $PEERS/node/ws-echo.js $p" ;;
        scratch) echo "node $PEERS/node/scratch-echo.js $p" ;;
    esac
}
path_of() { [[ "$1" == ringws ]] && echo /echo || echo /; }

start_server() { # name port
    local cmd
    cmd=$(cmd_of "$1" "$2")
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
        log "port $2 is already in use by another process; not starting $1"
        return 1
    fi
    (cd "$REPO" && exec taskset -c "$SERVER_CPU" $cmd) >"$TMP/$1.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    log "$1 did not start: $(tail -3 "$TMP/$1.log")"
    stop_server
    return 1
}
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    sleep 0.5
}

# Duration in whole seconds (rough) for the time limit of each run.
secs() { python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([\d.]+)(ms|s|m)?$',v); x=float(m.group(1)); u=m.group(2) or 's'; print(int(x/1000 if u=='ms' else x*60 if u=='m' else x)+1)" "$1"; }
LIMIT=$(( $(secs "$DURATION") + $(secs "$WARMUP") + 90 ))

ROWS=$TMP/rows
: >"$ROWS"
for round in $(seq "$ROUNDS"); do
    for case in $CASES; do
        conns=${case%x*}
        size=${case#*x}
        for s in $SERVERS; do
            port=$(port_of "$s") || { log "unknown server $s"; continue; }
            log "round $round: $s $conns x $size"
            if ! start_server "$s" "$port"; then
                echo "| $s | $case | $round | - | - | - | - | - | - | - | server did not start |" >>"$ROWS"
                continue
            fi
            json=$TMP/out.json
            set +e
            timeout "$LIMIT" taskset -c "$CLIENT_CPU" "$LOADTEST" --url "ws://127.0.0.1:$port$(path_of "$s")" \
                --conns "$conns" --size "$size" --duration "$DURATION" --warmup "$WARMUP" \
                --server-pid "$SERVER_PID" --json --quiet $LOADTEST_ARGS >"$json" 2>"$TMP/lt.err"
            rc=$?
            set -e
            stop_server
            python3 - "$json" "$s" "$case" "$round" "$rc" >>"$ROWS" <<'EOF' || echo "| $s | $case | $round | - | - | - | - | - | - | - | loadtest exit $rc |" >>"$ROWS"
import json, sys
path, server, case, rnd, rc = sys.argv[1:]
j = json.load(open(path))
f = lambda v, fmt: "-" if v is None else format(v, fmt)
rss = j.get("server_rss_kib")
note = [] if rc == "0" else [f"exit {rc}"]
if j["connect_failed"]:
    note.append(f'{j["connect_failed"]} connect failures')
if j["errors_total"]:
    note.append(f'{j["errors_total"]} errors')
print(f'| {server} | {case} | {rnd} | {j["msgs_per_s"]:.0f} | {f(j["server_cpu_pct"], ".0f")} | '
      f'{j["client_cpu_pct"]:.0f} | {f(j["server_cpu_us_per_msg"], ".2f")} | {j["client_cpu_us_per_msg"]:.2f} | '
      f'{"-" if rss is None else format(rss / 1024, ".1f")} | {j["latency_us"]["p99"]} | {", ".join(note)} |')
EOF
        done
    done
done

{
    echo "## Echo benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) CPUs"
    echo
    echo "Server pinned to CPU $SERVER_CPU, \`loadtest\` pinned to CPU $CLIENT_CPU, $DURATION measured after $WARMUP warm-up," \
        "$ROUNDS interleaved round(s). CPU% is of one core; µs/msg is CPU time per echoed message. A client near 100%" \
        "means the row measures the client, not the server: compare the server's µs/msg then."
    echo
    echo "| server | conns x bytes | round | msg/s | server CPU% | client CPU% | server µs/msg | client µs/msg | server RSS MiB | p99 µs | notes |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for case in $CASES; do
        for s in $SERVERS; do grep -F "| $s | $case |" "$ROWS" || true; done
    done
} | tee "$OUT"
log "written to $OUT"
