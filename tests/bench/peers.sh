#!/usr/bin/env bash
# lanveil vs other encrypted-DNS forwarders (issue 8), on loopback only, bounded (~12 min with the defaults).
#
#   dnsperf --UDP--> FORWARDER --DoT/DoH--> dnsdist (DoT + DoH frontends answering any name itself)
#
# Installs what it needs when missing (Debian: dnsperf dnsdist unbound stubby nghttp2-client openssl;
# crates.io: hickory-dns into target/bench-tools), builds lanveil, then runs tests/bench/peers.py, which
# writes tests/bench/results/latest.json and latest.md. Needs root for apt-get when something is missing.
#
# Usage: bash tests/bench/peers.sh [--rounds 3] [--duration 10] [--rate 2000] [--clients 4] [--outstanding 200]
#                                  [--only lanveil-dot,stubby,...] [--no-footprint] [--out FILE.json]
set -euo pipefail
cd "$(dirname "$0")/../.."

HICKORY_VERSION=0.26.3   # MSRV 1.88; forwarder config: [[zones]] zone_type "External", stores type "forward"

missing=()
for pkg in dnsperf dnsdist unbound stubby knot-resolver nghttp2-client openssl; do
  dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# dnscrypt-proxy is not in Debian 12; install it only where the distribution offers it.
if ! command -v dnscrypt-proxy >/dev/null && apt-cache policy dnscrypt-proxy 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dnscrypt-proxy >/dev/null || true
fi

cargo build --release -q -p lanveil
if [ ! -x target/bench-tools/bin/hickory-dns ]; then
  echo "building hickory-dns $HICKORY_VERSION from crates.io (~5 min)" >&2
  cargo install -q hickory-dns --version "$HICKORY_VERSION" --locked --root target/bench-tools \
    --no-default-features --features resolver,tls-ring,https-ring,rustls-platform-verifier \
    || echo "hickory-dns could not be built; it will be reported as skipped" >&2
fi

exec timeout 1800 python3 tests/bench/peers.py "$@"
