#!/usr/bin/env bash
# Runs every fuzz target in tests/fuzz for a bounded time (FUZZ_SECONDS
# each, default 60), one after the other, starting from the seed corpus in
# tests/fuzz/corpus/TARGET. Installs cargo-fuzz if it is missing.
#
# Only a stable toolchain is needed: `--sanitizer none` leaves out the
# nightly-only -Zsanitizer flag (roost's code is safe Rust, so
# AddressSanitizer would add little). New inputs go to a scratch directory,
# so the corpus in the repository stays the small seed set; a crash stops
# the script, shows the fuzzer's log, and leaves the input in
# tests/fuzz/artifacts/TARGET/. docs/reliability.md says how to run longer.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --quiet --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/roost-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

targets=$(cargo fuzz list --fuzz-dir tests/fuzz)
if [[ -z "$targets" ]]; then
    echo "FAILED: no fuzz targets in tests/fuzz" >&2
    exit 1
fi

for target in $targets; do
    log="$work/$target.log"
    mkdir -p "$work/$target"
    echo "fuzzing $target for $SECONDS_EACH s"
    if ! cargo fuzz run --sanitizer none --fuzz-dir tests/fuzz "$target" \
        "$work/$target" "tests/fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        echo "FAILED: fuzz target $target" >&2
        tail -n 80 "$log" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(ls "$work/$target" | wc -l)
    echo "fuzz $target: $runs executions, no failure; corpus grew to $corpus inputs"
done
