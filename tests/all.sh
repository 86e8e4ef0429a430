#!/usr/bin/env bash
# The whole lanveil test suite, as CI runs it: set-up, formatting, lints, portability, unit and
# integration tests, the cross-built ARM binaries under qemu and the OpenWrt package tests.
# Usage: bash tests/all.sh      (as root: some tests bind port 53 on 127.0.0.2/3 and switch user)
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "set-up"
bash tests/setup.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "portability: the core and the config schema without std (and the wire codecs without alloc)"
cargo build --locked -p lanveil-core --no-default-features
cargo build --locked -p lanveil-config --no-default-features
for crate in lanveil-core lanveil-config; do
  if cargo tree --locked -p "$crate" -e normal --prefix none | grep -qE '^(tokio|rustls|hickory-proto) '; then
    echo "$crate must not depend on tokio, rustls or hickory-proto" >&2
    exit 1
  fi
done
# The shared verifier and the owner's tool never link tokio.
for crate in lanveil-tls lanveil-cli; do
  if cargo tree --locked -p "$crate" -e normal --prefix none | grep -qE '^tokio '; then
    echo "$crate must not depend on tokio" >&2
    exit 1
  fi
done

step "DoQ interop servers: hickory-dns from crates.io (QUIC) and aioquic from PyPI (tests/tests/doq.rs)"
# Built once into target/ (hickory-dns: ~5-9 min on 2 cores; aioquic: a wheel, seconds).
if [ ! -x target/hickory-dns/bin/hickory-dns ]; then
  cargo install --locked --quiet --root target/hickory-dns hickory-dns@0.26.3 --no-default-features --features quic-ring
fi
if ! target/doq-venv/bin/python -c 'import aioquic' 2>/dev/null; then
  python3 -m venv target/doq-venv
  target/doq-venv/bin/pip install -q aioquic==1.7.2
fi

step "unit and integration tests"
cargo test --workspace --locked 2>&1 | tee "$log"

step "the daemon's unit tests in the DoT-only build (no DoH, no TLS 1.2: the small-flash build)"
cargo test --locked -p lanveil --no-default-features --lib 2>&1 | tee -a "$log"

step "board and OpenWrt"
bash board/ci.sh 2>&1 | tee -a "$log"

step "DoQ on the cross-built routers under qemu (the board builds that carry doq, aioquic upstream)"
bash tests/doq/qemu-smoke.sh 2>&1 | tee -a "$log"

step "no_std proof: the core (with and without alloc) and the config schema for a bare-metal target"
# Uses the Debian compiler + std sources that board/ci.sh installed (build-std; no rustup target needed).
for features in "" "--features lanveil-core/alloc"; do
  # shellcheck disable=SC2086
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --locked -q -p lanveil-core -p lanveil-config \
    --no-default-features $features --target thumbv7em-none-eabihf -Zbuild-std=core,alloc --target-dir target/nostd
done
echo "no_std builds for thumbv7em-none-eabihf: ok"

step "fuzzing: every parser and rewriter, bounded (seconds per target: \${LANVEIL_FUZZ_SECS:-20})"
bash firmware/fuzz/run.sh "${LANVEIL_FUZZ_SECS:-20}" 2>&1 | tee -a "$log"

passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}')
# board/ci.sh and firmware/fuzz/run.sh each end with a plain "N passed, M failed" line.
while read -r p _ f _; do
  passed=$((passed + p))
  failed=$((failed + f))
done < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" || true)
echo
echo "total: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
