#!/usr/bin/env bash
# Layout latency: GET /v1/layouts/home for two customers with history, with
# wrk, then the server's own time per request from GET /metrics (the
# kairos_http_request_duration_seconds histogram for the route).
#
#   [CONNECTIONS=4] [DURATION=10s] scripts/load-layouts.sh
#
# Loopback only; needs wrk (Debian package `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-4}
DURATION=${DURATION:-10s}
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; fi
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
fi
cargo build --release --locked --quiet --bin kairos
BIN=${CARGO_TARGET_DIR:-target}/release/kairos
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d /tmp/kairos-load-layouts.XXXXXX)
KAIROS__STORE__PATH="$DATA/data" KAIROS__SERVER__BIND="127.0.0.1:$PORT" RUST_LOG=warn "$BIN" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.1; done
python3 - "$BASE" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
events = []
for i in range(5):
    events.append({"event_id": f"pr-o{i}", "customer_id": "pr", "type": "message_opened", "channel": "email",
                   "message_id": f"m{i}", "device": "mobile", "timestamp": f"2026-11-1{i}T09:00:00Z"})
    events.append({"event_id": f"pr-v{i}", "customer_id": "pr", "type": "page_view", "category": "shoes",
                   "timestamp": f"2026-11-1{i}T10:00:00Z"})
    events.append({"event_id": f"au-a{i}", "customer_id": "au", "type": "app_open", "timestamp": f"2026-11-1{i}T19:00:00Z"})
req = urllib.request.Request(base + "/v1/events", data=json.dumps({"events": events}).encode(),
                             headers={"content-type": "application/json"})
urllib.request.urlopen(req).read()
print("sample:", urllib.request.urlopen(base + "/v1/layouts/home?customer_id=pr").read().decode()[:300])
PY
wrk -t2 -c"$CONNECTIONS" -d2s "$BASE/v1/layouts/home?customer_id=pr" >/dev/null
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$BASE/v1/layouts/home?customer_id=pr" | grep -E 'Requests/sec|50%|99%'
curl -s "$BASE/metrics" | python3 -c '
import sys, re
b = {}
count = 0
for line in sys.stdin:
    m = re.match(r"kairos_http_request_duration_seconds_bucket\{route=\"/v1/layouts/\{page\}\",le=\"([^\"]+)\"\} (\d+)", line)
    if m: b[m.group(1)] = int(m.group(2))
    m = re.match(r"kairos_http_request_duration_seconds_count\{route=\"/v1/layouts/\{page\}\"\} (\d+)", line)
    if m: count = int(m.group(1))
for le in ["0.0005", "0.001", "0.0025"]:
    print(f"server-side: {100*b.get(le,0)/max(count,1):.2f}% of {count} layouts answered within {float(le)*1000:g} ms")
'
