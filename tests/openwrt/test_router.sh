#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The emulated OpenWrt router (tests/openwrt/router.sh, README-router.md):
# OpenWrt's real userland booted in namespaces, checked end to end as far as the
# rig goes today. One line per check, "PASS name" or "FAIL name: why".
# Needs root. Leaves the router down.
# shellcheck disable=SC2016  # single-quoted snippets are run inside the router
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
ROUTER="$HERE/router.sh"
RUN="${LANVEIL_ROUTER_RUN:-$REPO/target/openwrt-rig/run}"
T="$REPO/target/openwrt-rig/test"
rm -rf "$T"
mkdir -p "$T"

r() { "$ROUTER" exec router -- "$@"; }
lan() { "$ROUTER" exec lan -- "$@"; }
secs() { printf '%.1f' "$(echo "$(date +%s.%N) - $1" | bc)"; }

# Host state that the rig must not change, restricted to what the rig could
# leave (other jobs on the machine may add their own links, netns and tables):
# its device names, mounts under this checkout's target/, nft tables named like
# the router's. The rig never uses `ip netns` (/run/netns stays as it is).
host_state() {
	{
		echo "## rig links in the host netns"
		ip -o link show | sed 's/^[0-9]*: //; s/[@:].*//' | grep -Ex 'lan1|wan|br-lan' || true
		echo "## mounts under target/"
		findmnt -rn -o TARGET | grep -F "$REPO/target" || true
		echo "## fw4/lanveil nft tables on the host"
		nft list tables 2>/dev/null | grep -E ' (fw4|lanveil)$' || true
	}
}
# Processes still in one of the namespaces recorded in $1 (files of ns links).
ns_leftovers() {
	local p l
	for p in /proc/[0-9]*; do
		for l in net mnt pid; do
			grep -qxF "$(readlink "$p/ns/$l" 2>/dev/null)" "$1" 2>/dev/null && echo "${p#/proc/} ($l)"
		done
	done | sort -u
}
record_ns() {
	local n pid
	: >"$T/ns.list"
	for n in router lan isp; do
		pid="$(cat "$RUN/$n.pid" 2>/dev/null)" || continue
		readlink "/proc/$pid/ns/net" "/proc/$pid/ns/mnt" "/proc/$pid/ns/pid" >>"$T/ns.list" 2>/dev/null
	done
	# Never the host's own namespaces.
	grep -vxF -e "$(readlink /proc/self/ns/net)" -e "$(readlink /proc/self/ns/mnt)" \
		-e "$(readlink /proc/self/ns/pid)" "$T/ns.list" >"$T/ns.list.own" || true
}
# After a reboot inside the test: add the new namespaces to the list.
record_ns_add() {
	cp "$T/ns.list.own" "$T/ns.list.prev"
	record_ns
	cat "$T/ns.list.prev" >>"$T/ns.list.own"
}
nothing_left() {
	local left
	host_state >"$T/host.after"
	diff -u "$T/host.before" "$T/host.after" || return 1
	left="$(ns_leftovers "$T/ns.list.own")"
	[ -z "$left" ] || { echo "processes left in the rig's namespaces: $left"; return 1; }
	! ls "$RUN"/*.pid 2>/dev/null
}

[ "$(id -u)" = 0 ] || { fail root "needs root (namespaces)"; finish; exit 1; }
"$ROUTER" down >/dev/null 2>&1
host_state >"$T/host.before"

# --- build (cached) ---------------------------------------------------------------
t0=$(date +%s.%N)
if built="$("$HERE/rig/build.sh" 2>"$T/build.log")" && [ -x "$built/usr/sbin/procd" ]; then
	pass "rig-build ($(secs "$t0") s)"
else
	fail rig-build "$(tail -n 20 "$T/build.log")"
	finish
	exit 1
fi

# --- the download path's verification, without network: a file:// "GitHub" whose
# tarballs are the stored archives repacked as GitHub packs them (top directory
# REPO-COMMIT/, other compression), and raw files by repo/commit/path.
SRC_DIR="${LANVEIL_OPENWRT_SRC:-$REPO/../shared/openwrt-src}"
[ -d "$SRC_DIR" ] || SRC_DIR="$(dirname "$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)")/../shared/openwrt-src"
make_mirror() {
	local m="$1" name repo commit _d _s _c tmp path c
	rm -rf "$m"
	mkdir -p "$m/raw"
	while IFS=$'\t' read -r name repo commit _d _s _c; do
		[ "$name" = name ] && continue
		repo="${repo%% *}"
		tmp="$m/tmp/$name"
		mkdir -p "$tmp" "$m/$repo"
		tar -xzf "$SRC_DIR/$name.tar.gz" -C "$tmp"
		mv "$tmp/$name" "$tmp/${repo#*/}-$commit"
		tar -C "$tmp" -cf - "${repo#*/}-$commit" | gzip -1 >"$m/$repo/$commit.tar.gz"
	done <"$HERE/rig/sources.tsv"
	while IFS=$'\t' read -r path c _s; do
		repo=openwrt/openwrt
		case "$c" in *immortalwrt*) repo=immortalwrt/immortalwrt ;; esac
		c="${c%% *}"
		mkdir -p "$m/raw/$repo/$c/$(dirname "${path#immortalwrt/}")"
		cp "$SRC_DIR/base/$path" "$m/raw/$repo/$c/${path#immortalwrt/}"
	done <"$HERE/rig/base.tsv"
}
fetch_from_mirror() {
	rm -rf "$T/fetched"
	LANVEIL_OPENWRT_SRC=none LANVEIL_OPENWRT_ARCHIVE_URL="file://$T/mirror/{repo}/{commit}.tar.gz" \
		LANVEIL_OPENWRT_RAW_URL="file://$T/mirror/raw/{repo}/{commit}/{path}" \
		"$HERE/rig/build.sh" --fetch-only "$T/fetched"
}
if [ -d "$SRC_DIR" ]; then
	make_mirror "$T/mirror"
	check download-verified-by-content fetch_from_mirror
	check download-unpacked-as-name test -f "$T/fetched/procd/CMakeLists.txt"
	# One changed file in one archive: refused, and the bad download is not kept.
	tmp="$T/mirror/tmp/uci"
	uci_commit="$(awk -F'\t' '$1=="uci"{print $3}' "$HERE/rig/sources.tsv")"
	echo '/* tampered */' >>"$tmp/uci-$uci_commit/cli.c"
	tar -C "$tmp" -cf - "uci-$uci_commit" | gzip -1 >"$T/mirror/openwrt/uci/$uci_commit.tar.gz"
	check download-tampered-refused sh -c "! { $(declare -f fetch_from_mirror); T='$T' HERE='$HERE' fetch_from_mirror; } 2>'$T/tampered.log' &&
		grep -q 'openwrt/uci@$uci_commit: content sha256' '$T/tampered.log' &&
		[ ! -e '$T/fetched/.cache/dl/uci-$uci_commit.tar.gz' ]"
else
	fail download-verification "no stored sources to make a mirror from ($SRC_DIR)"
fi

# --- a failed up cleans up after itself ------------------------------------------
check up-fails-bounded sh -c "! LANVEIL_ROUTER_TIMEOUT=0 '$ROUTER' up >'$T/up-fail.log' 2>&1"
check failed-up-leaves-nothing nothing_left

# --- up -------------------------------------------------------------------------
t0=$(date +%s.%N)
if "$ROUTER" up --fresh --no-lanveil >"$T/up.log" 2>&1; then
	pass "up-fresh ($(secs "$t0") s)"
else
	fail up-fresh "$(tail -n 30 "$T/up.log")"
	"$ROUTER" down >/dev/null 2>&1
	finish
	exit 1
fi
record_ns
t0=$(date +%s.%N)
check up-idempotent sh -c "'$ROUTER' up --no-lanveil 2>&1 | grep -q 'already up'"

# --- the router's userland ---------------------------------------------------------
check procd-is-pid1 sh -c "[ \"\$('$ROUTER' exec router -- cat /proc/1/comm)\" = procd ]"
check hostname-openwrt sh -c "[ \"\$('$ROUTER' exec router -- cat /proc/sys/kernel/hostname)\" = OpenWrt ]"
r ubus call service list >"$T/services.json" 2>&1
for svc in log rpcd network firewall dnsmasq odhcpd; do
	check "procd-runs-$svc" sh -c "r() { '$ROUTER' exec router -- \"\$@\"; }
		r ubus call service list '{\"name\":\"$svc\"}' | grep -q '\"running\": true' ||
		r ubus call service list '{\"name\":\"$svc\"}' | grep -q '\"$svc\"'"
done
check ubus-objects sh -c "'$ROUTER' exec router -- ubus list >'$T/ubus.list' &&
	grep -qx service '$T/ubus.list' && grep -qx network.interface.lan '$T/ubus.list' &&
	grep -qx dhcp '$T/ubus.list' && grep -qx uci '$T/ubus.list' && grep -qx session '$T/ubus.list'"
check uci-real sh -c "[ \"\$('$ROUTER' exec router -- uci get network.lan.ipaddr)\" = 192.168.1.1 ]"
check jsonfilter-stdin sh -c "[ \"\$('$ROUTER' exec router -- sh -c 'echo {\\\"a\\\":1} | jsonfilter -e @.a')\" = 1 ]"

# netifd: LAN and WAN configured from /etc/config/network, hotplug iface events.
check netifd-lan-v4 sh -c "'$ROUTER' exec router -- ip addr show br-lan | grep -q 'inet 192.168.1.1/24'"
check netifd-lan-v6 sh -c "'$ROUTER' exec router -- ip addr show br-lan | grep -q 'inet6 fd00:1::1/64'"
check netifd-wan-up sh -c "'$ROUTER' exec router -- ubus call network.interface.wan status | grep -q '\"up\": true'"
check netifd-default-route sh -c "'$ROUTER' exec router -- ip route | grep -q 'default via 192.0.2.1 dev wan'"
check hotplug-iface-ifup sh -c "'$ROUTER' exec router -- grep -q 'iface ACTION=ifup INTERFACE=lan' /tmp/hotplug.log"

# fw4 on nftables, inside the router's netns only.
check fw4-table sh -c "'$ROUTER' exec router -- nft list table inet fw4 | grep -q 'chain input_lan'"
check fw4-check r fw4 check
check fw4-not-on-host sh -c "! nft list tables 2>/dev/null | grep -q fw4"

# dnsmasq: OpenWrt's init wrote the LAN's DHCP range from UCI; odhcpd serves RA.
check dnsmasq-dhcp-range sh -c "'$ROUTER' exec router -- sh -c 'cat /var/etc/dnsmasq.conf.*' |
	grep -q 'dhcp-range=set:lan,192.168.1.100,192.168.1.249,255.255.255.0,12h'"
check odhcpd-ra-lan sh -c "'$ROUTER' exec router -- ubus call dhcp ipv6ra | grep -q br-lan"

# procd's config triggers: uci commit + reload_config reloads dnsmasq with the change.
check reload-config-dnsmasq sh -c "'$ROUTER' exec router -- sh -c '
	uci set dhcp.lan.leasetime=2h && uci commit dhcp && reload_config
	for i in \$(seq 1 50); do grep -q \"192.168.1.249,255.255.255.0,2h\" /var/etc/dnsmasq.conf.* && exit 0; sleep 0.2; done
	exit 1'"

# --- the LAN client ------------------------------------------------------------------
cat >"$T/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
bound | renew)
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}"
	echo "lease ip=$ip router=$router dns=$dns"
	;;
esac
EOF
chmod +x "$T/udhcpc.sh"
lease=""
for _ in 1 2 3 4 5; do
	lease="$(lan busybox udhcpc -i eth0 -n -q -t 3 -T 1 -s "$T/udhcpc.sh" 2>/dev/null | grep '^lease')" && break
done
if echo "$lease" | grep -Eq '^lease ip=192\.168\.1\.[0-9]+ router=192\.168\.1\.1 dns=192\.168\.1\.1$'; then
	pass "lan-dhcp-lease (${lease#lease })"
else
	fail lan-dhcp-lease "got: ${lease:-no lease}"
fi
check lan-lease-on-router sh -c "'$ROUTER' exec router -- grep -q '192.168.1.' /tmp/dhcp.leases"

# Without lanveil the router's dnsmasq forwards to the ISP resolver from the WAN's
# DNS: the plain path works and the ISP's log is live (lanveil's scenarios check
# that it stays empty).
ans="$(lan dig +short +time=2 +tries=2 @192.168.1.1 probe-plain.example A 2>&1)"
check lan-dig-via-router [ "$ans" = 1.2.3.4 ]
check isp-resolver-logs-it grep -q 'query\[A\] probe-plain.example from 192.0.2.2' "$RUN/isp-resolver.log"

# --- scenario 1: install (opkg, offline from the ipk `cargo board ipk x86_64` builds) ---
IPK="${LANVEIL_IPK:-}"
if [ -z "$IPK" ]; then
	for f in "$REPO"/target/board/x86_64/lanveil_*_x86_64.ipk; do [ -f "$f" ] && IPK="$f"; done
fi
if [ -z "$IPK" ]; then
	fail ipk-present "no target/board/x86_64/lanveil_*.ipk: run cargo board ipk x86_64 (or set LANVEIL_IPK)"
else
	pass "ipk-present ($(basename "$IPK"))"
	r cat /etc/config/dhcp >"$T/dhcp.before-install"
	check opkg-install env LANVEIL_IPK="$IPK" "$ROUTER" install
	check opkg-status r sh -c 'opkg status lanveil | grep -Eq "^Status: install (ok|user) installed"'
	check user-created r grep -q '^lanveil:x:5453:5453:' /etc/passwd
	check uci-defaults-ran r sh -c '[ "$(uci get lanveil.openwrt.dnsmasq)" = 1 ] && [ ! -e /etc/uci-defaults/90-lanveil ]'
	check service-enabled r test -L /etc/rc.d/S25lanveil
	r ubus call service list '{"name":"lanveil","verbose":true}' >"$T/lanveil.service" 2>&1
	check procd-instance-running grep -q '"running": true' "$T/lanveil.service"
	check procd-instance-command sh -c "tr -d ' \t\n' <'$T/lanveil.service' |
		grep -q '\"command\":\[\"/usr/sbin/lanveil\",\"--config\",\"/etc/config/lanveil\"\]'"
	check procd-instance-user grep -q '"user": "lanveil"' "$T/lanveil.service"
	check procd-instance-respawn grep -q '"respawn"' "$T/lanveil.service"
	check daemon-runs-as-lanveil r sh -c 'p=$(pidof /usr/sbin/lanveil) && [ "$(stat -c %U /proc/$p)" = lanveil ]'
	check dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* && grep -q "^no-resolv" /var/etc/dnsmasq.conf.*'
	check lanveil-nft-table r nft list table inet lanveil
	check fw4-table-still-there r nft list table inet fw4

	# --- scenario 2: LAN-wide protection ------------------------------------------
	# A DoT upstream in the ISP namespace (Debian's unbound, throwaway CA, at
	# 203.0.113.53:853 as dot.test); lanveil pointed at it through uci and a
	# restart (the reload path is checked below: it does not reach the daemon).
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=lanveil rig test CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dot.test" \
		-keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:dot.test\nextendedKeyUsage=serverAuth\n' >"$T/ext"
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/ext" -out "$T/server.pem" 2>/dev/null
	cat >"$T/unbound.conf" <<-EOF
		server:
			interface: 203.0.113.53@853
			tls-port: 853
			tls-service-key: "$T/server.key"
			tls-service-pem: "$T/server.pem"
			do-daemonize: no
			username: ""
			chroot: ""
			directory: "$T"
			pidfile: ""
			use-syslog: no
			logfile: "$T/unbound.log"
			verbosity: 1
			log-queries: yes
			do-ip6: no
			access-control: 0.0.0.0/0 allow
			local-zone: "." static
			local-zone: "probe.test." static
			local-data: "probe.test. 300 IN A 1.2.3.77"
		remote-control:
			control-enable: no
	EOF
	: >"$T/unbound.log"
	"$ROUTER" exec isp -- unbound -c "$T/unbound.conf" </dev/null >/dev/null 2>&1 &
	r sh -c 'mkdir -p /etc/lanveil && cat >/etc/lanveil/test-ca.pem' <"$T/ca.pem"
	check lanveil-uci-upstream r sh -c '
		while uci -q delete lanveil.@upstream[0]; do :; done
		uci set lanveil.rig=upstream &&
		uci set lanveil.rig.url="tls://203.0.113.53:853#dot.test" &&
		uci set lanveil.rig.ca_file=/etc/lanveil/test-ca.pem &&
		uci commit lanveil && /usr/sbin/lanveil --check-config /etc/config/lanveil &&
		/etc/init.d/lanveil restart'
	isp_before="$(grep -c 'query\[' "$RUN/isp-resolver.log")"
	ans=""
	for _ in $(seq 1 30); do
		ans="$(lan dig +short +time=2 +tries=1 @192.168.1.1 probe.test A 2>/dev/null)"
		[ "$ans" = 1.2.3.77 ] && break
		sleep 0.5
	done
	check lan-dig-via-lanveil-dot [ "$ans" = 1.2.3.77 ]
	check dot-upstream-saw-query grep -q 'probe.test. A IN' "$T/unbound.log"
	# Scenario 4 (first check): `/etc/init.d/lanveil reload` must make the daemon
	# re-read its file. The real procd sends reload_signal only when the instance's
	# parameters changed (procd service/instance.c: instance_update ->
	# instance_restart); lanveil's instance has the same parameters after a uci
	# change, so nothing reaches the daemon. FAILS until the init script adds
	# `procd_set_param file /etc/config/lanveil` (the file's checksum becomes a
	# parameter, as dnsmasq's init does).
	check reload-reaches-daemon r sh -c '
		n=$(logread | grep -c "configuration reloaded")
		uci set lanveil.main.log_level=debug && uci commit lanveil && /etc/init.d/lanveil reload
		for i in $(seq 1 25); do
			[ "$(logread | grep -c "configuration reloaded")" -gt "$n" ] && exit 0
			sleep 0.2
		done
		echo "no \"configuration reloaded\" from the daemon within 5 s"; exit 1'
	# Scenario 3 (first checks): the LAN client asks the ISP resolver directly; the
	# router's capture (lanveil's nft table, force_dns on by default) answers it
	# through lanveil (the DoT upstream's answer, not the ISP's 1.2.3.4).
	check force-dns-udp4 sh -c "[ \"\$('$ROUTER' exec lan -- dig +short +time=3 +tries=1 @198.51.100.53 probe.test A)\" = 1.2.3.77 ]"
	check force-dns-tcp4 sh -c "[ \"\$('$ROUTER' exec lan -- dig +tcp +short +time=3 +tries=1 @198.51.100.53 probe.test A)\" = 1.2.3.77 ]"
	# ... and after fw4 reloads its ruleset, by each way it can happen, lanveil's
	# rules are still there while lanveil runs.
	check fw4-reload-keeps-lanveil r sh -c 'fw4 reload >/dev/null 2>&1 && nft list table inet lanveil >/dev/null'
	check firewall-restart-keeps-lanveil r sh -c '/etc/init.d/firewall restart >/dev/null 2>&1 && nft list table inet lanveil >/dev/null'
	# A firewall config change (a new rule) applied by procd's config.change trigger.
	check firewall-config-change-keeps-lanveil r sh -c '
		uci add firewall rule >/dev/null && uci set firewall.@rule[-1].name=rig-test &&
		uci set firewall.@rule[-1].src=lan && uci set firewall.@rule[-1].proto=tcp &&
		uci set firewall.@rule[-1].dest_port=9999 && uci set firewall.@rule[-1].target=REJECT &&
		uci commit firewall && reload_config || exit 1
		for i in $(seq 1 50); do
			nft list table inet fw4 | grep -q "rig-test" && break
			sleep 0.2
		done
		nft list table inet fw4 | grep -q "rig-test" || { echo "fw4 did not apply the new rule"; exit 1; }
		nft list table inet lanveil >/dev/null'
	check force-dns-after-fw4-restart sh -c "[ \"\$('$ROUTER' exec lan -- dig +short +time=3 +tries=1 @198.51.100.53 probe.test A)\" = 1.2.3.77 ]"
	# Scenario 6 (first check): kill -9 of the daemon, procd respawns it.
	check procd-respawns-after-kill9 r sh -c '
		old=$(pidof /usr/sbin/lanveil) && kill -9 $old || exit 1
		for i in $(seq 1 50); do
			new=$(pidof /usr/sbin/lanveil) && [ "$new" != "$old" ] && exit 0
			sleep 0.2
		done
		echo "not respawned within 10 s"; exit 1'
	check isp-resolver-saw-nothing sh -c "[ \"\$(grep -c 'query\[' '$RUN/isp-resolver.log')\" = '$isp_before' ] &&
		! grep -q probe.test '$RUN/isp-resolver.log'"

	# --- scenario 7 (first checks): reboot. down + up keeps the flash (/etc),
	# /tmp and /var start empty; lanveil comes up enabled and dnsmasq is wired.
	"$ROUTER" down >/dev/null 2>&1
	if "$ROUTER" up --no-lanveil >"$T/reboot.log" 2>&1; then
		record_ns_add
		"$ROUTER" exec isp -- unbound -c "$T/unbound.conf" </dev/null >/dev/null 2>&1 &
		check reboot-lanveil-running r sh -c '
			for i in $(seq 1 50); do
				ubus call service list "{\"name\":\"lanveil\"}" | grep -q "\"running\": true" && exit 0
				sleep 0.2
			done; exit 1'
		check reboot-dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*'
		ans=""
		for _ in $(seq 1 30); do
			ans="$(nsenter -t "$(cat "$RUN/router.pid")" -n \
				dig +short +time=2 +tries=1 @192.168.1.1 probe.test A 2>/dev/null)"
			[ "$ans" = 1.2.3.77 ] && break
			sleep 0.5
		done
		check reboot-resolves-via-lanveil [ "$ans" = 1.2.3.77 ]
	else
		fail reboot-up "$(tail -n 20 "$T/reboot.log")"
	fi

	# --- scenario 8 (first checks): undo. stop restores /etc/config/dhcp byte for
	# byte and removes lanveil's nft table; fw4's stays.
	check stop-service r /etc/init.d/lanveil stop
	check stop-restores-dhcp sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.before-install'"
	check stop-removes-nft-table r sh -c '! nft list table inet lanveil >/dev/null 2>&1'
	check stop-keeps-fw4 r nft list table inet fw4
	check stop-unwires-dnsmasq r sh -c '
		for i in $(seq 1 25); do
			grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* || exit 0
			sleep 0.2
		done; exit 1'

	# --- scenario 1, image case: the package pre-installed offline in a fresh
	# flash comes up on first boot through uci-defaults, with no manual step.
	"$ROUTER" down >/dev/null 2>&1
	if LANVEIL_IPK="$IPK" "$ROUTER" up --image --no-lanveil >"$T/image.log" 2>&1; then
		record_ns_add
		pass image-first-boot
		check image-uci-defaults-ran r sh -c '[ "$(uci get lanveil.openwrt.dnsmasq)" = 1 ] && [ ! -e /etc/uci-defaults/90-lanveil ]'
		check image-user r grep -q '^lanveil:x:5453:5453:' /etc/passwd
		check image-lanveil-running r sh -c '
			for i in $(seq 1 50); do
				ubus call service list "{\"name\":\"lanveil\"}" | grep -q "\"running\": true" && exit 0
				sleep 0.2
			done; exit 1'
		check image-dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*'
	else
		fail image-first-boot "$(tail -n 20 "$T/image.log")"
	fi
fi

# --- down -------------------------------------------------------------------------
t0=$(date +%s.%N)
if "$ROUTER" down >"$T/down.log" 2>&1; then pass "down ($(secs "$t0") s)"; else fail down "$(cat "$T/down.log")"; fi
check down-leaves-nothing nothing_left
check rootfs-kept-as-flash test -f "$RUN/rootfs/etc/config/network"
check down-idempotent "$ROUTER" down

finish
