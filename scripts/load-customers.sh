#!/usr/bin/env bash
# Customers' attributes in bulk: POST /v1/customers in requests of 10,000
# (the API's limit; each one write, fsynced before its answer), one after
# another, then 2,000 of the same customers again through
# PUT /v1/customers/{id}, one at a time, for comparison. Each customer gets
# one of eight zones and reachability and consent per channel.
#
#   [KAIROS_BIN=path] scripts/load-customers.sh [CUSTOMERS] [DATA_DIR]
#
# Without DATA_DIR the server starts on an empty store. With one (say a
# copy of the campaign's `scripts/load-campaign.sh` directory, whose
# customers `sim-NNNNN` have history) every zone change recomputes that
# customer's profile from their events. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${1:-1000000}
PER_REQUEST=10000
PORT=${PORT:-18184}
if [ -n "${KAIROS_BIN:-}" ]; then
  BIN="$KAIROS_BIN"
else
  cargo build --release --locked --quiet --bin kairos
  BIN="${CARGO_TARGET_DIR:-target}/release/kairos"
fi
WORK=$(mktemp -d /tmp/kairos-load-customers.XXXXXX)
DATA=${2:-$WORK/data}
KAIROS__STORE__PATH="$DATA" KAIROS__SERVER__BIND="127.0.0.1:$PORT" RUST_LOG=warn "$BIN" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

python3 - "$CUSTOMERS" "$PER_REQUEST" "$WORK" <<'PY'
import json, random, sys
n, per, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(1)
zones = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata",
         "Asia/Kuala_Lumpur", "America/St_Johns", "Asia/Kathmandu", "America/Los_Angeles"]
channels = ["email", "push", "sms", "in_app", "web"]
for first in range(0, n, per):
    items = []
    for i in range(first, min(n, first + per)):
        ok = {c: random.random() < 0.6 for c in channels}
        items.append({"customer_id": "sim-%05d" % i, "timezone": random.choice(zones),
                      "channels": {c: {"reachable": ok[c], "consent": ok[c]} for c in channels}})
    with open(f"{work}/req-{first // per:05d}.json", "w") as f:
        json.dump({"customers": items}, f)
PY

start=$(date +%s.%N)
for req in "$WORK"/req-*.json; do
  curl -sf -X POST "http://127.0.0.1:$PORT/v1/customers" -H 'content-type: application/json' \
    --data-binary "@$req" >> "$WORK/answers"
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
updated=$(grep -o '"updated":[0-9]*' "$WORK/answers" | cut -d: -f2 | paste -sd+ | bc)
echo "POST /v1/customers: $updated customers in $elapsed s ($(echo "$updated / $elapsed" | bc) a second)"
[ "$updated" -eq "$CUSTOMERS" ] || { echo "expected $CUSTOMERS updated"; exit 1; }

start=$(date +%s.%N)
python3 - "$PORT" "$WORK/req-00000.json" <<'PY'
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for c in json.load(open(sys.argv[2]))["customers"][:2000]:
    cid = c.pop("customer_id")
    conn.request("PUT", "/v1/customers/" + cid, json.dumps(c), {"content-type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
PY
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "PUT /v1/customers/{id}: 2000 customers one at a time in $elapsed s ($(echo "2000 / $elapsed" | bc) a second)"
