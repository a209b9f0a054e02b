#!/usr/bin/env bash
# The chat demo across two nodes in a real browser: starts redis-server on a free loopback port (in a temp dir),
# two `ringws --redis` nodes on free ports, waits until both say /healthz ok, runs tests/browser/nodes.test.mjs,
# and stops everything it started (on any exit).
#
#   scripts/browser-nodes-test.sh [path/to/ringws]     # default target/release/ringws
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/ringws}"
command -v redis-server >/dev/null || { echo "browser-nodes-test: redis-server is required" >&2; exit 2; }
[[ -x "$BIN" ]] || { echo "browser-nodes-test: $BIN not built" >&2; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
PA=$(free_port)
PB=$(free_port)
for P in "$PA" "$PB"; do
  "$BIN" --port "$P" --no-pin --workers 2 --redis "redis://127.0.0.1:$RPORT/0" >"$ROOT/target/browser-node-$P.log" 2>&1 &
  PIDS+=($!)
done
for P in "$PA" "$PB"; do
  ok=0
  for _ in $(seq 100); do
    if [[ "$(curl -fsS "http://127.0.0.1:$P/healthz" 2>/dev/null)" == ok ]]; then ok=1; break; fi
    sleep 0.1
  done
  [[ $ok == 1 ]] || { echo "browser-nodes-test: node on $P never reported ok" >&2; exit 1; }
done

cd "$ROOT/tests/browser"
npm ci --no-audit --no-fund --loglevel=error
RINGWS_URL_A="http://127.0.0.1:$PA" RINGWS_URL_B="http://127.0.0.1:$PB" \
  timeout --kill-after=10 180 node --test --test-reporter=spec --test-timeout=120000 nodes.test.mjs
