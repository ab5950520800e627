#!/usr/bin/env bash
# Kairos on Redis, beside redis-benchmark, in one run on one machine.
#
#   [CUSTOMERS=1000] [CONNECTIONS=32] [DURATION=10s] [APPENDFSYNC=always] scripts/load-redis.sh
#
# 1. Starts a redis-server of its own on a free port (append-only file,
#    `appendfsync` as given) and measures it with redis-benchmark: SET, GET,
#    HSET and a small Lua script (EVALSHA), 32 clients.
# 2. Starts `kairos serve` with store.backend = "redis" on it, loads
#    CUSTOMERS simulated customers with 8 weeks of history through the API
#    (`kairos simulate --server ... --train`), sends them a campaign
#    (POST /v1/decisions/batch, twice: the second finds the first's
#    reservations), drives POST /v1/decisions with wrk; then POST /v1/events
#    in NDJSON batches of 1,000.
# 3. Memory: MEMORY USAGE of every key of one customer with 200 events, and
#    Redis's whole dataset divided by the customers stored.
#
# Loopback only. Needs redis-server, redis-benchmark and wrk (Debian packages
# `redis-server`, `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${CUSTOMERS:-1000}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
APPENDFSYNC=${APPENDFSYNC:-always}

need() { # command package
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; fi
  command -v "$1" >/dev/null || { echo "$1 is missing: apt-get install $2"; exit 1; }
}
need wrk wrk; need redis-server redis-server; need redis-benchmark redis-tools
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --release --locked --quiet --bin kairos
BIN=${CARGO_TARGET_DIR:-target}/release/kairos
DATA=$(mktemp -d /tmp/kairos-load-redis.XXXXXX)
RPORT=$(free_port); KPORT=$(free_port)
pids=()
# Kairos first, then Redis.
cleanup() { for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done; rm -rf "$DATA"; }
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$APPENDFSYNC" \
  --dir "$DATA" --logfile "$DATA/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
rcli() { redis-cli -p "$RPORT" "$@"; }

echo "== redis-benchmark (redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), appendfsync $APPENDFSYNC, 32 clients)"
redis-benchmark -p "$RPORT" -q -c 32 -n 200000 -t set,get,hset | tr '\r' '\n' | grep 'requests per second' | sed 's/^/  /'
sha=$(rcli SCRIPT LOAD "return redis.call('HGET', KEYS[1], 'v')")
redis-benchmark -p "$RPORT" -q -c 32 -n 200000 EVALSHA "$sha" 1 'kairos:{bench}:meta' | tr '\r' '\n' \
  | grep 'requests per second' | sed 's/^/  EVALSHA: /'
rcli FLUSHALL >/dev/null

KAIROS__STORE__BACKEND=redis KAIROS__STORE__REDIS_URL="redis://127.0.0.1:$RPORT/" \
  KAIROS__MODELS__DIR="$DATA/models" KAIROS__SERVER__BIND="127.0.0.1:$KPORT" RUST_LOG=warn "$BIN" serve &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$KPORT/readyz" >/dev/null && break; sleep 0.1; done
echo "== loading $CUSTOMERS simulated customers (8 weeks of history) through the API"
"$BIN" simulate --customers "$CUSTOMERS" --server "http://127.0.0.1:$KPORT" --train >/dev/null

field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
echo "== a campaign: POST /v1/decisions/batch for all $CUSTOMERS customers, twice"
python3 -c "import json; print(json.dumps({'customers': ['sim-%05d' % i for i in range($CUSTOMERS)], 'campaign': 'load', 'quiet_hours': None}))" \
  >"$DATA/campaign.json"
commands() { rcli INFO stats | grep '^total_commands_processed:' | cut -d: -f2 | tr -d '\r'; }
for run in 1 2; do
  c0=$(commands)
  t=$(curl -s -o "$DATA/campaign.ndjson" -w '%{time_total}' -H 'content-type: application/json' \
    --data-binary @"$DATA/campaign.json" "http://127.0.0.1:$KPORT/v1/decisions/batch")
  echo "  run $run: $(wc -l <"$DATA/campaign.ndjson") decisions ($(grep -c '"action":"send"' "$DATA/campaign.ndjson") sends, each reserving room) in $t s:" \
    "$(python3 -c "print(round($(wc -l <"$DATA/campaign.ndjson") / $t))") decisions/s," \
    "$(python3 -c "print(round(($(commands) - $c0 - 1) / $CUSTOMERS, 2))") Redis commands per decision"
done
echo "== decisions (wrk, $CONNECTIONS connections, $DURATION)"
CUSTOMERS=$CUSTOMERS wrk -t2 -c"$CONNECTIONS" -d2s -s scripts/decisions.lua "http://127.0.0.1:$KPORT" >/dev/null
d=$(CUSTOMERS=$CUSTOMERS wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/decisions.lua \
  "http://127.0.0.1:$KPORT" | grep '^RESULT')
echo "  $(field "$d" rps) decisions/s, p50 $(field "$d" p50_us) µs, p99 $(field "$d" p99_us) µs, errors $(( $(field "$d" errors) + $(field "$d" non2xx_in_status) ))"

echo "== memory: one customer with 200 events"
python3 - "$KPORT" <<'PY'
import json, sys, urllib.request, datetime
port = sys.argv[1]
base = datetime.datetime(2026, 11, 16, 11, 0, tzinfo=datetime.timezone.utc)
kinds = ["app_open", "session_start", "page_view", "message_opened"]
lines = []
for i in range(200):
    t = base - datetime.timedelta(hours=7 * i + (i % 5))
    e = {"event_id": f"mem-{i:04d}", "customer_id": "mem-200", "type": kinds[i % 4],
         "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if e["type"] == "message_opened":
        e.update(channel="email", message_id=f"m{i}")
    lines.append(json.dumps(e))
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data="\n".join(lines).encode(),
                             headers={"content-type": "application/x-ndjson"})
print("  ingest:", urllib.request.urlopen(req).read().decode())
PY
total=0
for k in meta ev msg res; do
  n=$(rcli MEMORY USAGE "kairos:{mem-200}:$k" SAMPLES 0); n=${n:-0}
  echo "  kairos:{mem-200}:$k $n bytes"
  total=$((total + n))
done
echo "  one customer with 200 events: $total bytes ($(python3 -c "print(f'{$total/1024:.1f}')") KiB; target 2 KiB)"
used=$(rcli INFO memory | grep '^used_memory_dataset:' | cut -d: -f2 | tr -d '\r')
stored=$(rcli SCARD kairos:customers)
echo "  dataset $used bytes for $stored customers: $((used / stored)) bytes per customer (simulated histories)"

echo "== ingest (NDJSON batches of 1,000, 4 connections, $DURATION)"
i=$(BATCH=1000 CUSTOMERS=10000 wrk -t2 -c4 -d"$DURATION" -s scripts/ingest.lua "http://127.0.0.1:$KPORT" | grep '^RESULT')
echo "  $i"
