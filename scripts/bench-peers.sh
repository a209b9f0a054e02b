#!/usr/bin/env bash
# Side-by-side benchmark of ringws, uWebSockets and the other peer servers in $PEERS (../shared/peers), each server
# pinned to one CPU and the load client to another, servers interleaved within every round. Writes markdown tables
# (median and min-max range per cell) to stdout and $OUT, and the raw per-round rows (JSON lines) to $OUT.jsonl.
#
# What it runs, per round, in this order:
#   echo       closed loop, one message in flight per connection, for each case in CASES x each server in SERVERS x
#              each client in CLIENTS: `loadtest` (ringws' client) and `load_test` (uWebSockets' C client, which
#              requests `GET /`). FLOOR=1 adds the transport floor (perf/floor: `uring_echo`, `tokio_uring_echo`,
#              bare TCP echo servers) driven by its `tcp_load` client in FLOOR_CASES.
#   rate       open loop (`loadtest --mode rate`) at fixed offered rates: RATE_FRACTIONS of what uWebSockets saturates
#              at in RATE_CASES. The saturated rates are measured once before round 1 (`probe` rows: `loadtest`
#              closed loop against uws_echo) unless RATES gives them. Reports p50/p99 latency.
#   broadcast  uWebSockets' `broadcast_test BROADCAST_CONNS` against `uws_broadcast` and ringws' `/broadcast` route:
#              rounds/s, deliveries/s (= rounds x CONNS^2) and server CPU per delivery.
# Every measurement starts a fresh server on a free port and stops it afterwards; a server that does not start is
# reported in its row and skipped. Server CPU is utime + stime from /proc/PID/stat over the measured window (read by
# `loadtest --server-pid`, by `tcp_load --server-pid`, and for uWebSockets' clients by perf/benchlib.py at the
# clients' own 4-second reports). A row is client-bound when the client's median CPU is >= CLIENT_BOUND% of its core:
# its msg/s then measures the client, and the server's CPU per message is the comparable figure.
#
# Environment (all optional; defaults in brackets):
#   DURATION [10s]  WARMUP [2s]  ROUNDS [3]       measured time, warm-up and rounds per cell. uWebSockets' clients
#                                                 report every 4 s: they skip ceil(WARMUP/4) reports and measure
#                                                 max(1, ceil(DURATION/4)) reports.
#   CASES ["100x20 10x1024 10x16384 1000x20 10000x20"]      closed-loop cases, CONNSxBYTES
#   SERVERS ["ringws uws fastwebsockets tokio-websockets tokio-tungstenite ws"]   also: scratch
#   CLIENTS ["loadtest uws"]                      clients of the closed-loop rows (uws = uWebSockets' load_test)
#   RATE_CASES ["100x20 10x1024 10x16384"]        open-loop cases ("" = no open-loop rows)
#   RATE_FRACTIONS ["0.25 0.5"]                   offered rate as a fraction of uWebSockets' saturated msg/s
#   RATE_SERVERS [$SERVERS]                       servers of the open-loop rows
#   RATES [""]                                    saturated rates to use instead of measuring them, e.g.
#                                                 "100x20=175000 10x1024=162000 10x16384=103000"
#   BROADCAST [1]  BROADCAST_CONNS [100]  BROADCAST_SERVERS ["ringws uws"]   fan-out rows (0 = none)
#   FLOOR [0]  FLOOR_CASES [$CASES]  FLOOR_SERVERS ["uring_echo tokio_uring_echo"]   transport-floor rows
#   RINGWS_CMD ["$RINGWS_TARGET/release/ringws --workers 1 --port {port}"]   ({port} is replaced)
#   RINGWS_PATH [/echo]                           path `loadtest` uses against ringws (others: /)
#   RINGWS_TARGET [$REPO/target]                  cargo target directory of ringws and loadtest
#   PEERS [$REPO/../shared/peers]  PEERS_TARGET [$PEERS/rust/target]   peers' sources and their Rust target dir
#   UWS_DIR [/tmp/uws-peer]                       where uws_echo, uws_broadcast, load_test, broadcast_test live
#   UWS_SRC [/work/.mirror/uNetworking+uWebSockets/repo]  USOCKETS_SRC [/work/.mirror/uNetworking+uSockets/repo]
#                                                 sources (plain trees or bare mirrors) $PEERS/uws/build.sh builds
#                                                 UWS_DIR from when it is incomplete; uWebSockets is skipped, with a
#                                                 message, if they are absent
#   FLOOR_TARGET [$REPO/perf/floor/target]        cargo target directory of the perf/floor crate
#   SERVER_CPU [0]  CLIENT_CPU [1]                CPUs the server and the client are pinned to
#   CLIENT_BOUND [90]                             client CPU% from which a row counts as client-bound
#   LOADTEST_ARGS [""]                            extra arguments for every loadtest run
#   NOBUILD [0]                                   1: build nothing (missing binaries are skipped)
#   OUT [$REPO/bench-peers-<date>.md]             markdown output; raw rows go to $OUT.jsonl
#
# Examples:
#   scripts/bench-peers.sh                                            # the full measurement (about 1.5 h)
#   NOBUILD=1 DURATION=2s WARMUP=1s ROUNDS=1 CASES=100x20 RATE_CASES=100x20 SERVERS="ringws uws" FLOOR=1 \
#       scripts/bench-peers.sh                                        # a smoke test (about 2 minutes)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${PEERS:-$REPO/../shared/peers}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CASES=${CASES-"100x20 10x1024 10x16384 1000x20 10000x20"}
SERVERS=${SERVERS:-"ringws uws fastwebsockets tokio-websockets tokio-tungstenite ws"}
CLIENTS=${CLIENTS:-"loadtest uws"}
RATE_CASES=${RATE_CASES-"100x20 10x1024 10x16384"}
RATE_FRACTIONS=${RATE_FRACTIONS:-"0.25 0.5"}
RATE_SERVERS=${RATE_SERVERS:-$SERVERS}
RATES=${RATES:-}
BROADCAST=${BROADCAST:-1}
BROADCAST_CONNS=${BROADCAST_CONNS:-100}
BROADCAST_SERVERS=${BROADCAST_SERVERS:-"ringws uws"}
FLOOR=${FLOOR:-0}
FLOOR_CASES=${FLOOR_CASES-$CASES}
FLOOR_SERVERS=${FLOOR_SERVERS:-"uring_echo tokio_uring_echo"}
RINGWS_TARGET=${RINGWS_TARGET:-$REPO/target}
RINGWS_CMD=${RINGWS_CMD:-"$RINGWS_TARGET/release/ringws --workers 1 --port {port}"}
RINGWS_PATH=${RINGWS_PATH:-/echo}
PEERS_TARGET=${PEERS_TARGET:-$PEERS/rust/target}
UWS_DIR=${UWS_DIR:-/tmp/uws-peer}
UWS_SRC=${UWS_SRC:-/work/.mirror/uNetworking+uWebSockets/repo}
USOCKETS_SRC=${USOCKETS_SRC:-/work/.mirror/uNetworking+uSockets/repo}
FLOOR_TARGET=${FLOOR_TARGET:-$REPO/perf/floor/target}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CLIENT_BOUND=${CLIENT_BOUND:-90}
LOADTEST_ARGS=${LOADTEST_ARGS:-}
OUT=${OUT:-$REPO/bench-peers-$(date +%Y%m%d-%H%M%S).md}
LOADTEST=$RINGWS_TARGET/release/loadtest
LIB=$REPO/perf/benchlib.py
ROWS=$OUT.jsonl

SERVER_PID=""
STARTED=() # every server pid this script started; all are killed on exit
TMP=$(mktemp -d)
CLIENT_PID=""
cleanup() {
    local p
    if [[ -n "$CLIENT_PID" ]] && kill -0 "$CLIENT_PID" 2>/dev/null; then
        kill "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" 2>/dev/null || true
    fi
    for p in "${STARTED[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            sleep 0.2
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-peers: $*" >&2; }

# 10,000 connections need as many descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

uws_bins="uws_echo uws_broadcast load_test broadcast_test"
uws_complete() { local b; for b in $uws_bins; do [[ -x "$UWS_DIR/$b" ]] || return 1; done; }

if [[ "${NOBUILD:-0}" != 1 ]]; then
    log "building ringws and loadtest (release)"
    (cd "$REPO" && export CARGO_TARGET_DIR=$RINGWS_TARGET && cargo build --release -p ringws --bin ringws &&
        cargo build --release -p loadtest) >&2
    if [[ -d "$PEERS/rust" ]]; then
        log "building Rust peers into $PEERS_TARGET"
        (cd "$PEERS/rust" && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release) >&2 || log "Rust peers did not build"
    fi
    if [[ -d "$PEERS/node" ]] && command -v npm >/dev/null; then
        log "installing Node peers"
        (cd "$PEERS/node" && npm ci --no-audit --no-fund) >&2 || log "npm ci failed"
    fi
    if ! uws_complete; then
        if [[ -e "$UWS_SRC" && -e "$USOCKETS_SRC" && -x "$PEERS/uws/build.sh" ]]; then
            log "building uWebSockets into $UWS_DIR from $UWS_SRC and $USOCKETS_SRC"
            "$PEERS/uws/build.sh" "$UWS_SRC" "$USOCKETS_SRC" "$UWS_DIR" >&2 || log "uWebSockets did not build"
        else
            log "uWebSockets sources not found (UWS_SRC=$UWS_SRC USOCKETS_SRC=$USOCKETS_SRC): skipping uWebSockets"
        fi
    fi
    if [[ "$FLOOR" == 1 ]]; then
        log "building the transport floor (perf/floor, release)"
        (cd "$REPO/perf/floor" && CARGO_TARGET_DIR=$FLOOR_TARGET cargo build --release) >&2 || log "perf/floor did not build"
    fi
fi
[[ -x "$LOADTEST" ]] || { log "missing $LOADTEST (build it, or set RINGWS_TARGET)"; exit 2; }
if ! uws_complete; then
    log "uWebSockets binaries missing in $UWS_DIR: uws server and uws clients are skipped"
fi

# Server name -> command line ({port} replaced), and the binary that must exist.
cmd_of() {
    local p=$2 rb=$PEERS_TARGET/release fb=$FLOOR_TARGET/release
    case "$1" in
        ringws) echo "${RINGWS_CMD//\{port\}/$p}" ;;
        uws) echo "$UWS_DIR/uws_echo $p plain" ;;
        uws_broadcast) echo "$UWS_DIR/uws_broadcast $p" ;;
        fastwebsockets) echo "$rb/fastws_echo 127.0.0.1:$p" ;;
        tokio-websockets) echo "$rb/tokiows_echo 127.0.0.1:$p" ;;
        tokio-tungstenite) echo "$rb/tungstenite_echo 127.0.0.1:$p" ;;
        ws) echo "node $PEERS/node/ws-echo.js $p" ;;
        scratch) echo "node $PEERS/node/scratch-echo.js $p" ;;
        uring_echo | tokio_uring_echo) echo "$fb/$1 127.0.0.1:$p" ;;
        *) return 1 ;;
    esac
}
path_of() { [[ "$1" == ringws ]] && echo "$RINGWS_PATH" || echo /; }

start_server() { # name port
    local cmd bin
    cmd=$(cmd_of "$1" "$2") || { log "unknown server $1"; START_ERR="is unknown"; return 1; }
    bin=${cmd%% *}
    if [[ "$bin" == node ]]; then
        command -v node >/dev/null || { START_ERR="needs node, which is not installed"; return 1; }
    elif [[ ! -x "$bin" ]]; then
        START_ERR="is not built ($bin)"
        return 1
    fi
    # shellcheck disable=SC2086 # the command line is split into words on purpose
    (cd "$REPO" && exec taskset -c "$SERVER_CPU" $cmd) >"$TMP/$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    local why="not listening on $2 after 10 s"
    kill -0 "$SERVER_PID" 2>/dev/null || why="exited"
    START_ERR="did not start ($why): $(tail -2 "$TMP/$1.log" | tr '\n|' '  ')"
    log "$1 $START_ERR"
    stop_server
    return 1
}
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    sleep 0.3
}

# Whole seconds (rounded up) of a duration like 10s / 500ms / 1m.
secs() { python3 -c "import sys; sys.path.insert(0, '$REPO/perf'); import benchlib, math; print(math.ceil(benchlib.parse_duration(sys.argv[1])))" "$1"; }
LIMIT=$(($(secs "$DURATION") + $(secs "$WARMUP") + 120))

# Append one row: the client's JSON (or nothing) merged with the row's labels.
add_row() { # json_file rc table case server client round [key=value ...]
    python3 - "$@" >>"$ROWS" <<'EOF'
import json, sys
path, rc, table, case, server, client, rnd, *extra = sys.argv[1:]
try:
    j = json.load(open(path))
except Exception:
    j = {}
row = {"table": table, "case": case, "server": server, "client": client, "round": int(rnd)}
for kv in extra:
    k, v = kv.split("=", 1)
    row[k] = v
notes = list(j.pop("notes", []))
if j.get("error"):
    notes.append(j["error"])
if rc != "0":
    notes.append(f"client exit {rc}")
if j.get("connect_failed"):
    notes.append(f'{j["connect_failed"]} connect failures')
if j.get("errors_total"):
    notes.append(f'{j["errors_total"]} errors')
if j.get("mismatches"):
    notes.append(f'{j["mismatches"]} mismatches')
for k in ("msgs_per_s", "rounds_per_s", "server_cpu_pct", "server_cpu_us_per_msg", "client_cpu_pct",
          "client_cpu_us_per_msg", "server_rss_kib", "latency_us"):
    row[k] = j.get(k)
if not j.get("msgs_per_s"):
    row["msgs_per_s"] = None
row["notes"] = notes
print(json.dumps(row))
EOF
}
fail_row() { # table case server client round reason [key=value ...]
    local t=$1 c=$2 s=$3 cl=$4 r=$5 why=$6
    shift 6
    echo "{\"error\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$why")}" >"$TMP/fail.json"
    add_row "$TMP/fail.json" 0 "$t" "$c" "$s" "$cl" "$r" "$@"
}

# One measurement: start SERVER, run CLIENT, stop the server, append a row.
#   measure TABLE CASE SERVER CLIENT ROUND [loadtest extra args...]
measure() {
    local table=$1 case=$2 server=$3 client=$4 round=$5
    shift 5
    local conns=${case%x*} size=${case#*x} port rc=0 json=$TMP/out.json labels=()
    [[ "$table" == rate ]] && labels=("rate=$RATE_NOW" "fraction=$FRACTION_NOW")
    if [[ "$client" == uws || "$server" == uws* ]] && ! uws_complete; then
        fail_row "$table" "$case" "$server" "$client" "$round" "uWebSockets not built" "${labels[@]}"
        return
    fi
    port=$(python3 "$LIB" free-port)
    log "round $round: $table $case $server <- $client${RATE_NOW:+ @ $RATE_NOW msg/s}"
    START_ERR=""
    if ! start_server "$server" "$port"; then
        fail_row "$table" "$case" "$server" "$client" "$round" "server $START_ERR" "${labels[@]}"
        return
    fi
    local cmd=()
    case "$client" in
        loadtest)
            cmd=(timeout "$LIMIT" taskset -c "$CLIENT_CPU" "$LOADTEST"
                --url "ws://127.0.0.1:$port$(path_of "$server")" --conns "$conns" --size "$size"
                --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json --quiet "$@")
            # shellcheck disable=SC2206 # LOADTEST_ARGS is a list of words
            cmd+=($LOADTEST_ARGS)
            ;;
        uws)
            cmd=(python3 "$LIB" uws-client --kind load --conns "$conns" --server-pid "$SERVER_PID"
                --warmup "$WARMUP" --duration "$DURATION" --
                taskset -c "$CLIENT_CPU" "$UWS_DIR/load_test" "$conns" 127.0.0.1 "$port" 0 0 "$size")
            ;;
        broadcast_test)
            cmd=(python3 "$LIB" uws-client --kind broadcast --conns "$conns" --server-pid "$SERVER_PID"
                --warmup "$WARMUP" --duration "$DURATION" --
                taskset -c "$CLIENT_CPU" "$UWS_DIR/broadcast_test" "$conns" 127.0.0.1 "$port" 0)
            ;;
        tcp_load)
            cmd=(timeout "$LIMIT" taskset -c "$CLIENT_CPU" "$FLOOR_TARGET/release/tcp_load" --conns "$conns"
                --size "$size" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json
                "127.0.0.1:$port")
            ;;
    esac
    : >"$json"
    # In the background, so that a signal to this script is handled at once (bash defers traps until a foreground
    # command ends); the EXIT trap stops the client.
    "${cmd[@]}" >"$json" 2>"$TMP/client.err" &
    CLIENT_PID=$!
    set +e
    wait "$CLIENT_PID"
    rc=$?
    set -e
    CLIENT_PID=""
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        labels+=("server_died=1")
        log "$server exited during the run: $(tail -2 "$TMP/$server.log" | tr '\n' ' ')"
    fi
    stop_server
    [[ $rc == 0 ]] || log "client $client exit $rc: $(tail -2 "$TMP/client.err" | tr '\n' ' ')"
    add_row "$json" "$rc" "$table" "$case" "$server" "$client" "$round" "${labels[@]}"
}

# Other work on the machine distorts every figure: say so in the report.
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
if python3 -c "import sys; sys.exit(float(sys.argv[1]) < 0.5)" "$LOAD_BEFORE"; then
    log "warning: load average $LOAD_BEFORE before the run; the machine is not quiet, figures will be noisy"
fi

: >"$ROWS"
RATE_NOW=""
FRACTION_NOW=""
has() { [[ " $1 " == *" $2 "* ]]; }

# Saturated rates for the open-loop rows: uWebSockets with loadtest, closed loop, measured before round 1.
RATE_PLAN=$TMP/rates
: >"$RATE_PLAN"
if [[ -n "$RATE_CASES" ]]; then
    for case in $RATE_CASES; do
        if [[ " $RATES " != *" $case="* ]]; then
            measure probe "$case" uws loadtest 0
        fi
    done
    python3 "$LIB" rates "$ROWS" --cases "$RATE_CASES" --fractions "$RATE_FRACTIONS" --rates "$RATES" >"$RATE_PLAN"
    [[ -s "$RATE_PLAN" ]] || log "no saturated rate known: no open-loop rows (set RATES to give them)"
fi

for round in $(seq "$ROUNDS"); do
    all_cases=$CASES
    [[ "$FLOOR" == 1 ]] && for c in $FLOOR_CASES; do has "$all_cases" "$c" || all_cases="$all_cases $c"; done
    for case in $all_cases; do
        if has "$CASES" "$case"; then
            for s in $SERVERS; do
                for cl in $CLIENTS; do measure echo "$case" "$s" "$cl" "$round"; done
            done
        fi
        if [[ "$FLOOR" == 1 ]] && has "$FLOOR_CASES" "$case"; then
            for s in $FLOOR_SERVERS; do measure echo "$case" "$s" tcp_load "$round"; done
        fi
    done
    while read -r case fraction rate; do
        RATE_NOW=$rate
        FRACTION_NOW=$fraction
        for s in $RATE_SERVERS; do measure rate "$case" "$s" loadtest "$round" --mode rate --rate "$rate"; done
    done <"$RATE_PLAN"
    RATE_NOW=""
    FRACTION_NOW=""
    if [[ "$BROADCAST" == 1 ]]; then
        for s in $BROADCAST_SERVERS; do
            [[ "$s" == uws ]] && s=uws_broadcast
            measure broadcast "$BROADCAST_CONNS" "$s" broadcast_test "$round"
        done
    fi
done

method="Server pinned to CPU $SERVER_CPU, client pinned to CPU $CLIENT_CPU, $DURATION measured after $WARMUP warm-up \
(uWebSockets' clients: whole 4-second reports), $ROUNDS interleaved round(s), a fresh server per measurement. \
Kernel $(uname -r), $(nproc) CPUs. CPU% is of one core; µs/msg is CPU time per echoed message (per delivery for \
fan-out), user + system, including the kernel's loopback work done in the process's context. Clients: loadtest \
(ringws), uws = uWebSockets' benchmarks/load_test, tcp_load = perf/floor's TCP client. Load average before the run $LOAD_BEFORE, after $(cut -d' ' -f1 /proc/loadavg). Raw rows: $(basename "$ROWS")."
python3 "$LIB" report "$ROWS" --client-bound "$CLIENT_BOUND" \
    --title "Peer benchmark: $(date -u +%Y-%m-%dT%H:%MZ)" --method "$method" | tee "$OUT"
log "written to $OUT and $ROWS"
