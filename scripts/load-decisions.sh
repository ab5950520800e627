#!/usr/bin/env bash
# Decisions against the web framework's limit, in one run on one machine.
#
#   [CUSTOMERS=1000] [CONNECTIONS=32] [DURATION=10s] [THREADS=2] scripts/load-decisions.sh
#
# 1. Starts `kairos serve` on a fresh data directory (embedded store, default
#    configuration: quiet hours, frequency caps with reservations) and loads
#    CUSTOMERS simulated customers with 8 weeks of history through the API
#    (`kairos simulate --server ... --train`).
# 2. wrk: POST /v1/decisions for random customers, CONNECTIONS connections.
# 3. The same wrk load against a minimal actix-web server (the `baseline`
#    example: parse a small JSON body, answer a small JSON object), same
#    worker count.
# 4. Prints both, and the ratio of throughputs.
#
# Everything runs on loopback; nothing leaves this machine. Needs wrk
# (Debian package `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${CUSTOMERS:-1000}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
PORT=${PORT:-18181}
BASE_PORT=${BASE_PORT:-18282}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; fi
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
fi

cargo build --release --locked --quiet --bin kairos
cargo build --release --locked --quiet -p kairos-server --example baseline
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/kairos
BASE=$TARGET/release/examples/baseline

DATA=$(mktemp -d /tmp/kairos-load-decisions.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DATA"; }
trap cleanup EXIT

KAIROS__STORE__PATH="$DATA/data" KAIROS__MODELS__DIR="$DATA/models" KAIROS__SERVER__BIND="127.0.0.1:$PORT" \
  RUST_LOG=warn "$BIN" serve &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
echo "loading $CUSTOMERS simulated customers (8 weeks of history) ..."
"$BIN" simulate --customers "$CUSTOMERS" --server "http://127.0.0.1:$PORT" --train >/dev/null
du -sh "$DATA/data" | sed 's/^/store: /'

"$BASE" "127.0.0.1:$BASE_PORT" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -X POST "http://127.0.0.1:$BASE_PORT/v1/decisions" \
  -H 'content-type: application/json' -d '{"customer_id":"x"}' >/dev/null && break; sleep 0.1; done

run() { # name port
  # A short warm-up, then the measured run.
  CUSTOMERS=$CUSTOMERS wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s scripts/decisions.lua "http://127.0.0.1:$2" >/dev/null
  CUSTOMERS=$CUSTOMERS wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/decisions.lua \
    "http://127.0.0.1:$2" | grep '^RESULT' | sed "s/^RESULT/$1/"
}
echo "sample decision: $(curl -s "http://127.0.0.1:$PORT/v1/decisions" -H 'content-type: application/json' \
  -d '{"customer_id":"sim-00001","quiet_hours":null}' | head -c 300)"
kairos=$(run kairos "$PORT")
baseline=$(run baseline "$BASE_PORT")
echo "$kairos"
echo "$baseline"
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
k=$(field "$kairos" rps); b=$(field "$baseline" rps)
errors=$(( $(field "$kairos" errors) + $(field "$kairos" non2xx_in_status) ))
echo "ratio: decisions at $(python3 -c "print(f'{100*$k/$b:.1f}')")% of the framework's limit ($k vs $b requests/s, $CONNECTIONS connections); decision p99 $(field "$kairos" p99_us) µs; errors $errors"
