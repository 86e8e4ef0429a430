#!/usr/bin/env bash
# DoQ throughput, CPU per query and RSS: dnsperf (UDP) → lanveil → hickory-dns, the same upstream server
# and zone over DoT and over DoQ, so the two rows differ only in lanveil's upstream transport. Loopback
# only. Every name is unique (a wildcard zone; lanveil's cache off), so every query crosses the upstream.
# Needs: dnsperf, openssl, target/hickory-dns/bin/hickory-dns (tests/all.sh builds it).
# Two loads per round: saturation (dnsperf -c 4 -q 200) and a fixed 2000 queries/s (-Q 2000).
# Note on the peer: hickory-dns 0.26 handles a QUIC connection's queries one after another and closes
# the connection after 100 queries (its quic_handler), so DoQ through it also measures reconnections.
# Usage: bash tests/bench/doq.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
rounds=${2:-3}
root=$PWD
hickory=$root/target/hickory-dns/bin/hickory-dns
for p in dnsperf openssl; do command -v $p >/dev/null || { echo "missing $p (apt-get install dnsperf)"; exit 1; }; done
[ -x "$hickory" ] || { echo "missing $hickory (see tests/all.sh, DoQ interop servers)"; exit 1; }
cargo build --release -q --locked -p lanveil --features doq
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -subj /CN=bench-ca -days 2 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
  -subj /CN=doq.test 2>/dev/null
printf 'subjectAltName=DNS:doq.test\n' > ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext 2>/dev/null
# shellcheck disable=SC2016  # a zone file: $ORIGIN and $TTL are literal
printf '$ORIGIN bench.test.\n$TTL 300\n@ IN SOA ns admin 1 3600 600 86400 300\n@ IN NS ns\nns IN A 192.0.2.1\n* IN A 192.0.2.7\n' \
  > bench.test.zone
printf 'listen_addrs_ipv4 = ["127.0.0.1"]\nlisten_port = 18353\ndrop_privileges = false\ntls_cert = { path = "cert.pem", private_key = "key.pem" }\n\n[[zones]]\nzone = "bench.test"\nzone_type = "Primary"\nfile = "bench.test.zone"\n' \
  > hickory.toml
RUST_LOG=error "$hickory" -q -c hickory.toml -z "$dir" --tls-port 18853 --quic-port 18854 &
sleep 1
python3 -c "
import random
tag = random.randrange(1 << 30)
with open('queries', 'w') as f:
    for i in range(2_000_000):
        f.write('q%d-%d.bench.test A\n' % (tag, i))"

run() { # transport url port load (sat | rate)
  local t=$1 url=$2 port=$3 load=$4
  local args=(-c 4 -q 200)
  [ "$load" = rate ] && args=(-Q 2000 -c 1 -q 100)
  printf "config lanveil 'main'\n\tlist listen '127.0.0.1:%s'\n\toption cache '0'\n\toption log_level 'warn'\n\nconfig upstream 'u'\n\toption url '%s'\n\toption ca_file '%s/ca.pem'\n" \
    "$port" "$url" "$dir" > "lanveil-$t.conf"
  "$root/target/release/lanveil" --config "lanveil-$t.conf" &
  local pid=$!
  sleep 1
  local rss0
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  local before
  before=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local out
  out=$(dnsperf -s 127.0.0.1 -p "$port" -d queries -n 1 -l "$secs" "${args[@]}" 2>&1)
  local after
  after=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local qps completed lost hwm
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  completed=$(echo "$out" | awk '/Queries completed/ {print $3}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v t="$t ($load)" -v q="$qps" -v c="$completed" -v l="$lost" -v cpu=$((after - before)) -v h="$hwm" -v r0="$rss0" \
    'BEGIN { printf "| %s | %.0f | %s | %.2f µs | %.1f MiB | %.1f MiB |\n", t, q, l, (c > 0 ? cpu * 10000 / c : 0), r0 / 1024, h / 1024 }'
}

echo "| lanveil → hickory-dns | queries/s | lost | lanveil CPU per query | idle RSS | peak RSS |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
  for load in sat rate; do
    run "DoT, round $r" "tls://127.0.0.1:18853#doq.test" 15391 "$load"
    run "DoQ, round $r" "quic://127.0.0.1:18854#doq.test" 15392 "$load"
  done
done
