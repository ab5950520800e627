#!/usr/bin/env bash
# Bytes per customer at rest (embedded store) and in the server's memory.
#
#   scripts/measure-memory.sh [CUSTOMERS] [WEEKS] [DATA_DIR]
#
# Seeds CUSTOMERS simulated customers (default 100,000) with WEEKS weeks of
# history (default 17: about 200 events each) straight into DATA_DIR (once;
# later runs reuse it), then starts `kairos serve` on it, reads its resident
# memory, asks for a decision for every customer (POST /v1/decisions/batch,
# which reads every record and fills the caches) and reads it again.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${1:-100000}
WEEKS=${2:-17}
DATA=${3:-/tmp/kairos-memory}
PORT=${PORT:-18184}

cargo build --release --locked --quiet --bin kairos
BIN=${CARGO_TARGET_DIR:-target}/release/kairos
if [ ! -f "$DATA/.seeded-$CUSTOMERS-$WEEKS" ]; then
  rm -rf "$DATA"
  echo "seeding $CUSTOMERS customers with $WEEKS weeks of history into $DATA ..."
  "$BIN" simulate --customers "$CUSTOMERS" --weeks "$WEEKS" --sends-per-week 2 --data "$DATA/data" 2>&1 | tail -1
  touch "$DATA/.seeded-$CUSTOMERS-$WEEKS"
fi
# Blocks in use: redb grows its file ahead of the data, and the file is sparse.
bytes=$(du -B1 "$DATA/data/kairos.redb" | cut -f1)

KAIROS__STORE__PATH="$DATA/data" KAIROS__SERVER__BIND="127.0.0.1:$PORT" RUST_LOG=warn "$BIN" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$SERVER/status"; }
events=$(curl -s "http://127.0.0.1:$PORT/v1/customers/sim-00000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["profile"]["events"])')
before=$(rss)
python3 -c "import json; print(json.dumps({'customers': ['sim-%05d' % i for i in range($CUSTOMERS)], 'quiet_hours': None}))" > "$DATA/batch.json"
answers=$(curl -sf "http://127.0.0.1:$PORT/v1/decisions/batch" -H 'content-type: application/json' \
  --data-binary "@$DATA/batch.json" | wc -l)
after=$(rss)
python3 - "$CUSTOMERS" "$bytes" "$before" "$after" "$answers" "$events" <<'PY'
import sys
n, disk, before, after, answers, events = map(int, sys.argv[1:])
print(f"customers: {n} (sim-00000 has {events} events); decisions answered: {answers}")
print(f"at rest: {disk / 2**20:.0f} MiB, {disk / n:.0f} bytes per customer")
print(f"server memory: {before / 2**20:.0f} MiB after start, {after / 2**20:.0f} MiB after a decision for every customer;"
      f" {(after - before) / n:.0f} bytes per customer")
PY
