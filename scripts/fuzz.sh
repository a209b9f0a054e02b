#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] -- run every cargo-fuzz target for SECONDS (default 60) each, starting from the committed
# seed corpus; fails on the first crash (libFuzzer exits non-zero and leaves the input in fuzz/artifacts/).
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags it needs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
cd "$ROOT"
export RUSTC_BOOTSTRAP=1
for t in decoder handshake door mask envelope tls inflate; do
  mkdir -p "target/fuzz-corpus/$t"
  cp -n fuzz/corpus/$t/seed-* "target/fuzz-corpus/$t/" 2>/dev/null || true
  echo "-- fuzz target $t for ${SECS}s"
  log="target/fuzz-$t.log"
  if ! cargo fuzz run "$t" "target/fuzz-corpus/$t" -- -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"; echo "fuzz target $t FAILED (crash input in fuzz/artifacts/$t/)" >&2; exit 1
  fi
  grep -E "^stat::number_of_executed_units" "$log" | sed "s/^/   $t: /"
done
