#!/usr/bin/env bash
# A first quick throughput/RSS measurement: dnsperf straight to a local unbound DoT server, then the same
# load through lanveil (UDP in, DoT out). Loopback only, ~25 s. Needs: dnsperf unbound openssl.
# Usage: bash tests/bench/quick.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. tests/bench/lib.sh
secs=${1:-10}
for p in dnsperf openssl; do command -v $p >/dev/null || { echo "missing $p (apt-get install dnsperf)"; exit 1; }; done
[ -x /usr/sbin/unbound ] || { echo "missing unbound"; exit 1; }
cargo build --release -q -p lanveil
dir=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
start_dot_upstream "$dir" 18853 "bench.test." "www.bench.test. 300 IN A 192.0.2.7"
python3 -c "
with open('queries','w') as f:
    for i in range(20000):
        f.write('www.bench.test A\n' if i % 2 == 0 else 'h%d.bench.test A\n' % i)"
sleep 1
"$OLDPWD/target/release/lanveil" --listen 127.0.0.1:15390 --upstream 'tls://127.0.0.1:18853#dot.test' \
  --ca-file "$dir/ca.pem" --log-level warn &
lpid=$!
sleep 0.5
echo "== upstream ceiling: dnsperf over DoT straight to unbound (${secs}s, 4 clients, 200 outstanding)"
dnsperf -m dot -s 127.0.0.1 -p 18853 -d queries -l "$secs" -c 4 -q 200 2>&1 | grep -E 'Queries (completed|lost)|Queries per second|Average Latency'
echo "== through lanveil: UDP in, DoT out (same load)"
dnsperf -s 127.0.0.1 -p 15390 -d queries -l "$secs" -c 4 -q 200 2>&1 | grep -E 'Queries (completed|lost)|Queries per second|Average Latency'
awk '{printf "lanveil CPU: %.2f s\n", ($14+$15)/100}' "/proc/$lpid/stat"
grep -E 'VmHWM' "/proc/$lpid/status" | sed 's/^/lanveil peak RSS: /'
