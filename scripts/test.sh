#!/usr/bin/env bash
# scripts/test.sh -- the whole test suite, from a fresh machine (this is the README's test command; CI runs it).
#
# 1. installs what the tests need where missing (Debian: chromium, prometheus for promtool, redis-server for the
#    cross-node pub/sub tests, nodejs + npm when missing; npm: playwright-core, ws for the Node ws client test;
#    PyPI: Autobahn's wstest, websockets; crates.io: cargo-fuzz) -- idempotent, skipped when already present;
# 2. cargo test --workspace: unit tests, the protocol core by RFC section, the server on loopback, pub/sub,
#    promtool check of /metrics, the load client against the server; then the library built and its broker unit
#    tests run with --no-default-features (without the `redis` feature);
# 3. the real-browser test (headless Chromium via playwright-core) against `ringws` started on a free port, over
#    http and again over https (wss), then the chat across two `ringws --redis` nodes (scripts/browser-nodes-test.sh);
# 4. the Autobahn|Testsuite gate against /echo (every case as in autobahn/expected.json);
# 5. bounded fuzzing: each cargo-fuzz target for $FUZZ_SECONDS (default 60) seconds; fails on any crash.
#
# Skip stages with SKIP_BROWSER=1, SKIP_AUTOBAHN=1, SKIP_FUZZ=1 (CI runs them all).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
step() { printf '\n==== %s ====\n' "$*"; }

step "install test dependencies (idempotent)"
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "not root: cannot apt-get install ${need_apt[*]} (the tests that need them will say so)"
  fi
fi
# The wss test (tests/tls_server.rs) drives Python `websockets` (>= 13, for its asyncio client) over TLS.
python3 -c 'import websockets.asyncio.client' 2>/dev/null \
  || python3 -m pip install --quiet 'websockets>=13' \
  || echo "cannot install Python websockets (the wss test will say so)"
if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
# The Node ws client test (tests/deflate_node.rs) runs tests/node_ws/echo.mjs with the pinned ws.
(cd tests/node_ws && npm ci --no-audit --no-fund --loglevel=error)
if [ "${SKIP_FUZZ:-0}" != 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi

step "cargo test --workspace"
# The broker tests start their own redis-server on free loopback ports; here a missing one is a failure, not a skip;
# likewise node + ws for the Node ws client test.
RINGWS_REQUIRE_REDIS=1 RINGWS_REQUIRE_NODE_WS=1 cargo test --workspace

step "the library without its default features (no Redis bridge: no redis crate, no tokio)"
cargo build --lib --no-default-features
cargo test --lib --no-default-features -q broker

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  step "browser test (headless Chromium)"
  cargo build --release --quiet --bin ringws
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  target/release/ringws --port "$PORT" --no-pin >target/browser-server.log 2>&1 &
  SRV=$!
  trap 'kill $SRV 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" 2>/dev/null && break
    sleep 0.1
  done
  RINGWS_URL="http://127.0.0.1:$PORT" bash scripts/browser-test.sh
  kill -INT $SRV; wait $SRV; trap - EXIT
  echo "server exited cleanly after SIGINT"

  step "browser test over https (wss from the page, test certificate)"
  TLSDIR=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$TLSDIR/key.pem" -out "$TLSDIR/cert.pem" 2>/dev/null
  target/release/ringws --port "$PORT" --no-pin --tls-cert "$TLSDIR/cert.pem" --tls-key "$TLSDIR/key.pem" \
    >target/browser-tls-server.log 2>&1 &
  SRV=$!
  trap 'kill $SRV 2>/dev/null || true; rm -rf "$TLSDIR"' EXIT
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" 2>/dev/null && break
    sleep 0.1
  done
  NODE_EXTRA_CA_CERTS="$TLSDIR/cert.pem" RINGWS_URL="https://127.0.0.1:$PORT" bash scripts/browser-test.sh
  kill -INT $SRV; wait $SRV; trap - EXIT
  rm -rf "$TLSDIR"

  step "browser test across two nodes (Redis)"
  bash scripts/browser-nodes-test.sh target/release/ringws
fi

if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
  step "Autobahn|Testsuite gate"
  bash scripts/autobahn.sh
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "bounded fuzzing (${FUZZ_SECONDS}s per target)"
  bash scripts/fuzz.sh "$FUZZ_SECONDS"
fi

step "all test stages passed"
