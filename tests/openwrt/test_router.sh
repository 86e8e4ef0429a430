#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The emulated OpenWrt router (tests/openwrt/router.sh, README.md):
# OpenWrt's real userland booted in namespaces, and issue 13's scenarios 1-10
# against it (tests/openwrt/README.md lists what each checks). One line per
# check, "PASS name" or "FAIL name: why". Needs root and python3 (the ISP's DoT
# recorder, the LAN client's DHCPv6/RA probe). Leaves the router down.
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
# Each recorded namespace is also held open (a file descriptor of this shell) until
# the end: the kernel reuses a freed namespace's inode number, so without the hold
# another job's new namespace (e.g. a second rig on the machine) could match.
NS_FDS=()
record_ns() {
	local n pid l fd
	: >"$T/ns.list"
	for n in router lan isp; do
		pid="$(cat "$RUN/$n.pid" 2>/dev/null)" || continue
		readlink "/proc/$pid/ns/net" "/proc/$pid/ns/mnt" "/proc/$pid/ns/pid" >>"$T/ns.list" 2>/dev/null
		for l in net mnt pid; do
			exec {fd}<"/proc/$pid/ns/$l" && NS_FDS+=("$fd")
		done
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
# odhcpd lists br-lan once netifd has handed it the interface (it can lag the checks above); a
# failure shows what odhcpd and netifd had then.
cat >"$T/odhcpd-diag.sh" <<'EOF'
echo "ipv6ra: $(ubus call dhcp ipv6ra 2>&1 | tr -s '\n ' '  ')"
echo "br-lan: $(ip -6 addr show br-lan 2>&1 | grep inet6 | tr -s '\n ' '  ')"
echo "br-lan operstate: $(cat /sys/class/net/br-lan/operstate 2>&1) carrier: $(cat /sys/class/net/br-lan/carrier 2>&1)"
echo "odhcpd pid: $(pidof odhcpd)"
ubus call network.interface.lan status 2>&1 | grep -E '"(up|l3_device)"'
logread | grep -i odhcpd | tail -n 8
EOF
# In about one full run in five odhcpd never listed br-lan: it drops an interface that is not
# IFF_RUNNING when netifd's notification makes it reload, and netifd notifies on carrier, before the
# kernel sets the hand-made bridge's operstate (see router.sh, after "lan up"; router.sh now waits for
# the operstate and reloads odhcpd; not yet proven under load). Kept until proven: after 15 s odhcpd is
# restarted once and given 15 s more, said in a NOTE line with what odhcpd had before (and br-lan's
# operstate), so the flake stays visible without failing lanveil's suite. No br-lan after the restart fails.
check odhcpd-ra-lan sh -c "lists() { for _ in \$(seq 75); do
		'$ROUTER' exec router -- ubus call dhcp ipv6ra | grep -q br-lan && return 0; sleep 0.2
	done; return 1; }
	lists && exit 0
	'$ROUTER' exec router -- sh -c \"\$(cat '$T/odhcpd-diag.sh')\" >'$T/odhcpd-before-restart' 2>&1
	'$ROUTER' exec router -- /etc/init.d/odhcpd restart
	lists && exit 0
	cat '$T/odhcpd-before-restart'; echo 'after an odhcpd restart:'
	'$ROUTER' exec router -- sh -c \"\$(cat '$T/odhcpd-diag.sh')\"; exit 1"
if [ -f "$T/odhcpd-before-restart" ]; then
	echo "NOTE odhcpd-ra-lan: br-lan listed only after restarting odhcpd; before: $(tr '\n' ' ' <"$T/odhcpd-before-restart")"
fi

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
	# The flash's file list (what opkg remove is compared against in scenario 8).
	FILES_CMD='find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /overlay -o -path /usr/lib/x86_64-linux-gnu \) -prune -o -print | sort'
	r sh -c "$FILES_CMD" >"$T/files.before-install"
	check opkg-install env LANVEIL_IPK="$IPK" "$ROUTER" install
	check opkg-status r sh -c 'opkg status lanveil | grep -Eq "^Status: install (ok|user) installed"'
	check user-created r grep -q '^lanveil:x:5453:5453:' /etc/passwd
	check uci-defaults-ran r sh -c '[ "$(uci get lanveil.openwrt.dnsmasq)" = 1 ] && [ ! -e /etc/uci-defaults/90-lanveil ]'
	check service-enabled r test -L /etc/rc.d/S25lanveil
	r ubus call service list '{"name":"lanveil","verbose":true}' >"$T/lanveil.service" 2>&1
	check procd-instance-running grep -q '"running": true' "$T/lanveil.service"
	check procd-instance-command sh -c "tr -d ' \t\n' <'$T/lanveil.service' |
		grep -q '\"command\":\[\"/usr/sbin/lanveil\",\"--config\",\"/etc/config/lanveil\",\"--last-good\",\"/etc/lanveil/daemon/last-good\",\"--wan-portal-record\",\"/var/run/lanveil/wan_portal\"\]'"
	check procd-instance-user grep -q '"user": "lanveil"' "$T/lanveil.service"
	check procd-instance-respawn grep -q '"respawn"' "$T/lanveil.service"
	check daemon-runs-as-lanveil r sh -c 'p=$(pgrep -f "^/usr/sbin/lanveil --config") && [ "$(stat -c %U /proc/$p)" = lanveil ]'
	check dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* && grep -q "^no-resolv" /var/etc/dnsmasq.conf.*'
	check lanveil-nft-table r nft list table inet lanveil
	check fw4-table-still-there r nft list table inet fw4

	# --- scenario 2: LAN-wide protection ------------------------------------------
	# DoT upstreams in the ISP namespace, with a throwaway CA, name dot.test:
	# Debian's unbound at 203.0.113.53:853 (also [2001:db8:53::53]:853, and plain
	# TCP on 127.0.0.1:5300 inside the ISP), answering every name under probe.test
	# with 1.2.3.77; and the recorder (rig/dot-recorder.py: OpenSSL via Python's
	# ssl module) at 203.0.113.54:853, which logs each DNS message it receives
	# after TLS and passes it to unbound.
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
			interface: 2001:db8:53::53@853
			interface: 127.0.0.1@5300
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
			access-control: 0.0.0.0/0 allow
			access-control: ::/0 allow
			local-zone: "." static
			local-zone: "probe.test." redirect
			local-data: "probe.test. 300 IN A 1.2.3.77"
		remote-control:
			control-enable: no
	EOF
	: >"$T/unbound.log"
	: >"$T/recorder.log"
	# The ISP routes the LAN's ULA prefix back to the router (the router does not
	# NAT IPv6), and holds the recorder's address.
	"$ROUTER" exec isp -- sh -c 'ip -6 route replace fd00:1::/64 via 2001:db8:1::2 && ip addr add 203.0.113.54/32 dev lo'
	start_upstreams() {
		"$ROUTER" exec isp -- unbound -c "$T/unbound.conf" </dev/null >/dev/null 2>&1 &
		"$ROUTER" exec isp -- python3 "$HERE/rig/dot-recorder.py" 203.0.113.54 853 "$T/server.pem" \
			"$T/server.key" 127.0.0.1 5300 "$T/recorder.log" </dev/null >>"$T/recorder.err" 2>&1 &
	}
	start_upstreams
	r sh -c 'mkdir -p /etc/lanveil && cat >/etc/lanveil/test-ca.pem' <"$T/ca.pem"
	check lanveil-uci-upstream r sh -c '
		while uci -q delete lanveil.@upstream[0]; do :; done
		uci set lanveil.rig=upstream &&
		uci set lanveil.rig.url="tls://203.0.113.53:853#dot.test" &&
		uci set lanveil.rig.ca_file=/etc/lanveil/test-ca.pem &&
		uci commit lanveil && /usr/sbin/lanveil --check-config /etc/config/lanveil &&
		/etc/init.d/lanveil restart'
	isp_before="$(grep -c 'query\[' "$RUN/isp-resolver.log")"
	# dig NAME [DIG ARGS...] from the LAN client: "STATUS ANSWER" (answer: first A, or -).
	n_q=0
	fresh() { n_q=$((n_q + 1)); echo "q$n_q-$RANDOM.probe.test"; }
	ask() {
		local name="$1" out st
		shift
		out="$(lan dig +time=2 +tries=2 "$@" "$name" A 2>&1)"
		st="$(printf '%s\n' "$out" | sed -n 's/.*status: \([A-Z]*\),.*/\1/p' | head -n1)"
		echo "${st:-NOANSWER} $(printf '%s\n' "$out" | awk '$4 == "A" { print $5; exit }' | grep . || echo -)"
	}
	answers() { # EXPECTED NAME DIG-ARGS...: the LAN client gets NOERROR with EXPECTED
		local want="$1" got
		shift
		got="$(ask "$@")"
		[ "$got" = "NOERROR $want" ] || { echo "got: $got"; return 1; }
	}
	ans=""
	for _ in $(seq 1 30); do
		ans="$(lan dig +short +time=2 +tries=1 @192.168.1.1 probe.test A 2>/dev/null)"
		[ "$ans" = 1.2.3.77 ] && break
		sleep 0.5
	done
	check lan-dig-via-lanveil-dot [ "$ans" = 1.2.3.77 ]
	check dot-upstream-saw-query grep -q 'probe.test. A IN' "$T/unbound.log"
	# `/etc/init.d/lanveil reload` reaches the daemon: procd sends reload_signal only
	# when the instance's parameters changed (service/instance.c: instance_update ->
	# instance_restart); the init's `procd_set_param file /etc/config/lanveil`
	# makes the file's checksum one of them.
	check reload-reaches-daemon r sh -c '
		n=$(logread | grep -c "configuration reloaded")
		uci set lanveil.main.log_level=debug && uci commit lanveil && /etc/init.d/lanveil reload
		for i in $(seq 1 25); do
			[ "$(logread | grep -c "configuration reloaded")" -gt "$n" ] && exit 0
			sleep 0.2
		done
		echo "no \"configuration reloaded\" from the daemon within 5 s"; exit 1'
	r sh -c 'uci set lanveil.main.log_level=info && uci commit lanveil && /etc/init.d/lanveil reload'
	# procd files the daemon's stdout at daemon.info and its stderr at daemon.err:
	# information is not logged as an error.
	check daemon-info-at-info r sh -c 'logread | grep "lanveil\[[0-9]*\]: lanveil: info: configuration reloaded" | grep -q "daemon\.info"'
	check no-daemon-info-at-err r sh -c '! logread | grep "daemon\.err" | grep -q "lanveil\[[0-9]*\]: lanveil: info:"'

	# --- scenario 4: reload. uci set + uci commit + reload_config (procd's
	# config.change trigger); the daemon's status shows the new upstream.
	init_idle() { # no /etc/init.d/lanveil run in progress (procd runs triggers async)
		r sh -c 'for i in $(seq 1 100); do pgrep -f "[/]etc/init.d/lanveil" >/dev/null || exit 0; sleep 0.2; done; exit 1'
	}
	status_has() { # the daemon's control-socket status (raw envelope) names $1
		r sh -c 'lanveil --control /var/run/lanveil/daemon/control.sock status' | grep -aqF "$1"
	}
	status_lacks() { ! status_has "$1"; }
	wait_status_has() {
		local i
		for i in $(seq 1 50); do status_has "$1" && return 0; sleep 0.2; done
		echo "status does not show $1"
		return 1
	}
	# reload_config only reports files that changed since its last run: a first
	# run records lanveil's file (installed after the last one).
	r reload_config
	init_idle
	check reload-config-new-upstream r sh -c 'uci set lanveil.rig.url="tls://203.0.113.54:853#dot.test" && uci commit lanveil && reload_config'
	check status-shows-new-upstream wait_status_has 'tls://203.0.113.54:853#dot.test'
	init_idle
	# Scenario 2, padded DoT: what the upstream received after TLS.
	n="$(fresh)"
	check via-recorder answers 1.2.3.77 "$n" @192.168.1.1
	check upstream-received-the-query grep -q "$(printf '%s' "${n%%.*}" | od -An -tx1 | tr -d ' \n')" "$T/recorder.log"
	check upstream-queries-padded awk '
		{ for (i = 2; i <= 3; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } n++
		  if (v["pad"] == "-" || v["len"] % 128 != 0) { print "unpadded: " $0; bad = 1 } }
		END { if (!n) print "no queries recorded"; exit (bad || !n) }' "$T/recorder.log"
	# An invalid change: refused; the running configuration and dnsmasq stay.
	r sh -c 'cat /etc/config/dhcp' >"$T/dhcp.wired"
	dnsmasq_pid="$(r pidof dnsmasq)"
	daemon_pid="$(r pgrep -f "^/usr/sbin/lanveil --config")"
	check reload-config-invalid r sh -c 'uci set lanveil.rig.url="bogus://nowhere" && uci commit lanveil && reload_config'
	check invalid-change-refused r sh -c '
		for i in $(seq 1 50); do logread | grep -q "reload failed, keeping the running configuration" && exit 0; sleep 0.2; done; exit 1'
	init_idle
	check invalid-status-keeps-upstream wait_status_has 'tls://203.0.113.54:853#dot.test'
	check invalid-init-status-says-so r sh -c '/etc/init.d/lanveil status | grep -q "last good configuration"'
	check invalid-daemon-not-restarted [ "$(r pgrep -f "^/usr/sbin/lanveil --config")" = "$daemon_pid" ]
	check invalid-dnsmasq-untouched [ "$(r pidof dnsmasq)" = "$dnsmasq_pid" ]
	check invalid-dhcp-untouched sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.wired'"
	check invalid-dnsmasq-still-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*'
	check invalid-still-resolves answers 1.2.3.77 "$(fresh)" @192.168.1.1
	check reload-config-back r sh -c 'uci set lanveil.rig.url="tls://203.0.113.53:853#dot.test" && uci commit lanveil && reload_config'
	check status-shows-unbound-again wait_status_has 'tls://203.0.113.53:853#dot.test'
	init_idle
	# The owner adds a DNS forwarding (the ISP's plain resolver) and turns noresolv off, as
	# LuCI's DHCP/DNS page does: uci commit dhcp + reload_config. procd's config.change for
	# dhcp reloads dnsmasq and runs lanveil's dhcp trigger, which wires dnsmasq again: it
	# forwards only to lanveil, and no query reaches the ISP resolver in plaintext.
	isp_before_dhcp="$(grep -c 'query\[' "$RUN/isp-resolver.log")"
	check dhcp-change-owner-server r sh -c 'uci add_list dhcp.@dnsmasq[0].server=198.51.100.53 &&
		uci set dhcp.@dnsmasq[0].noresolv=0 && uci commit dhcp && reload_config'
	# procd runs the triggers 1 s after the event, one at a time (dnsmasq's reload, lanveil's
	# rewire): wait for lanveil's commit, then for the dnsmasq that rewire restarted.
	check dhcp-change-uci-rewired r sh -c '
		for i in $(seq 1 75); do
			[ "$(uci -q get dhcp.@dnsmasq[0].noresolv)" = 1 ] && ! uci -q get dhcp.@dnsmasq[0].server | grep -q 198.51.100.53 && exit 0
			sleep 0.2
		done
		uci show dhcp | grep "dnsmasq\[0\]\.\(server\|noresolv\)"; exit 1'
	check dhcp-change-rewire-logged r sh -c 'logread | tail -n 20 | grep -q "lanveil: dnsmasq now forwards to lanveil"'
	check dhcp-change-dnsmasq-rewired r sh -c '
		for i in $(seq 1 50); do
			if ! grep -q "^server=198.51.100.53" /var/etc/dnsmasq.conf.* && grep -q "^no-resolv" /var/etc/dnsmasq.conf.* &&
				grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*; then exit 0; fi
			sleep 0.2
		done
		grep "^server\|resolv" /var/etc/dnsmasq.conf.*; exit 1'
	init_idle
	check dhcp-change-resolves-via-lanveil answers 1.2.3.77 "$(fresh)" @192.168.1.1
	check dhcp-change-resolves-via-lanveil-again answers 1.2.3.77 "$(fresh)" @192.168.1.1
	check dhcp-change-no-plaintext sh -c "[ \"\$(grep -c 'query\[' '$RUN/isp-resolver.log')\" = '$isp_before_dhcp' ]"
	# stop puts the owner's forwarding back (it was the owner's edit); then the dhcp from
	# before the install again, so scenario 8 can compare byte for byte.
	check dhcp-change-stop r /etc/init.d/lanveil stop
	check dhcp-change-stop-keeps-owner-server r sh -c 'uci -q get dhcp.@dnsmasq[0].server | grep -q 198.51.100.53'
	r sh -c 'cat >/etc/config/dhcp' <"$T/dhcp.before-install"
	check dhcp-change-start-again r /etc/init.d/lanveil start
	init_idle

	# A server= line outside uci (/etc/dnsmasq.conf, which OpenWrt's dnsmasq init passes
	# as --conf-file; a file of another package in /tmp/dnsmasq.d is the same) names the
	# ISP's plain resolver. dnsmasq would send queries there besides lanveil; the leak
	# guard (nothing dnsmasq's uid sends leaves by the WAN zone) stops them: answers come
	# through lanveil, the ISP hears nothing, the status counts the drops. Then the same
	# set-up without the guard's chain leaks, so the scenario is one that would.
	dnsmasq_up() { # a restarted dnsmasq answers the LAN again
		local i
		for i in $(seq 1 50); do answers 1.2.3.77 "$(fresh)" @192.168.1.1 >/dev/null && return 0; sleep 0.2; done
		echo "dnsmasq does not answer"
		return 1
	}
	check leak-guard-loaded r sh -c 'nft list chain inet lanveil_leak output | grep -q "meta skuid $(id -u dnsmasq) oifname"'
	isp_before_conf="$(grep -c 'query\[' "$RUN/isp-resolver.log")"
	r sh -c '{ cp /etc/dnsmasq.conf /tmp/dnsmasq.conf.orig 2>/dev/null || : >/tmp/dnsmasq.conf.orig; } &&
		echo "server=198.51.100.53" >>/etc/dnsmasq.conf && /etc/init.d/dnsmasq restart' >/dev/null 2>&1
	check extra-server-dnsmasq-up dnsmasq_up
	five_via_lanveil() {
		local i
		for i in 1 2 3 4 5; do answers 1.2.3.77 "$(fresh)" @192.168.1.1 || return 1; done
	}
	check extra-server-resolves-via-lanveil five_via_lanveil
	check extra-server-no-plaintext sh -c "[ \"\$(grep -c 'query\[' '$RUN/isp-resolver.log')\" = '$isp_before_conf' ]"
	check extra-server-status-counts r sh -c '/etc/init.d/lanveil status | grep -q "^Leak guard: dropped [1-9][0-9]* packets dnsmasq sent to zone(s) wan in plaintext"'
	r nft delete table inet lanveil_leak
	r /etc/init.d/dnsmasq restart >/dev/null 2>&1
	# Not dnsmasq_up: without the guard, the restarted dnsmasq sends its first query to both
	# servers and keeps to whichever answered first, often the ISP's plain resolver (no TLS):
	# probe.test names asked now would reach it (scenario 3 checks it never saw one). Any
	# answer will do here.
	dnsmasq_replies() {
		local i
		for i in $(seq 1 50); do
			[ "$(ask "up$i-$RANDOM.guard.test" @192.168.1.1 | cut -d' ' -f1)" != NOANSWER ] && return 0
			sleep 0.2
		done
		echo "dnsmasq does not answer"
		return 1
	}
	dnsmasq_replies >/dev/null
	# (Names outside probe.test: scenario 3 checks the ISP never saw one of those.)
	for i in 1 2 3 4 5; do ask "leak$i-$RANDOM.guard.test" @192.168.1.1 >/dev/null; done
	check extra-server-leaks-without-guard grep -q 'query\[A\] leak[0-9]*-[0-9]*\.guard\.test from' "$RUN/isp-resolver.log"
	r sh -c 'if [ -s /tmp/dnsmasq.conf.orig ]; then cp /tmp/dnsmasq.conf.orig /etc/dnsmasq.conf; else rm -f /etc/dnsmasq.conf; fi &&
		rm -f /tmp/dnsmasq.conf.orig && /etc/init.d/dnsmasq restart' >/dev/null 2>&1
	check leak-guard-back-on-reload r sh -c '/etc/init.d/lanveil reload; nft list chain inet lanveil_leak output | grep -q "meta skuid"'
	init_idle
	check extra-server-gone-resolves dnsmasq_up
	isp_before="$(grep -c 'query\[' "$RUN/isp-resolver.log")"

	# --- scenario 3: force-DNS. The LAN client asks the ISP resolver directly
	# (UDP and TCP, IPv4 and IPv6: the client has fd00:1::50 with the router as
	# its IPv6 gateway, set by hand: odhcpd announces no default route without a
	# public prefix); the router's capture answers through lanveil (the DoT
	# upstream's 1.2.3.77, not the ISP resolver's 1.2.3.4).
	lan sh -c 'ip -6 addr add fd00:1::50/64 dev eth0 nodad && ip -6 route add default via fd00:1::1'
	capture_answers() {
		answers 1.2.3.77 "$(fresh)" @198.51.100.53 &&
			answers 1.2.3.77 "$(fresh)" +tcp @198.51.100.53 &&
			answers 1.2.3.77 "$(fresh)" @2001:db8:53::53 &&
			answers 1.2.3.77 "$(fresh)" +tcp @2001:db8:53::53
	}
	check force-dns-udp4 answers 1.2.3.77 "$(fresh)" @198.51.100.53
	check force-dns-tcp4 answers 1.2.3.77 "$(fresh)" +tcp @198.51.100.53
	check force-dns-udp6 answers 1.2.3.77 "$(fresh)" @2001:db8:53::53
	check force-dns-tcp6 answers 1.2.3.77 "$(fresh)" +tcp @2001:db8:53::53
	check isp-resolver-saw-nothing-v4-v6 sh -c "[ \"\$(grep -c 'query\[' '$RUN/isp-resolver.log')\" = '$isp_before' ] &&
		! grep -q probe.test '$RUN/isp-resolver.log'"
	# block_dot: LAN TCP 853 to outside resolvers (unbound's DoT port, IPv4 and
	# IPv6) connects before, is reset by the router after.
	dot_connects() { lan timeout 5 bash -c "exec 3<>/dev/tcp/$1/853"; }
	dot_refused() {
		local out
		out="$(lan timeout 5 bash -c "exec 3<>/dev/tcp/$1/853" 2>&1)" && { echo "connected"; return 1; }
		printf '%s\n' "$out" | grep -q 'Connection refused' || { echo "$out"; return 1; }
	}
	check dot-open-without-block-dot4 dot_connects 203.0.113.53
	check dot-open-without-block-dot6 dot_connects 2001:db8:53::53
	check block-dot-on r sh -c 'uci set lanveil.openwrt.block_dot=1 && uci commit lanveil && reload_config'
	check block-dot-rules r sh -c 'for i in $(seq 1 50); do nft list chain inet lanveil forward 2>/dev/null | grep -q "tcp dport 853" && exit 0; sleep 0.2; done; exit 1'
	init_idle
	check block-dot-refuses4 dot_refused 203.0.113.53
	check block-dot-refuses6 dot_refused 2001:db8:53::53
	check block-dot-counted r sh -c 'nft list chain inet lanveil forward | grep "tcp dport 853" | grep -vq "packets 0 "'
	# fw4 reloads its ruleset (fw4 reload, firewall restart, a firewall config
	# change through reload_config): each time lanveil's rules stay while it runs
	# (capture and DoT block work), and are gone once it stops.
	fw_config_change() {
		r sh -c 'uci add firewall rule >/dev/null && uci set firewall.@rule[-1].name=rig-test-$1 &&
			uci set firewall.@rule[-1].src=lan && uci set firewall.@rule[-1].proto=tcp &&
			uci set firewall.@rule[-1].dest_port=9999 && uci set firewall.@rule[-1].target=REJECT &&
			uci commit firewall && reload_config || exit 1
			for i in $(seq 1 50); do nft list table inet fw4 | grep -q "rig-test-$1" && exit 0; sleep 0.2; done
			echo "fw4 did not apply the new rule"; exit 1' _ "$1"
	}
	lanveil_rules_work() {
		r nft list chain inet lanveil dstnat >/dev/null && r nft list chain inet lanveil forward >/dev/null &&
			capture_answers && dot_refused 203.0.113.53
	}
	rules_gone() {
		! r nft list table inet lanveil >/dev/null 2>&1 || { echo "table inet lanveil still loaded"; return 1; }
		# The LAN's queries to the ISP resolver reach it now (its 1.2.3.4), DoT connects.
		answers 1.2.3.4 "$(fresh)" @198.51.100.53 && answers 1.2.3.4 "$(fresh)" @2001:db8:53::53 &&
			dot_connects 203.0.113.53
	}
	for ev in fw4-reload firewall-restart firewall-config-change; do
		case "$ev" in
		fw4-reload) check "$ev" r fw4 reload ;;
		firewall-restart) check "$ev" r /etc/init.d/firewall restart ;;
		firewall-config-change) check "$ev" fw_config_change "$ev" ;;
		esac
		check "$ev-fw4-still-there" r nft list table inet fw4
		check "$ev-keeps-lanveil-rules" lanveil_rules_work
		check "$ev-then-stop" r /etc/init.d/lanveil stop
		check "$ev-then-stop-rules-gone" rules_gone
		check "$ev-then-start" r /etc/init.d/lanveil start
		check "$ev-then-start-rules-back" lanveil_rules_work
	done
	isp_before="$(grep -c 'query\[' "$RUN/isp-resolver.log")"

	# --- scenario 5: WAN down and up through netifd (ubus network.interface.wan
	# down/up: what ifdown/ifup do). lanveil's interface trigger runs wan_up: only
	# the daemon is restarted; dnsmasq, lanveil's firewall table and the guard stay.
	snapshot() {
		{
			echo "dnsmasq $(r pidof dnsmasq)"
			echo "guard $(r pgrep -f '[/]usr/libexec/lanveil-guard')"
			r nft -a list table inet lanveil | head -n 1
			r md5sum /etc/config/dhcp /etc/config/firewall
			r sh -c 'cat /var/etc/dnsmasq.conf.*' | md5sum
		}
	}
	snapshot >"$T/wan.before"
	daemon_pid="$(r pgrep -f "^/usr/sbin/lanveil --config")"
	fw_logs="$(r logread | grep -c 'LAN DNS capture on')"
	# A LAN client keeps asking (a new name every 0.3 s, dig's default 2 tries)
	# from before the WAN goes down until well after it is back.
	(
		for i in $(seq 1 50); do
			echo "$(date +%s.%N | cut -c1-14) $(ask "w$i-$RANDOM.probe.test" @192.168.1.1)"
			sleep 0.3
		done
	) >"$T/wan.queries" &
	qloop=$!
	sleep 1
	check wan-down r ubus call network.interface.wan down
	check wan-is-down r sh -c 'sleep 1; ubus call network.interface.wan status | grep -q "\"up\": false"'
	check wan-up r ubus call network.interface.wan up
	wan_back="$(date +%s.%N | cut -c1-14)"
	check wan-daemon-restarted r sh -c '
		for i in $(seq 1 50); do
			p=$(pgrep -f "^/usr/sbin/lanveil --config") && [ "$p" != "'"$daemon_pid"'" ] &&
				ubus call service list "{\"name\":\"lanveil\"}" | grep -q "LANVEIL_WAN_EPOCH" && exit 0
			sleep 0.2
		done; echo "daemon not restarted"; exit 1'
	init_idle
	wait "$qloop"
	snapshot >"$T/wan.after"
	check wan-dnsmasq-firewall-guard-untouched diff "$T/wan.before" "$T/wan.after"
	check wan-no-lanveil-firewall-reload [ "$(r logread | grep -c 'LAN DNS capture on')" = "$fw_logs" ]
	check wan-no-query-lost-after-return awk -v t="$wan_back" '$1 >= t && !($2 == "NOERROR" && $3 == "1.2.3.77") { print; bad = 1 } END { exit bad }' "$T/wan.queries"
	check wan-queries-during-outage-not-leaked awk '$2 != "NOERROR" && $2 != "NOANSWER" && $2 != "SERVFAIL" && $2 != "REFUSED" { print; bad = 1 } $3 != "-" && $3 != "1.2.3.77" { print; bad = 1 } END { exit bad }' "$T/wan.queries"
	check wan-resolves-after answers 1.2.3.77 "$(fresh)" @192.168.1.1

	# --- scenario 5b: wan and wan6 up together (boot, a redial of the line): one
	# trigger each, one restart of the daemon (the first serves both).
	r ubus call network.interface.wan6 down
	r ubus call network.interface.wan down
	sleep 1
	check wan-wan6-up r sh -c 'ubus call network.interface.wan up && ubus call network.interface.wan6 up'
	# The daemon by its command line: `pidof` also lists a `lanveil --check-config` the init script
	# runs meanwhile (a sample catching one is the likely cause of this check's one failure).
	check wan-wan6-one-restart r sh -c '
		seen=""
		for i in $(seq 1 40); do
			p=$(pgrep -f "^/usr/sbin/lanveil --config" | tr "\n" " ") || p=""
			p=${p% }
			case " $seen " in *" $p "*) ;; *) seen="$seen $p" ;; esac
			sleep 0.2
		done
		set -- $seen
		[ $# = 2 ] || { echo "daemon processes seen: $seen"; exit 1; }'
	init_idle
	check wan6-trigger-served-by-wan-restart r sh -c 'logread | grep -q "wan6 up: lanveil was restarted for wan "'
	check wan-wan6-resolves-after answers 1.2.3.77 "$(fresh)" @192.168.1.1

	# --- scenario 5c: procd runs the trigger commands of all services one at a time, each
	# to its end (procd service/trigger.c: RUNQUEUE(q, 1), no time limit). wan_up's trigger
	# returns at once and restarts the daemon in a detached job, so another service's
	# trigger is not held up behind it. The daemon is stopped (SIGSTOP): the old process goes
	# only at procd's term_timeout (SIGKILL after 10 s), and the job waits for it meanwhile.
	init_idle
	old_pid="$(r pgrep -f "^/usr/sbin/lanveil --config")"
	r kill -STOP "$old_pid"
	r ubus call network.interface.wan down
	sleep 1
	r ubus call network.interface.wan up
	check wan-slow-exit-trigger-ran r sh -c 'for i in $(seq 1 50); do [ -e /var/run/lanveil/restarting ] && exit 0; sleep 0.2; done; exit 1'
	t0=$(date +%s.%N)
	# A firewall change through reload_config: fw4's own config trigger, queued behind
	# lanveil's if that one still ran.
	check wan-slow-exit-other-trigger-runs fw_config_change wan-slow-exit
	echo "# wan_up's trigger done, restart still waiting for the old daemon: fw4's trigger ran $(secs "$t0") s after the change"
	check wan-slow-exit-other-trigger-ran-before-old-daemon-gone r kill -0 "$old_pid"
	check wan-slow-exit-restart-completes r sh -c '
		for i in $(seq 1 150); do
			p=$(pgrep -f "^/usr/sbin/lanveil --config") && [ "$p" != "'"$old_pid"'" ] && ! [ -e /var/run/lanveil/restarting ] && exit 0
			sleep 0.2
		done; echo "daemon not restarted within 30 s"; exit 1'
	init_idle
	check wan-slow-exit-status-up r /etc/init.d/lanveil status
	check wan-slow-exit-resolves-after answers 1.2.3.77 "$(fresh)" @192.168.1.1

	# --- scenario 6: procd. kill -9 of the daemon: procd respawns it. A WAN captive
	# portal the udhcpc hook recorded (written here as the hook writes it; the running
	# daemon was not told) is known to the respawned daemon: it reads the record itself,
	# as no init script runs for a respawn.
	r sh -c 'mkdir -p /var/run/lanveil && echo "wan https://portal.respawn.example/api 192.0.2.53" >/var/run/lanveil/wan_portal'
	check wan-portal-not-yet-known status_lacks portal.respawn.example
	check procd-respawns-after-kill9 r sh -c '
		old=$(pgrep -f "^/usr/sbin/lanveil --config") && kill -9 $old || exit 1
		for i in $(seq 1 50); do
			new=$(pgrep -f "^/usr/sbin/lanveil --config") && [ "$new" != "$old" ] && exit 0
			sleep 0.2
		done
		echo "not respawned within 10 s"; exit 1'
	for _ in $(seq 1 25); do r sh -c '/etc/init.d/lanveil status' >/dev/null 2>&1 && break; sleep 0.2; done
	check answers-after-respawn answers 1.2.3.77 "$(fresh)" @192.168.1.1
	check respawned-daemon-knows-wan-portal status_has https://portal.respawn.example/api
	r sh -c 'rm -f /var/run/lanveil/wan_portal && lanveil --control /var/run/lanveil/daemon/control.sock wan-portal clear' >/dev/null 2>&1
	# A crash loop: the daemon exits at once on every start (its listen port is
	# taken), procd respawns it per procd_set_param respawn (3600 s threshold, 5 s
	# delay, 5 retries) and then gives up; the guard keeps the LAN fail-closed.
	rpid="$(cat "$RUN/router.pid")"
	nsenter -t "$rpid" -n python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    try:
        s.bind(("127.0.0.1", 5453)); break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit(1)
time.sleep(120)' &
	squatter=$!
	t0=$(date +%s.%N)
	r sh -c 'kill -9 $(pgrep -f "^/usr/sbin/lanveil --config")'
	if r sh -c 'for i in $(seq 1 300); do logread | grep -q "Instance lanveil::lanveil s in a crash loop" && exit 0; sleep 0.2; done; exit 1'; then
		pass "procd-gives-up-crash-loop ($(secs "$t0") s)"
	else
		fail procd-gives-up-crash-loop "no crash loop in logread after 60 s: $(r logread | grep lanveil | tail -n 5)"
	fi
	r logread >"$T/logread.crash-loop"
	# procd counts every exit within respawn_threshold (3600 s) of its start, the
	# earlier kill -9 too, and stops after respawn_retry (5) + 1 of them.
	check crash-loop-per-respawn-settings sh -c "grep -q 'Instance lanveil::lanveil s in a crash loop 6 crashes' '$T/logread.crash-loop' &&
		[ \"\$(grep -c 'cannot listen on 127.0.0.1:5453' '$T/logread.crash-loop')\" -ge 4 ] &&
		tr -d ' \t\n' <'$T/lanveil.service' | grep -q '\"respawn\":{\"threshold\":3600,\"timeout\":5,\"retry\":5}'"
	check crash-loop-instance-stopped r sh -c '! ubus call service list "{\"name\":\"lanveil\"}" | jsonfilter -e "@.lanveil.instances.lanveil.running" | grep -q true'
	check crash-loop-guard-armed r nft list table inet lanveil_down
	check crash-loop-status-down r sh -c '/etc/init.d/lanveil status | grep -q "^down since"'
	st="$(ask "$(fresh)" @192.168.1.1)"
	check crash-loop-lan-fails-closed sh -c "case '$st' in 'REFUSED -' | 'SERVFAIL -') ;; *) echo 'got: $st'; exit 1 ;; esac"
	st="$(ask "$(fresh)" @198.51.100.53)"
	check crash-loop-captured-fails-closed sh -c "case '$st' in 'REFUSED -' | 'SERVFAIL -') ;; *) echo 'got: $st'; exit 1 ;; esac"
	kill "$squatter" 2>/dev/null
	wait "$squatter" 2>/dev/null
	check crash-loop-recovers r /etc/init.d/lanveil restart
	check crash-loop-guard-lifted r sh -c '! nft list table inet lanveil_down 2>/dev/null'
	check crash-loop-answers-again answers 1.2.3.77 "$(fresh)" @192.168.1.1
	# A restart (LuCI's Restart button) stops and starts only the daemon: dnsmasq keeps
	# forwarding to lanveil throughout (its saved settings untouched, the process not
	# restarted with the owner's servers in between), so nothing reaches the ISP.
	dhcp_sum="$(r md5sum /etc/config/dhcp)"
	dnsmasq_pid="$(r pidof dnsmasq)"
	check restart-succeeds r /etc/init.d/lanveil restart
	check restart-dhcp-unchanged [ "$(r md5sum /etc/config/dhcp)" = "$dhcp_sum" ]
	check restart-dnsmasq-not-restarted sh -c "[ -n '$dnsmasq_pid' ] && [ \"\$('$ROUTER' exec router -- pidof dnsmasq)\" = '$dnsmasq_pid' ]"
	check restart-answers answers 1.2.3.77 "$(fresh)" @192.168.1.1
	cp "$RUN/isp-resolver.log" "$T/isp-resolver.log"
	r logread >"$T/logread.before-reboot"
	check isp-resolver-saw-nothing sh -c "[ \"\$(grep -c 'query\[' '$T/isp-resolver.log')\" = '$isp_before' ]"

	# --- scenario 9: LAN signals through the real daemons. captive_portal_uri,
	# v6only_wait and dns64_prefix set with uci + reload_config. The LAN client
	# hears them on the wire: DHCPv4 114 and 108 from dnsmasq (busybox udhcpc -O
	# 114 -O 108; dnsmasq is the DHCPv4 server, as OpenWrt configures it), DHCPv6
	# 103 and RA option 37 from odhcpd (rig/lan-probe.py: an Information-Request
	# and a Router Solicitation), on the pinned odhcpd's native path
	# (captive_portal_uri) and on the path for older odhcpd (dhcpv6_raw; no RA 37
	# there), forced with LANVEIL_ODHCPD_NATIVE=0.
	uri=https://portal.rig.test/capport
	urihex="$(printf '%s' "$uri" | od -An -tx1 | tr -d ' \n')"
	cat >"$T/udhcpc-opts.sh" <<-'EOF'
		#!/bin/sh
		case "$1" in bound | renew) echo "opt114=${opt114:-} opt108=${opt108:-}" ;; esac
	EOF
	chmod +x "$T/udhcpc-opts.sh"
	dhcpv4_opts() { # the options dnsmasq sends when asked for 114 and 108
		local i out
		for i in 1 2 3; do
			out="$(lan busybox udhcpc -i eth0 -n -q -t 3 -T 1 -O 114 -O 108 -s "$T/udhcpc-opts.sh" 2>/dev/null | grep '^opt114=')" && break
		done
		printf '%s\n' "$out"
	}
	probe() { lan python3 "$HERE/rig/lan-probe.py" "$@"; }
	check signals-set r sh -c "uci set lanveil.main.captive_portal_uri='$uri' && uci set lanveil.main.v6only_wait=1800 &&
		uci set lanveil.main.dns64_prefix=64:ff9b::/96 && uci commit lanveil && reload_config"
	check signals-applied r sh -c 'for i in $(seq 1 75); do grep -qF "'"$uri"'" /var/run/lanveil/capport 2>/dev/null && exit 0; sleep 0.2; done; exit 1'
	init_idle
	r cat /var/run/lanveil/capport >"$T/capport.native"
	check native-odhcpd-mode grep -q '^odhcpd: native' "$T/capport.native"
	check capport-status-v6only grep -qx 'IPv6-only preferred (DHCPv4 108): 1800 s' "$T/capport.native"
	check native-uci-captive-portal-uri [ "$(r uci -q get dhcp.lan.captive_portal_uri)" = "$uri" ]
	opts="$(dhcpv4_opts)"
	check native-dhcpv4-114-and-108 [ "$opts" = "opt114=$urihex opt108=00000708" ]
	probe dhcpv6 eth0 >"$T/dhcpv6.native" 2>&1
	check native-dhcpv6-103 grep -qx "dhcpv6-option 103 $urihex" "$T/dhcpv6.native"
	probe ra eth0 >"$T/ra.native" 2>&1
	check native-ra-option-37 grep -q "^ra-option 37 $urihex" "$T/ra.native"
	# DNS64 through dnsmasq and lanveil: an A-only name gets a synthesized AAAA,
	# and ipv4only.arpa (RFC 8880) answers from the prefix.
	aaaa="$(lan dig +short +time=2 +tries=2 @192.168.1.1 "$(fresh)" AAAA 2>&1)"
	check dns64-synthesized [ "$aaaa" = 64:ff9b::102:34d ]
	aaaa="$(lan dig +short +time=2 +tries=2 @192.168.1.1 ipv4only.arpa AAAA 2>&1 | sort | tr '\n' ' ')"
	check dns64-ipv4only-arpa [ "$aaaa" = "64:ff9b::c000:aa 64:ff9b::c000:ab " ]
	# The path for odhcpd older than 25.12.
	check legacy-restart r env LANVEIL_ODHCPD_NATIVE=0 /etc/init.d/lanveil restart
	init_idle
	r cat /var/run/lanveil/capport >"$T/capport.legacy"
	check legacy-odhcpd-mode grep -q '^odhcpd: no native options' "$T/capport.legacy"
	check legacy-uci-dhcpv6-raw sh -c "[ -n \"\$('$ROUTER' exec router -- uci -q get dhcp.lan.dhcpv6_raw)\" ] && ! '$ROUTER' exec router -- uci -q get dhcp.lan.captive_portal_uri"
	opts="$(dhcpv4_opts)"
	check legacy-dhcpv4-114-and-108 [ "$opts" = "opt114=$urihex opt108=00000708" ]
	probe dhcpv6 eth0 >"$T/dhcpv6.legacy" 2>&1
	check legacy-dhcpv6-103 grep -qx "dhcpv6-option 103 $urihex" "$T/dhcpv6.legacy"
	probe ra eth0 >"$T/ra.legacy" 2>&1
	check legacy-ra-no-option-37 sh -c "grep -q '^ra-option ' '$T/ra.legacy' && ! grep -q '^ra-option 37 ' '$T/ra.legacy'"
	check signals-native-again r /etc/init.d/lanveil restart
	init_idle

	# --- scenario 7a: the boot window. A reboot keeps the wiring, so dnsmasq (S19) starts
	# forwarding to lanveil; the WAN is up from S20 (network); lanveil starts at S25. Here its
	# start never comes (S25lanveil taken away: the window held open) while /etc/dnsmasq.conf
	# names the ISP's plain resolver. lanveil_early (S19) has loaded the leak guard lanveil
	# last left (/etc/lanveil/leak_guard.nft): the ISP hears none of the LAN's queries (asked
	# over IPv6: the client has no IPv4 lease yet), dnsmasq's attempts are dropped. First the
	# same boot without lanveil_early, to show that it would.
	check boot-guard-saved r test -s /etc/lanveil/leak_guard.nft
	r sh -c '{ cp /etc/dnsmasq.conf /etc/dnsmasq.conf.lanveil-test 2>/dev/null || : >/etc/dnsmasq.conf.lanveil-test; } &&
		echo "server=198.51.100.53" >>/etc/dnsmasq.conf'
	# The links go on the flash while the router is off (K15lanveil too: a shutdown without
	# S25lanveil is an owner's stop, which un-wires; see shutdown in lanveil.init).
	boot_window() { # NAME-PREFIX: boot with lanveil's links taken away, ask three names
		"$ROUTER" down >/dev/null 2>&1
		rm -f "$RUN/rootfs/etc/rc.d/S25lanveil" "$RUN/rootfs/etc/rc.d/K15lanveil"
		"$ROUTER" up --no-lanveil >"$T/reboot-window.log" 2>&1 || { tail -n 20 "$T/reboot-window.log"; return 1; }
		record_ns_add
		# The LAN client has no IPv4 lease yet after a reboot; its SLAAC address comes with the
		# router's first RA. Ready when dnsmasq answers it a name of its local domain (lan,
		# never forwarded).
		for i in $(seq 1 40); do
			lan dig +time=1 +tries=1 @fd00:1::1 "ready-$RANDOM.lan" A 2>/dev/null | grep -q 'status: NXDOMAIN' && break
			sleep 0.3
		done
		for i in 1 2 3; do ask "$1$i-$RANDOM.guard.test" @fd00:1::1 >/dev/null; done
	}
	check boot-window-early-link test -L "$RUN/rootfs/etc/rc.d/S19lanveil_early"
	mv "$RUN/rootfs/etc/rc.d/S19lanveil_early" "$T/S19lanveil_early"
	check boot-window-control-up boot_window nogd
	check boot-window-leaks-without-early-guard grep -q 'query\[A\] nogd[0-9]*-[0-9]*\.guard\.test from' "$RUN/isp-resolver.log"
	mv "$T/S19lanveil_early" "$RUN/rootfs/etc/rc.d/S19lanveil_early"
	check boot-window-up boot_window boot
	check boot-window-lanveil-not-started r sh -c '! pgrep -x lanveil >/dev/null'
	check boot-window-dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*'
	check boot-window-guard-loaded-early r sh -c 'nft list chain inet lanveil_leak output | grep -q "meta skuid $(id -u dnsmasq) oifname"'
	check boot-window-guard-logged r sh -c 'logread | grep -q "leak guard loaded before the network"'
	check boot-window-no-plaintext sh -c "! grep -q 'query\[A\] boot[0-9]*-[0-9]*\.guard\.test from' '$RUN/isp-resolver.log'"
	check boot-window-guard-dropped r sh -c 'nft list chain inet lanveil_leak output | grep -q "counter packets [1-9][0-9]* bytes [0-9]* drop"'
	# A stale copy: made before the owner swapped the ports (the LAN's device was the WAN's).
	# lanveil_early guards the devices the configuration has now: the WAN's, not the LAN's, so
	# the LAN gets dnsmasq's answers and the ISP hears none of its queries.
	cp "$RUN/rootfs/etc/lanveil/leak_guard.nft" "$T/leak_guard.nft"
	sed -i 's/oifname { [^}]* }/oifname { "br-lan" }/' "$RUN/rootfs/etc/lanveil/leak_guard.nft"
	check boot-stale-copy-names-lan grep -q 'meta skuid { [0-9 ,]* } oifname { "br-lan" } meta l4proto udp' "$RUN/rootfs/etc/lanveil/leak_guard.nft"
	check boot-stale-up boot_window stale
	lan_answered() { # dnsmasq answers the LAN a name of its local domain (never forwarded)
		local got
		got="$(ask "ready-$RANDOM.lan" @fd00:1::1)"
		[ "$got" = "NXDOMAIN -" ] || { echo "got: $got"; return 1; }
	}
	check boot-stale-lan-answered lan_answered
	check boot-stale-guards-wan-not-lan r sh -c 'nft list chain inet lanveil_leak output | grep -q "meta skuid $(id -u dnsmasq) oifname \"wan\" meta l4proto" &&
		! nft list table inet lanveil_leak | grep -q br-lan'
	check boot-stale-logged r sh -c 'logread | grep -q "leak guard loaded before the network, for wan (lanveil last left it for br-lan"'
	check boot-stale-no-plaintext sh -c "! grep -q 'query\[A\] stale[0-9]*-[0-9]*\.guard\.test from' '$RUN/isp-resolver.log'"
	cp "$T/leak_guard.nft" "$RUN/rootfs/etc/lanveil/leak_guard.nft"
	r sh -c 'if [ -s /etc/dnsmasq.conf.lanveil-test ]; then cp /etc/dnsmasq.conf.lanveil-test /etc/dnsmasq.conf; else rm -f /etc/dnsmasq.conf; fi &&
		rm -f /etc/dnsmasq.conf.lanveil-test && /etc/init.d/lanveil enable'
	check boot-window-reenabled r sh -c 'test -L /etc/rc.d/S25lanveil && test -L /etc/rc.d/K15lanveil'
	# lanveil's enable (OpenWrt's own rc.common runs the script's override) sets lanveil_early up
	# when it never was (lanveil disabled during the first upgrade that brought it), once: an
	# owner's later disable of lanveil_early stays.
	r sh -c '/etc/init.d/lanveil_early disable && rm -f /etc/lanveil/early-enabled'
	check early-set-up-by-enable r sh -c '/etc/init.d/lanveil enable && test -L /etc/rc.d/S19lanveil_early &&
		test -e /etc/lanveil/early-enabled && /etc/init.d/lanveil_early enabled'
	check early-owner-disable-kept r sh -c '/etc/init.d/lanveil_early disable && /etc/init.d/lanveil enable &&
		! test -e /etc/rc.d/S19lanveil_early && test -L /etc/rc.d/S25lanveil'
	r /etc/init.d/lanveil_early enable

	# --- scenario 7: reboot. down + up keeps the flash (/etc), /tmp and /var
	# start empty; lanveil comes up enabled, dnsmasq is wired, and the daemon's
	# clock floor comes from its state file (/etc/lanveil/daemon/state, option
	# state_file): written here, while the router is off, one hour ahead of now
	# (the daemon's own format: "LVST", schema 1, postcard u64, CRC-32), so the
	# daemon must say that the wall clock is behind that floor.
	"$ROUTER" down >/dev/null 2>&1
	floor=$(($(date +%s) + 3600))
	state="$RUN/rootfs/etc/lanveil/daemon/state"
	check clock-state-dir-on-flash test -d "$(dirname "$state")"
	python3 -c '
import struct, sys, zlib
v, body = int(sys.argv[1]), b""
while True:
    b = v & 0x7F
    v >>= 7
    body += bytes([b | (0x80 if v else 0)])
    if not v:
        break
blob = b"LVST" + struct.pack("<HI", 1, len(body)) + body
sys.stdout.buffer.write(blob + struct.pack("<I", zlib.crc32(blob)))' "$floor" >"$state"
	chown 5453:5453 "$state"
	echo stale >"$RUN/rootfs/tmp/from-before-reboot" 2>/dev/null || true
	if "$ROUTER" up --no-lanveil >"$T/reboot.log" 2>&1; then
		record_ns_add
		start_upstreams
		check reboot-tmp-is-new r sh -c '[ ! -e /tmp/from-before-reboot ]'
		check reboot-lanveil-running r sh -c '
			for i in $(seq 1 50); do
				ubus call service list "{\"name\":\"lanveil\"}" | grep -q "\"running\": true" && exit 0
				sleep 0.2
			done; exit 1'
		check reboot-dnsmasq-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.*'
		check reboot-clock-floor-from-state-file r sh -c '
			for i in $(seq 1 50); do logread | grep -q "wall clock is behind the time floor ([0-9]* < '"$floor"')" && exit 0; sleep 0.2; done
			logread | grep -i "floor\|state file" ; exit 1'
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

	# --- scenario 10: upgrade. sysupgrade's backup, as OpenWrt's
	# package/base-files/files/sbin/sysupgrade (openwrt/openwrt 02190068) makes it:
	# `include /lib/upgrade` (every /lib/upgrade/*.sh, lanveil's hook among them), then
	# do_save_conffiles: `run_hooks "$CONFFILES" $sysupgrade_init_conffiles` (run_hooks from
	# lib/upgrade/common.sh), the first hook being add_uci_conffiles (every file or link
	# found under the lines of /etc/sysupgrade.conf and /lib/upgrade/keep.d/*, plus opkg
	# list-changed-conffiles), and tar of that list. Run here with the router's busybox
	# find/sed/tar and its opkg (the rig has no /sbin/sysupgrade). On a real image
	# /etc/config/dhcp is dnsmasq's conffile, changed (lanveil's wiring), so
	# list-changed-conffiles names it; the rig installs dnsmasq without opkg: added here.
	check sysupgrade-backup r sh -c '
		. /lib/functions.sh
		CONFFILES=/tmp/sysupgrade.conffiles
		add_uci_conffiles() {
			local file="$1"
			( find $(sed -ne "/^[[:space:]]*$/d; /^#/d; p" /etc/sysupgrade.conf /lib/upgrade/keep.d/* 2>/dev/null) \
				-type f -o -type l 2>/dev/null; opkg list-changed-conffiles; echo /etc/config/dhcp ) | sort -u >"$file"
			return 0
		}
		run_hooks() {
			local arg="$1"; shift
			for func in "$@"; do eval "$func $arg"; done
		}
		sysupgrade_init_conffiles="add_uci_conffiles"
		include /lib/upgrade
		run_hooks "$CONFFILES" $sysupgrade_init_conffiles
		tar czf /tmp/sysupgrade.tgz -T "$CONFFILES"'
	r cat /tmp/sysupgrade.conffiles >"$T/sysupgrade.list"
	r cat /tmp/sysupgrade.tgz >"$T/sysupgrade.tgz"
	check sysupgrade-keeps-owner-dhcp grep -qx /etc/lanveil/sysupgrade/dhcp.owner "$T/sysupgrade.list"
	check sysupgrade-owner-dhcp-is-original sh -c "'$ROUTER' exec router -- cat /etc/lanveil/sysupgrade/dhcp.owner | cmp - '$T/dhcp.before-install'"
	check sysupgrade-keeps-uci-defaults grep -qx /etc/uci-defaults/99-lanveil-sysupgrade "$T/sysupgrade.list"
	check sysupgrade-live-still-wired r sh -c 'grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* && uci -q get dhcp.@dnsmasq[0].server | grep -q 127.0.0.1#5453'
	# The new image has lanveil (enabled): its first boot's uci-defaults leave the wiring
	# (lanveil wires again when it starts). Run here as /etc/init.d/boot runs them.
	r cat /etc/config/dhcp >"$T/dhcp.at-backup"
	check sysupgrade-defaults-with-lanveil r sh -c 'cd /etc/uci-defaults && ( . ./99-lanveil-sysupgrade ) && rm -f 99-lanveil-sysupgrade'
	check sysupgrade-defaults-with-lanveil-keeps-wiring sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.at-backup' &&
		'$ROUTER' exec router -- test -f /etc/lanveil/dnsmasq/dhcp.orig && ! '$ROUTER' exec router -- test -e /etc/lanveil/sysupgrade"
	check sysupgrade-keeps-config grep -qx /etc/config/lanveil "$T/sysupgrade.list"
	check sysupgrade-keeps-clock-state grep -qx /etc/lanveil/daemon/state "$T/sysupgrade.list"
	check sysupgrade-keeps-dnsmasq-state grep -qx /etc/lanveil/dnsmasq/dhcp.orig "$T/sysupgrade.list"
	# The archive restores them as they are (sysupgrade's restore: tar -C / -xzf).
	check sysupgrade-archive-restores r sh -c 'rm -rf /tmp/restored && mkdir /tmp/restored &&
		tar -C /tmp/restored -xzf /tmp/sysupgrade.tgz &&
		for f in /etc/config/lanveil /etc/lanveil/daemon/state /etc/lanveil/dnsmasq/dhcp.orig; do
			cmp "$f" "/tmp/restored$f" || exit 1
		done'


	# --- scenario 8: undo. stop restores /etc/config/dhcp byte for byte and
	# removes lanveil's nft table; fw4's stays. Then opkg remove leaves only what
	# README.md lists.
	check stop-service r /etc/init.d/lanveil stop
	check stop-restores-dhcp sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.before-install'"
	check stop-removes-nft-table r sh -c '! nft list table inet lanveil >/dev/null 2>&1'
	check stop-keeps-fw4 r nft list table inet fw4
	check stop-unwires-dnsmasq r sh -c '
		for i in $(seq 1 25); do
			grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* || exit 0
			sleep 0.2
		done; exit 1'
	r cat /usr/lib/opkg/info/lanveil.list >"$T/opkg.list"
	check opkg-remove sh -c "'$ROUTER' exec router -- opkg remove lanveil >'$T/opkg-remove.log' 2>&1"
	r sh -c "$FILES_CMD" >"$T/files.after-remove"
	# What may be left (tests/openwrt/README.md, "opkg remove"): /etc/config/lanveil
	# when it was changed (opkg keeps a modified conffile; this test changed it),
	# and the package's directories, empty (opkg removes a directory only when it
	# is in the package's file list, and its list holds files only). The user and
	# group stay in /etc/passwd and /etc/group (OpenWrt never deletes package users).
	leftovers_documented() {
		local f bad=0
		while IFS= read -r f; do
			case "$f" in
			/etc/config/lanveil) grep -q 'Not deleting modified conffile /etc/config/lanveil' "$T/opkg-remove.log" || { echo "$f left, not as a modified conffile"; bad=1; } ;;
			/etc/udhcpc.user.d | /lib/upgrade | /lib/upgrade/keep.d | /usr/libexec | /usr/share/lanveil)
				r sh -c '[ -d "$1" ] && [ -z "$(find "$1" ! -type d)" ]' _ "$f" || { echo "$f: holds files"; bad=1; } ;;
			*) echo "undocumented leftover: $f"; bad=1 ;;
			esac
		done <"$T/files.left"
		return "$bad"
	}
	comm -13 "$T/files.before-install" "$T/files.after-remove" >"$T/files.left"
	check opkg-remove-leaves-only-documented leftovers_documented
	check opkg-list-has-no-directories sh -c "! grep -qx -e /usr/share/lanveil -e /usr/share/lanveil/ '$T/opkg.list'"
	check opkg-remove-keeps-user r grep -q '^lanveil:' /etc/passwd
	check opkg-remove-no-rc-link r sh -c '! ls /etc/rc.d/*lanveil* 2>/dev/null'
	check opkg-remove-no-etc-lanveil r sh -c '[ ! -e /etc/lanveil ]'
	check opkg-remove-no-nft r sh -c '! nft list table inet lanveil 2>/dev/null && ! nft list table inet lanveil_down 2>/dev/null'
	check opkg-remove-dhcp-as-before sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.before-install'"
	check opkg-remove-no-process r sh -c '! pgrep -f "[/]usr/sbin/lanveil|[l]anveil-guard"'
	# --- scenario 10b: sysupgrade to an image without lanveil. This router, lanveil
	# removed, is that image; the backup from scenario 10 is unpacked into its flash (as
	# preinit does: tar -C / -xzf) and it boots (uci-defaults, then dnsmasq): the LAN
	# must have working DNS (the ISP's resolver again, 1.2.3.4), not a dnsmasq that
	# forwards only to the absent lanveil.
	"$ROUTER" down >/dev/null 2>&1
	tar -C "$RUN/rootfs" -xzf "$T/sysupgrade.tgz"
	if "$ROUTER" up --no-lanveil >"$T/sysupgrade-boot.log" 2>&1; then
		record_ns_add
		check sysupgrade-no-lanveil-boots r sh -c '[ ! -e /usr/sbin/lanveil ] && [ ! -e /etc/uci-defaults/99-lanveil-sysupgrade ]'
		check sysupgrade-no-lanveil-dhcp-is-owners sh -c "'$ROUTER' exec router -- cat /etc/config/dhcp | cmp - '$T/dhcp.before-install'"
		check sysupgrade-no-lanveil-dnsmasq-unwired r sh -c '
			for i in $(seq 1 50); do
				ls /var/etc/dnsmasq.conf.* >/dev/null 2>&1 && ! grep -q "^server=127.0.0.1#5453" /var/etc/dnsmasq.conf.* && exit 0
				sleep 0.2
			done; exit 1'
		# Asked at the router's LAN address (the rebooted LAN client has no lease yet), as
		# scenario 7 does.
		ans=""
		for _ in $(seq 1 30); do
			ans="$(nsenter -t "$(cat "$RUN/router.pid")" -n \
				dig +short +time=2 +tries=1 @192.168.1.1 "probe-upgrade-$RANDOM.example" A 2>/dev/null)"
			[ "$ans" = 1.2.3.4 ] && break
			sleep 0.5
		done
		check sysupgrade-no-lanveil-lan-dns-works [ "$ans" = 1.2.3.4 ]
	else
		fail sysupgrade-no-lanveil-boot "$(tail -n 20 "$T/sysupgrade-boot.log")"
	fi
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
for fd in "${NS_FDS[@]}"; do exec {fd}<&-; done

finish
