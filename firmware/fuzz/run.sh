#!/usr/bin/env bash
# Bounded fuzz run of every lanveil fuzz target: ./run.sh [SECONDS]   (default 30 per target)
#
# Installs cargo-fuzz into <repo>/target/fuzz-tools if it is missing (once), builds every target once
# with AddressSanitizer on the stable toolchain (RUSTC_BOOTSTRAP=1 lets stable accept cargo-fuzz's
# -Z flags), then runs each target for SECONDS starting from its committed seed corpus (new inputs go
# to a scratch directory, never into corpus/). Crashes are saved under artifacts/<target>/.
# Prints one line per target and then exactly "N passed, M failed"; exits non-zero on any failure.
#
# Environment: FUZZ_JOBS (targets run at once, default 2), FUZZ_SANITIZER (address | none).
set -uo pipefail

secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/target/fuzz-tools"
cargo_fuzz_version=0.13.2
jobs=${FUZZ_JOBS:-2}
sanitizer=${FUZZ_SANITIZER:-address}
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "installing cargo-fuzz $cargo_fuzz_version into $tools"
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" --root "$tools" --quiet || exit 1
fi

cd "$here"
# The lock file is committed: refuse to run with a stale one.
cargo fetch --locked --quiet || { echo "firmware/fuzz/Cargo.lock is out of date" >&2; exit 1; }
mapfile -t targets < <(cargo fuzz list)
if ! cargo fuzz build --sanitizer "$sanitizer"; then
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run_one() {
    local t=$1 log="$scratch/$1.log"
    mkdir -p "$scratch/$t" "artifacts/$t" "corpus/$t"
    local start=$SECONDS
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        local runs
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        echo "PASS $t: ${runs:-?} runs in $((SECONDS - start)) s" >"$scratch/$t.result"
    else
        {
            echo "FAIL $t (log: artifacts/$t/last-failure.log)"
            grep -m3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written" "$log" | sed 's/^/    /'
        } >"$scratch/$t.result"
        cp "$log" "artifacts/$t/last-failure.log"
    fi
    cat "$scratch/$t.result"
}

for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_one "$t" &
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
    if grep -q '^PASS' "$scratch/$t.result" 2>/dev/null; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
