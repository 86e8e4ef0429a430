#!/usr/bin/env bash
# Cache-miss latency over an emulated WAN (issue 17): lanveil, kresd, unbound, stubby and dnsdist side by
# side, every upstream connection crossing a userspace delay line (tests/src/bin/wan-delay.rs) between two
# network namespaces this script creates (nothing leaves them). Needs root (namespaces, TUN).
#
# Installs what is missing (Debian: unbound stubby dnsdist knot-resolver openssl iproute2), builds lanveil
# (release) and wan-delay, then runs tests/bench/wan.py, which writes tests/bench/results/wan.json and
# wan.md. The full run takes ~12 min on 2 cores (the 10-min gap bounds it); --quick ~4 min (gaps of 2 min
# at most, shorter loss runs).
#
# Usage: bash tests/bench/wan.sh [--quick | --smoke] [--rtt-ms 30] [--server-idle 10|60] [--only lanveil,kresd,...]
#                                [--rigs gaps,long,loss1,loss3] [--out FILE.json]
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for pkg in unbound stubby dnsdist knot-resolver openssl iproute2; do
  dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts kresd and unbound as services on install; the benchmark runs its own instances.
[ -e /dev/net/tun ] || { echo "no /dev/net/tun: the delay line needs TUN" >&2; exit 1; }

cargo build --release -q --locked -p lanveil
cargo build -q --locked -p lanveil-tests --bin wan-delay

exec timeout 1500 python3 tests/bench/wan.py "$@"
