#!/usr/bin/env bash
# scripts/autobahn.sh -- the Autobahn|Testsuite conformance gate.
#
# Builds ringws (release), starts it on 127.0.0.1:$AUTOBAHN_PORT, runs every fuzzingclient case against /echo
# (../shared/autobahn: wstest from PyPI, Python 2.7, no docker) and compares the result of every case with the
# committed expectations in autobahn/expected.json. Fails on any FAILED or NON-STRICT case, any missing case, and
# any case whose result differs from the expectation.
#
#   scripts/autobahn.sh            run the gate
#   scripts/autobahn.sh --update   run, then rewrite autobahn/expected.json from the results (review the diff!)
#
# Environment: AUTOBAHN_PORT (default 9001), AUTOBAHN_OUT (default target/autobahn), SHARED (default ../shared).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
OUT=${AUTOBAHN_OUT:-$ROOT/target/autobahn}
PORT=${AUTOBAHN_PORT:-9001}
UPDATE=${1:-}
cd "$ROOT"

echo "== autobahn: installing wstest (idempotent)"
bash "$SHARED/autobahn/setup-autobahn.sh" >/dev/null
echo "== autobahn: building ringws (release)"
cargo build --release --quiet --bin ringws

target/release/ringws --port "$PORT" --workers 1 --no-pin >"$OUT.server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" 2>/dev/null; then break; fi
  kill -0 $PID 2>/dev/null || { cat "$OUT.server.log"; echo "ringws failed to start" >&2; exit 2; }
  sleep 0.1
done

rc=0
AUTOBAHN_LOCK="" AUTOBAHN_AGENT=ringws bash "$SHARED/autobahn/run-autobahn.sh" "ws://127.0.0.1:$PORT/echo" "$OUT" || rc=$?
kill -0 $PID 2>/dev/null || { echo "ringws died during the run" >&2; cat "$OUT.server.log"; exit 2; }

python3 - "$OUT/index-merged.json" "$ROOT/autobahn/expected.json" "$UPDATE" <<'PY'
import json, sys
merged, expected_path, update = sys.argv[1], sys.argv[2], sys.argv[3]
res = json.load(open(merged))
res = res.get("ringws") or next(iter(res.values()))
got = {c: r["behavior"] for c, r in res.items()}
key = lambda c: [int(x) for x in c.split(".")]
if update == "--update":
    json.dump({c: got[c] for c in sorted(got, key=key)}, open(expected_path, "w"), indent=0)
    print("wrote", expected_path, len(got), "cases")
exp = json.load(open(expected_path))
bad = []
for c in sorted(set(exp) | set(got), key=key):
    e, g = exp.get(c), got.get(c)
    if g is None:
        bad.append("%s: missing from the results (expected %s)" % (c, e))
    elif g in ("FAILED", "NON-STRICT"):
        bad.append("%s: %s" % (c, g))
    elif e is None:
        bad.append("%s: new case, result %s (run with --update to accept)" % (c, g))
    elif e != g:
        bad.append("%s: expected %s, got %s" % (c, e, g))
counts = {}
for g in got.values():
    counts[g] = counts.get(g, 0) + 1
print("autobahn: %d cases: %s" % (len(got), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
if bad:
    print("autobahn gate FAILED (%d):" % len(bad))
    for b in bad:
        print("  " + b)
    sys.exit(1)
print("autobahn gate passed: every case as expected, none FAILED or NON-STRICT")
PY
gate=$?
# run-autobahn.sh exits 1 on FAILED cases (already reported above) and 2 when the run itself broke.
[ $rc -eq 2 ] && { echo "the Autobahn run itself broke (rc=2)" >&2; exit 2; }
exit $gate
