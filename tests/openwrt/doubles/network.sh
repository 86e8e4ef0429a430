# Test double of /lib/functions/network.sh: answers from $IPKG_INSTROOT/tmp/fake-network
# (lines: NETWORK DEVICE [PHYSDEV]; DEVICE '-': the network is down, it has no layer-3
# device; PHYSDEV defaults to DEVICE) and $FAKE_WAN / $FAKE_WAN6 instead of ubus.
# shellcheck shell=busybox
network_find_wan() { eval "$1=\"\${FAKE_WAN-wan}\""; [ -n "${FAKE_WAN-wan}" ]; }
network_find_wan6() { eval "$1=\"\${FAKE_WAN6-}\""; [ -n "${FAKE_WAN6-}" ]; }
network_get_device() {
	local d
	d="$(awk -v n="$2" '$1 == n && $2 != "-" { print $2 }' "$IPKG_INSTROOT/tmp/fake-network" 2>/dev/null)"
	eval "$1=\"\$d\""
	[ -n "$d" ]
}
network_get_physdev() {
	local d
	d="$(awk -v n="$2" '$1 == n { print (NF >= 3 ? $3 : $2) }' "$IPKG_INSTROOT/tmp/fake-network" 2>/dev/null)"
	[ "$d" = - ] && d=""
	eval "$1=\"\$d\""
	[ -n "$d" ]
}
