#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from
# GET /openapi.json (valid and invalid ones) against a fresh `kairos serve`
# on loopback, and fails on any 5xx answer.
#
#   [MAX_EXAMPLES=60] [SEED=1] [PROFILE=debug|release] scripts/schemathesis.sh
#
# Installs schemathesis from PyPI (into the user's Python) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES=${MAX_EXAMPLES:-60}
SEED=${SEED:-1}
PROFILE=${PROFILE:-debug}
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
if [ "$PROFILE" = release ]; then
  cargo build --release --locked --quiet --bin kairos
else
  cargo build --locked --quiet --bin kairos
fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/kairos
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d /tmp/kairos-schemathesis.XXXXXX)
KAIROS__STORE__PATH="$DATA/data" KAIROS__MODELS__DIR="$DATA/models" KAIROS__SERVER__BIND="127.0.0.1:$PORT" \
  RUST_LOG=warn "$BIN" serve 2>"$DATA/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
status=0
schemathesis run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error \
  --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
  --request-timeout 30 --continue-on-failure --no-color || status=$?
if [ "$status" != 0 ]; then
  echo "--- server log"; tail -50 "$DATA/server.log"
fi
exit $status
