#!/usr/bin/env bash
# Instruction-count profile of lanveil's hot path (valgrind --tool=callgrind: repeatable, unlike timings):
# a release build forwarding N unique-name queries (UDP in, DoT out) to a local unbound DoT server.
# Prints instructions per query and the top functions. Usage: bash tests/bench/profile.sh [N]
# With PROFILE_OUT=FILE the raw callgrind output is kept there (for callgrind_annotate --inclusive=yes etc.).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. tests/bench/lib.sh
n=${1:-20000}
for p in valgrind callgrind_annotate dnsperf openssl; do command -v $p >/dev/null || { echo "missing $p"; exit 1; }; done
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -q -p lanveil
dir=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
start_dot_upstream "$dir" 28853 "prof.test."
python3 -c "
with open('queries','w') as f:
    for i in range($n): f.write('q%d.prof.test A\n' % i)"
printf "config lanveil 'main'\n\tlist listen '127.0.0.1:25390'\n\toption cache '0'\n\toption log_level 'warn'\n\nconfig upstream 'p'\n\toption url 'tls://127.0.0.1:28853#dot.test'\n\toption ca_file '%s/ca.pem'\n" "$dir" > lanveil.conf
sleep 1
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$OLDPWD/target/release/lanveil" --config lanveil.conf 2>/dev/null &
vg=$!
sleep 3
dnsperf -s 127.0.0.1 -p 25390 -d queries -n 1 -c 1 -q 50 -l 120 2>&1 | grep -E 'Queries (sent|completed)'
kill -TERM $vg; wait $vg 2>/dev/null || true
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$dir/cg.out" ] && break; sleep 1; done
total=$(callgrind_annotate "$dir/cg.out" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}' || true)
[ -n "$total" ] || { echo "no callgrind output"; exit 1; }
[ -z "${PROFILE_OUT:-}" ] || cp "$dir/cg.out" "$PROFILE_OUT"
echo "instructions: $total for $n queries (start-up and TLS handshake included): $((total / n)) per query"
callgrind_annotate --inclusive=no "$dir/cg.out" 2>/dev/null | sed -n '/file:function/,$p' | head -25
