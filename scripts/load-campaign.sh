#!/usr/bin/env bash
# A million-recipient campaign over HTTP: POST /v1/decisions/batch in requests
# of 100,000 customers (the API's limit), all answers streamed back and counted.
#
#   [CONCURRENCY=1] [TRAIN=1] [WEEKS=1] [KAIROS_BIN=path] scripts/load-campaign.sh [CUSTOMERS] [DATA_DIR]
#
# The first run seeds DATA_DIR (default /tmp/kairos-load) with simulated
# customers and a week of history each (`kairos simulate --data`); later runs
# reuse it. WEEKS=8 seeds 8 weeks each instead, as `kairos simulate` scores
# them (two sends a week per channel rather than one): longer histories,
# costlier profiles and posteriors (a million take about an hour to seed).
# Seeding writes each customer's attributes (time zone, reachability and
# consent per channel) before their events, so the campaign decides every
# customer in their own zone, on the channels they can be reached on.
# A directory seeded before attributes were written (events only, marked
# .seeded-N) is seeded again.
# With TRAIN=1 the models are first trained on that history
# (`kairos train`, once per directory), so every decision is scored by the
# trained response model; a directory never trained decides with the model
# shipped with Kairos, which has none (the formula).
# Each campaign runs on a fresh copy of DATA_DIR (DATA_DIR.run, removed
# afterwards): a campaign leaves its reservations behind, and a later one on
# the same data decides around them, so runs in place are not comparable.
# IN_PLACE=1 runs on DATA_DIR itself (no room for a copy: about 5 GB for a
# million customers).
# The server runs on loopback only; nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${1:-1000000}
DATA=${2:-/tmp/kairos-load}
PER_REQUEST=100000
# Requests in flight at once, as a sender splitting a campaign would.
CONCURRENCY=${CONCURRENCY:-1}
PORT=${PORT:-18181}

# KAIROS_BIN runs another build (to compare two) instead of this checkout's.
if [ -n "${KAIROS_BIN:-}" ]; then
  BIN="$KAIROS_BIN"
else
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/kairos"
fi

WEEKS=${WEEKS:-1}
SEEDED="$DATA/.seeded-attributes-$CUSTOMERS"
SENDS_PER_WEEK=1
if [ "$WEEKS" != 1 ]; then
  SEEDED="$SEEDED-${WEEKS}w"
  SENDS_PER_WEEK=2
fi
if [ ! -f "$SEEDED" ]; then
  rm -rf "$DATA"
  echo "seeding $CUSTOMERS customers with $WEEKS weeks of history into $DATA ..."
  start=$(date +%s.%N)
  $BIN simulate --customers "$CUSTOMERS" --weeks "$WEEKS" --sends-per-week "$SENDS_PER_WEEK" --data "$DATA"
  echo "seeded in $(echo "$(date +%s.%N) - $start" | bc) s"
  touch "$SEEDED"
fi

export KAIROS__MODELS__DIR="$DATA/models"
if [ "${TRAIN:-0}" = 1 ] && [ ! -f "$DATA/.trained" ]; then
  echo "training on the seeded history ..."
  start=$(date +%s.%N)
  KAIROS__STORE__PATH="$DATA" $BIN train | python3 -c "import json,sys; s=json.load(sys.stdin); print('trained:', s['data'], 'exposure floors', (s.get('exposure') or {}).get('floor'))"
  echo "trained in $(echo "$(date +%s.%N) - $start" | bc) s"
  touch "$DATA/.trained"
fi

RUN="$DATA"
if [ "${IN_PLACE:-0}" != 1 ]; then
  RUN="$DATA.run"
  rm -rf "$RUN"
  start=$(date +%s.%N)
  cp -a --reflink=auto "$DATA" "$RUN"
  # The copy's dirty pages written out now, not during the campaign: their
  # writeback would hold up the reservations' fsyncs (runs of 31-44 s instead
  # of 25-28 s on one machine).
  sync
  echo "copied the seeded data to $RUN in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  if [ "$RUN" != "$DATA" ]; then rm -rf "$RUN"; fi
}
export KAIROS__MODELS__DIR="$RUN/models"
KAIROS__STORE__PATH="$RUN" KAIROS__SERVER__BIND="127.0.0.1:$PORT" RUST_LOG=warn $BIN serve &
SERVER=$!
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

body() { # first, count -> a batch request body
  python3 -c "import json,sys; f,n=int(sys.argv[1]),int(sys.argv[2]); print(json.dumps({'customers':['sim-%05d'%i for i in range(f,f+n)],'channels':['email','push','sms','in_app'],'quiet_hours':None,'campaign':'load'}))" "$1" "$2"
}
for ((first = 0; first < CUSTOMERS; first += PER_REQUEST)); do
  n=$(( CUSTOMERS - first < PER_REQUEST ? CUSTOMERS - first : PER_REQUEST ))
  body "$first" "$n" > "$RUN/req-$first.json"
done

# The server's CPU time (user, system) in seconds, from /proc.
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f %.1f", $14 / t, $15 / t}' "/proc/$SERVER/stat"; }

echo "campaign: $CUSTOMERS recipients in requests of $PER_REQUEST, $CONCURRENCY at a time"
read -r user0 sys0 <<< "$(cpu)"
start=$(date +%s.%N)
ls "$RUN"/req-*.json | xargs -P "$CONCURRENCY" -I{} sh -c \
  "curl -sf -X POST 'http://127.0.0.1:$PORT/v1/decisions/batch' -H 'content-type: application/json' --data-binary @{} | wc -l > {}.lines"
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
read -r user1 sys1 <<< "$(cpu)"
lines=$(cat "$RUN"/req-*.json.lines | paste -sd+ | bc)
errors=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/decisions/batch" -H 'content-type: application/json' \
  --data-binary "@$RUN/req-0.json" | grep -c '"error"' || true)
echo "decisions: $lines in ${elapsed} s ($(echo "$lines / $elapsed" | bc) per second); error lines in a sample request: $errors"
echo "server CPU during the campaign: user $(echo "$user1 - $user0" | bc) s, system $(echo "$sys1 - $sys0" | bc) s"
echo "server memory: $(awk '/^VmHWM|^VmRSS/ {printf "%s %.0f MiB  ", $1, $2 / 1024}' "/proc/$SERVER/status")"
[ "$lines" -eq "$CUSTOMERS" ] || { echo "expected $CUSTOMERS answers"; exit 1; }
