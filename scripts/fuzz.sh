#!/usr/bin/env bash
# Fuzzes event parsing (fuzz/fuzz_targets/event_parsing.rs) with cargo fuzz
# (libFuzzer) for FUZZ_SECONDS seconds, starting from fuzz/corpus/.
#
#   [FUZZ_SECONDS=60] scripts/fuzz.sh
#
# cargo fuzz needs nightly compiler flags; on a stable toolchain
# RUSTC_BOOTSTRAP=1 allows them. Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
# A corpus of its own per run, so the checked-in seeds stay as they are.
WORK=$(mktemp -d /tmp/kairos-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp fuzz/corpus/event_parsing/* "$WORK/"
cargo fuzz run --fuzz-dir fuzz event_parsing "$WORK" -- -max_total_time="$SECONDS_TO_RUN" -max_len=4096
