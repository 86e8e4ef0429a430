#!/usr/bin/env bash
# Installs what lanveil's test suite needs on Debian 12 (idempotent; run as root or with sudo).
# Real components only: dig and kdig (clients), unbound (a DoT server we did not write), openssl.
set -euo pipefail

need=(dnsutils knot-dnsutils unbound dnsdist openssl tshark busybox dnsmasq-base iproute2 nftables openssh-server openssh-client)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "tests/setup.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts unbound as a service on install where systemd runs; the tests start their own.
for p in dig kdig unbound dnsdist openssl tshark busybox ip nft sshd ssh; do
  command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || [ -x "/sbin/$p" ] || { echo "tests/setup.sh: $p still missing" >&2; exit 1; }
done
