#!/usr/bin/env bash
# Real-browser test of the demo page: headless Debian Chromium driven by playwright-core.
#
#   scripts/browser-test.sh [SERVER_URL]      # or RINGWS_URL=...; default http://127.0.0.1:1338
#
# Installs what it needs (Chromium via apt if /usr/bin/chromium is missing, node deps via npm ci),
# waits up to 15 s for SERVER_URL/healthz, then runs `node --test`. The server must already be
# running. Screenshots: tests/browser/artifacts/*.png. Exit status is non-zero on any failure.
set -euo pipefail

URL="${1:-${RINGWS_URL:-http://127.0.0.1:1338}}"
URL="${URL%/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/browser"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$CHROMIUM" ]]; then
  echo "browser-test: $CHROMIUM missing, installing chromium with apt" >&2
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

command -v node >/dev/null || { echo "browser-test: node (>= 20) is required" >&2; exit 2; }

cd "$DIR"
npm ci --no-audit --no-fund --loglevel=error

echo "browser-test: waiting for $URL/healthz" >&2
healthy=0
for _ in $(seq 1 30); do
  if node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$URL/healthz"; then
    healthy=1
    break
  fi
  sleep 0.5
done
if [[ $healthy -ne 1 ]]; then
  echo "browser-test: FAIL: no server answering $URL/healthz (start ringws first)" >&2
  exit 1
fi

export RINGWS_URL="$URL"
exec timeout --kill-after=10 300 node --test --test-reporter=spec --test-timeout=120000 browser.test.mjs
