#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The emulated OpenWrt router: OpenWrt's own userland (tests/openwrt/rig/build.sh)
# run in Linux namespaces, with a LAN client and an "ISP". See
# tests/openwrt/README.md.
#
#   tests/openwrt/router.sh up [--fresh] [--no-lanveil]
#                                             build if needed, boot the router, install
#                                             lanveil from the ipk (if built and not yet
#                                             installed)
#   tests/openwrt/router.sh exec router|lan|isp -- CMD...
#   tests/openwrt/router.sh down              stop everything, remove every namespace,
#                                             device and mount it made
#   tests/openwrt/router.sh up --image        new flash with lanveil pre-installed offline
#                                             (as an image build does), then first boot
#   tests/openwrt/router.sh install           opkg install lanveil's ipk into the running router
#   tests/openwrt/router.sh status            what is running (exit 1 if not up)
#
# Topology (every address exists only inside the namespaces made here):
#   lan  netns: eth0 <-veth-> lan1 (router, port of br-lan 192.168.1.1/24, fd00:1::1/64)
#   router: pid+mount+net+uts+ipc namespaces, procd as PID 1 in a chroot
#   isp  netns: eth0 192.0.2.1/24, 2001:db8:1::1/64 <-veth-> wan (router 192.0.2.2,
#          2001:db8:1::2); lo: 198.51.100.53 + 2001:db8:53::53 (the logging "ISP
#          resolver", UDP/TCP 53), 203.0.113.53 (TEST-NET-3, for the DoT/DoH upstreams)
#
# State lives in target/openwrt-rig/run/: rootfs/ (the router's flash: kept across
# down/up, recreated by --fresh), *.pid, console.log (procd's console),
# isp-resolver.log (every query the ISP resolver received).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RIG="$HERE/rig"
RUN="${LANVEIL_ROUTER_RUN:-$ROOT/target/openwrt-rig/run}"
ROOTFS="$RUN/rootfs"
BOOT_TIMEOUT="${LANVEIL_ROUTER_TIMEOUT:-60}"

log() { printf 'router: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ns_pid NAME: the namespace's PID 1 (as seen from here), if it is alive.
ns_pid() {
	local f="$RUN/$1.pid" pid
	[ -f "$f" ] || return 1
	read -r pid <"$f" || return 1
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	# Still the process we started (pid reuse): its ns was recorded at start.
	[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$(cat "$RUN/$1.netns" 2>/dev/null)" ] || return 1
	printf '%s\n' "$pid"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s, bounded.
wait_for() {
	local secs="$1" what="$2" i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	log "timeout after ${secs}s: $what"
	return 1
}

in_router() {
	local pid
	pid="$(ns_pid router)" || die "router is not running"
	nsenter -t "$pid" -m -u -i -n -p -r -w -- /usr/bin/env -i HOME=/root \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM="${TERM:-dumb}" "$@"
}
in_ns() {
	local name="$1" pid
	shift
	pid="$(ns_pid "$name")" || die "$name namespace is not running"
	nsenter -t "$pid" -n -u -p -- "$@"
}

# start_holder NAME: a namespace set (net, uts, pid) whose PID 1 is a sleep;
# killing it ends every process started inside.
start_holder() {
	local name="$1" upid child i
	unshare --net --uts --pid --fork --kill-child -- sleep infinity </dev/null >/dev/null 2>&1 &
	upid=$!
	for ((i = 0; i < 50; i++)); do
		child="$(tr -d ' ' <"/proc/$upid/task/$upid/children" 2>/dev/null)" || true
		[ -n "$child" ] && break
		sleep 0.1
	done
	[ -n "$child" ] || die "$name: namespace did not start"
	printf '%s\n' "$child" >"$RUN/$name.pid"
	readlink "/proc/$child/ns/net" >"$RUN/$name.netns"
	nsenter -t "$child" -n -u -- sh -c "hostname $name && ip link set lo up"
}

# --- rootfs (the router's flash) ---------------------------------------------

link() { # link TARGET PATH (inside the rootfs)
	mkdir -p "$ROOTFS/$(dirname "$2")"
	ln -sfn "$1" "$ROOTFS/$2"
}

make_rootfs() {
	local built="$1" base="$2" f n start stop applet
	rm -rf "$ROOTFS"
	mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,lib/functions,lib/config,etc/config,etc/init.d,etc/rc.d,etc/hotplug.d/iface,etc/uci-defaults,etc/lanveil,root,proc,sys,dev,tmp,overlay,lib64}
	cp -a "$built/." "$ROOTFS/"
	rm -rf "$ROOTFS/usr/include" "$ROOTFS/usr/lib/pkgconfig" "$ROOTFS"/usr/lib/*.a
	ln -sfn tmp "$ROOTFS/var"
	mkdir -p "$ROOTFS/usr/lib/x86_64-linux-gnu"
	ln -sfn /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$ROOTFS/lib64/ld-linux-x86-64.so.2"
	link ../usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu

	# busybox (built from Debian's source by build.sh, with awk math and flock) for
	# /bin/sh and the small tools, as on OpenWrt.
	cp "$(dirname "$built")/busybox/bin/busybox" "$ROOTFS/bin/busybox"
	while read -r applet; do
		[ -e "$ROOTFS/$applet" ] || [ -L "$ROOTFS/$applet" ] || link /bin/busybox "$applet"
	done < <("$ROOTFS/bin/busybox" --list-full)
	# netifd's ifup/ifdown are not in the stored sources: no busybox (Debian
	# ifupdown) stand-ins either.
	rm -f "$ROOTFS/sbin/ifup" "$ROOTFS/sbin/ifdown"
	cp /usr/sbin/dnsmasq /usr/sbin/nft "$ROOTFS/usr/sbin/"

	# The built daemons where OpenWrt packages install them.
	for n in procd ubusd netifd validate_data logd logread rpcd; do link "/usr/sbin/$n" "sbin/$n"; done
	link /usr/bin/uci sbin/uci
	link /usr/bin/ubus bin/ubus
	link /usr/bin/jsonpath usr/bin/jsonfilter
	link /usr/bin/opkg-cl bin/opkg
	rm -f "$ROOTFS/usr/sbin/init" "$ROOTFS/usr/sbin/udevtrigger" "$ROOTFS/usr/sbin/kmodloader"
	# procd (PID 1) runs udevtrigger for coldplug. /sys is this namespace's, but
	# uevents it triggers would reach the host's udev: a no-op instead.
	printf '#!/bin/sh\nexit 0\n' >"$ROOTFS/sbin/udevtrigger"
	chmod 755 "$ROOTFS/sbin/udevtrigger"

	# OpenWrt's shell runtime (tests/openwrt/rig/base.tsv says which versions).
	cp "$base/immortalwrt/package/base-files/files/etc/rc.common" "$ROOTFS/etc/rc.common"
	cp "$base/package/base-files/files/lib/functions.sh" "$ROOTFS/lib/functions.sh"
	cp "$base/immortalwrt/package/base-files/files/lib/functions/network.sh" "$ROOTFS/lib/functions/network.sh"
	cp "$base/package/base-files/files/lib/functions/service.sh" "$ROOTFS/lib/functions/service.sh"
	cp "$base/package/system/procd/files/procd.sh" "$ROOTFS/lib/functions/procd.sh"
	cp "$base/package/system/uci/files/lib/config/uci.sh" "$ROOTFS/lib/config/uci.sh"
	cp "$base/package/base-files/files/bin/ipcalc.sh" "$ROOTFS/bin/ipcalc.sh"
	cp "$base/immortalwrt/package/network/services/dnsmasq/files/dnsmasq.init" "$ROOTFS/etc/init.d/dnsmasq"
	cp "$base/package/network/services/odhcpd/files/odhcpd.init" "$ROOTFS/etc/init.d/odhcpd"
	# The stored network init is an old copy with START=15; OpenWrt's current one
	# starts at 20, after dnsmasq (19) has registered its interface triggers.
	sed 's/^START=15$/START=20/' "$base/package/network/config/netifd/files/etc/init.d/network" \
		>"$ROOTFS/etc/init.d/network"
	cp "$base/package/system/rpcd/files/rpcd.init" "$ROOTFS/etc/init.d/rpcd"
	mkdir -p "$ROOTFS/usr/share/ucode/netifd" "$ROOTFS/lib/netifd"
	cp "$base/package/network/config/netifd/files/lib/netifd/main.uc" \
		"$base/package/network/config/netifd/files/lib/netifd/utils.uc" "$ROOTFS/lib/netifd/"
	cp "$base/package/system/rpcd/files/rpcd.config" "$ROOTFS/etc/config/rpcd"
	cp "$base/package/network/services/dnsmasq/files/dhcp.conf" "$ROOTFS/etc/config/dhcp"

	# Defaults that OpenWrt's config_generate and the odhcpd package add to dhcp;
	# ubus off because Debian's dnsmasq is built without it.
	LD_LIBRARY_PATH="$built/usr/lib" "$built/usr/bin/uci" -c "$ROOTFS/etc/config" batch <<-'EOF' >/dev/null
		set dhcp.@dnsmasq[0].ubus='0'
		set dhcp.lan.dhcpv6='server'
		set dhcp.lan.ra='server'
		add_list dhcp.lan.ra_flags='managed-config'
		add_list dhcp.lan.ra_flags='other-config'
		set dhcp.odhcpd=odhcpd
		set dhcp.odhcpd.maindhcp='0'
		set dhcp.odhcpd.leasefile='/tmp/odhcpd.leases'
		set dhcp.odhcpd.loglevel='4'
		commit dhcp
	EOF

	# opkg: offline installs from a file. The packages a firmware image would
	# have installed and the ipk depends on are recorded as installed: libc (the
	# rig's binaries use the host's), the kernel and the nft modules (the host
	# kernel provides nft nat and fib), ca-bundle (below). Each gets an empty
	# file list, as opkg expects of installed packages.
	mkdir -p "$ROOTFS/usr/lib/opkg/info"
	cat >"$ROOTFS/etc/opkg.conf" <<-'EOF'
		dest root /
		dest ram /tmp
		lists_dir ext /var/opkg-lists
		option overlay_root /overlay
		option check_signature 0
		arch all 1
		arch noarch 1
		arch x86_64 10
	EOF
	# ca-bundle: in OpenWrt's default package set; here the host's bundle.
	mkdir -p "$ROOTFS/etc/ssl/certs"
	cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
	for n in libc kernel kmod-nft-nat kmod-nft-fib ca-bundle; do
		printf 'Package: %s\nVersion: rig\nStatus: install ok installed\nArchitecture: x86_64\nInstalled-Time: 0\n\n' "$n"
		: >"$ROOTFS/usr/lib/opkg/info/$n.list"
	done >"$ROOTFS/usr/lib/opkg/status"

	# The rig's own files: what OpenWrt's base-files/procd/ubox packages install
	# and the rig has no stored copy of (each says so in its header).
	cp -a "$RIG/rootfs/." "$ROOTFS/"
	chmod 755 "$ROOTFS"/etc/init.d/* "$ROOTFS/sbin/hotplug-call" "$ROOTFS/sbin/devstatus" "$ROOTFS/sbin/reload_config" "$ROOTFS"/bin/*.sh "$ROOTFS/bin/lock"

	# Enable what a default image enables: /etc/rc.d/S<START><name> and
	# K<STOP><name> links, as rc.common's enable makes them (its 'enabled' needs
	# both: dnsmasq's init asks it of odhcpd to leave DHCPv6 and RA to odhcpd).
	for f in "$ROOTFS"/etc/init.d/*; do
		n="$(basename "$f")"
		start="$(sed -n 's/^START=//p' "$f" | head -n1)"
		stop="$(sed -n 's/^STOP=//p' "$f" | head -n1)"
		[ -n "$start" ] && ln -sfn "../init.d/$n" "$ROOTFS/etc/rc.d/S$start$n"
		[ -n "$stop" ] && ln -sfn "../init.d/$n" "$ROOTFS/etc/rc.d/K$stop$n"
	done
	: >"$RUN/console.log"
}

# --- up / down ------------------------------------------------------------------

# The ipk `cargo board ipk x86_64` builds (LANVEIL_IPK overrides).
find_ipk() {
	local f
	if [ -n "${LANVEIL_IPK:-}" ]; then
		printf '%s\n' "$LANVEIL_IPK"
		return
	fi
	for f in "$ROOT"/target/board/x86_64/lanveil_*_x86_64.ipk; do
		[ -f "$f" ] && printf '%s\n' "$f"
	done | tail -n 1
}

# opkg install of lanveil's ipk, offline from the file (its postinst enables and
# starts the service); nothing to do if the flash already has it.
install_lanveil() {
	local ipk
	if in_router sh -c 'opkg status lanveil | grep -q "^Status: install"'; then
		log "lanveil already installed"
		return 0
	fi
	ipk="$(find_ipk)"
	if [ -z "$ipk" ] || [ ! -f "$ipk" ]; then
		log "no lanveil ipk (build it: cargo board ipk x86_64, or set LANVEIL_IPK); router runs without lanveil"
		return 0
	fi
	in_router sh -c 'cat >/tmp/lanveil.ipk' <"$ipk"
	in_router opkg install /tmp/lanveil.ipk >>"$RUN/opkg.log" 2>&1 ||
		{ tail -n 20 "$RUN/opkg.log" >&2; return 1; }
	in_router rm -f /tmp/lanveil.ipk
	wait_for "$BOOT_TIMEOUT" "lanveil running under procd" \
		in_router sh -c 'ubus call service list "{\"name\":\"lanveil\"}" | grep -q "\"running\": true"'
	log "installed $(basename "$ipk")"
}

# The image case: opkg --offline-root into the flash before its first boot, as
# OpenWrt's image builder installs packages (postinst with IPKG_INSTROOT set:
# user and rc.d links now, uci-defaults and start at first boot).
image_install() {
	local ipk
	ipk="$(find_ipk)"
	if [ -z "$ipk" ] || [ ! -f "$ipk" ]; then
		die "--image: no lanveil ipk (cargo board ipk x86_64, or LANVEIL_IPK)"
	fi
	cp "$ipk" "$ROOTFS/lanveil.ipk"
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private -- bash -ec '
		mount --bind /usr/lib/x86_64-linux-gnu "$1/usr/lib/x86_64-linux-gnu"
		mount -t tmpfs tmpfs "$1/tmp"
		mkdir -p "$1/tmp/lock"
		chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			opkg --offline-root / install /lanveil.ipk
		# opkg runs no maintainer scripts in offline-root mode; the image build
		# (include/rootfs.mk) runs each postinst with IPKG_INSTROOT set.
		chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin IPKG_INSTROOT=/ \
			/bin/sh /usr/lib/opkg/info/lanveil.postinst
	' _ "$ROOTFS" >>"$RUN/opkg.log" 2>&1 || { tail -n 20 "$RUN/opkg.log" >&2; die "offline install failed"; }
	rm -f "$ROOTFS/lanveil.ipk"
	log "pre-installed $(basename "$ipk") in the flash (image case)"
}

# make_br_lan PID: the LAN bridge, lan1 its port (idempotent: what exists is kept).
make_br_lan() {
	# shellcheck disable=SC2016  # expanded by the inner sh
	nsenter -t "$1" -n -- sh -ec '
		[ -d /sys/class/net/br-lan ] || ip link add br-lan type bridge
		[ "$(basename "$(readlink /sys/class/net/lan1/master 2>/dev/null)")" = br-lan ] ||
			ip link set lan1 master br-lan
		ip link set lan1 up
		ip link set br-lan up
	'
}

# br_lan_up PID: waits for br-lan's operstate. Should the bridge be gone or lose its port
# meanwhile (a netifd that restarts deletes the bridges it finds), it is made again, once a
# second at most, and said; at the time-out, the links' state goes to stderr.
br_lan_up() {
	local i
	for ((i = 0; i < BOOT_TIMEOUT * 5; i++)); do
		in_router grep -qx up /sys/class/net/br-lan/operstate 2>/dev/null && return 0
		# shellcheck disable=SC2016  # expanded by the inner sh
		if ((i % 5 == 4)) && ! in_router sh -c '[ "$(basename "$(readlink /sys/class/net/lan1/master)")" = br-lan ]' 2>/dev/null; then
			log "br-lan gone or without lan1: made again"
			make_br_lan "$1" || true
		fi
		sleep 0.2
	done
	{
		tail -n 10 "$RUN/console.log"
		nsenter -t "$1" -n -- ip -br link show
		nsenter -t "$(ns_pid lan)" -n -- ip -br link show eth0
	} >&2 2>&1 || true
	log "timeout after ${BOOT_TIMEOUT}s: br-lan operationally up"
	return 1
}

up() {
	local fresh=0 lanveil=1 image=0 t0 built base rpid upid lpid ipid i a
	for a in "$@"; do
		case "$a" in
		--fresh) fresh=1 ;;
		--no-lanveil) lanveil=0 ;;
		--image) image=1 fresh=1 ;;
		*) die "up [--fresh] [--no-lanveil] [--image]" ;;
		esac
	done
	t0=$(date +%s.%N)
	[ "$(id -u)" = 0 ] || die "needs root (namespaces)"
	if [ "$fresh" = 0 ] && ns_pid router >/dev/null && ns_pid lan >/dev/null && ns_pid isp >/dev/null; then
		log "already up"
		return 0
	fi
	# A partial or stale rig (failed up, killed shell): clear it first.
	down >/dev/null 2>&1 || true
	built="$("$RIG/build.sh")"
	base="$(dirname "$built")/base"
	mkdir -p "$RUN"
	if [ "$fresh" = 1 ] || [ ! -f "$ROOTFS/.rig-built" ] || [ "$(cat "$ROOTFS/.rig-built")" != "$built" ]; then
		log "making rootfs (fresh flash)"
		make_rootfs "$built" "$base"
		printf '%s\n' "$built" >"$ROOTFS/.rig-built"
		[ "$image" = 1 ] && image_install
	fi
	: >"$RUN/console.log"
	rm -f "$RUN/links-ready"
	# If anything below fails, undo what was made.
	[ -n "${LANVEIL_ROUTER_KEEP:-}" ] || trap 'log "up failed; cleaning up"; down >/dev/null 2>&1 || true' ERR

	start_holder isp
	start_holder lan
	ipid="$(ns_pid isp)"
	lpid="$(ns_pid lan)"

	unshare --pid --fork --mount --net --uts --ipc --propagation private --kill-child -- \
		bash "$RIG/router-init.sh" "$RUN" >>"$RUN/console.log" 2>&1 &
	upid=$!
	for ((i = 0; i < 50; i++)); do
		rpid="$(tr -d ' ' <"/proc/$upid/task/$upid/children" 2>/dev/null)" || true
		[ -n "$rpid" ] && break
		sleep 0.1
	done
	[ -n "${rpid:-}" ] || die "router namespace did not start"
	printf '%s\n' "$rpid" >"$RUN/router.pid"
	readlink "/proc/$rpid/ns/net" >"$RUN/router.netns"

	# Links: created inside the namespaces, never in the host's.
	nsenter -t "$rpid" -n -- ip link add lan1 type veth peer name eth0 netns "$lpid"
	nsenter -t "$rpid" -n -- ip link add wan type veth peer name eth0 netns "$ipid"
	nsenter -t "$lpid" -n -- ip link set eth0 up
	nsenter -t "$ipid" -n -- sh -ec '
		ip link set eth0 up
		ip addr add 192.0.2.1/24 dev eth0
		ip -6 addr add 2001:db8:1::1/64 dev eth0 nodad
		ip addr add 198.51.100.53/32 dev lo
		ip -6 addr add 2001:db8:53::53/128 dev lo
		ip addr add 203.0.113.53/32 dev lo
		ip route add 192.168.1.0/24 via 192.0.2.2
	'
	# The "ISP resolver": answers every name with 1.2.3.4 (dnsmasq's rebind protection would drop a documentation address) and logs each query.
	: >"$RUN/isp-resolver.log"
	nsenter -t "$ipid" -n -p -- dnsmasq --keep-in-foreground --conf-file=/dev/null \
		--pid-file= --user=root --bind-interfaces --listen-address=198.51.100.53 \
		--listen-address=2001:db8:53::53 --except-interface=eth0 --no-resolv --no-hosts \
		--address=/#/1.2.3.4 --log-queries=extra --log-facility="$RUN/isp-resolver.log" \
		>/dev/null 2>&1 &
	touch "$RUN/links-ready"

	wait_for "$BOOT_TIMEOUT" "ubus (procd, ubusd)" in_router ubus -t 1 list service ||
		{ tail -n 30 "$RUN/console.log" >&2; false; }
	# br-lan: made here once netifd runs, which then configures it like any
	# device that appears (see rig/rootfs/etc/config/network for why netifd
	# does not create it itself; a bridge present before netifd starts is
	# deleted by netifd's start-up clean-up).
	wait_for "$BOOT_TIMEOUT" "netifd (network.interface.lan)" in_router ubus -t 1 list network.interface.lan ||
		{ tail -n 30 "$RUN/console.log" >&2; false; }
	make_br_lan "$rpid"
	wait_for "$BOOT_TIMEOUT" "netifd: lan up with 192.168.1.1" \
		in_router sh -c 'ubus call network.interface.lan status | grep -q "\"192.168.1.1\""' ||
		{ tail -n 30 "$RUN/console.log" >&2; false; }
	# odhcpd takes an interface only if the kernel calls it IFF_RUNNING (operstate
	# up) when netifd's notification makes it reload (odhcpd src/config.c:
	# odhcpd_reload closes the others), and ignores later link changes of an
	# interface it closed (src/netlink.c: handle_rtm_link). netifd notifies on
	# carrier (IFF_LOWER_UP), once per ifup (interface.c: link_up_event); the
	# kernel sets a bridge's operstate later, from linkwatch (up to 1 s, more
	# under load). A bridge made by hand can therefore reach odhcpd too early and
	# be dropped for good. Wait for br-lan's operstate, then have odhcpd re-read
	# (SIGHUP, as procd sends on a dhcp change), so it sees what netifd saw. An
	# odhcpd not yet on ubus dumps netifd's state itself when it gets there.
	br_lan_up "$rpid"
	if in_router ubus -t 1 list dhcp >/dev/null 2>&1; then
		in_router /etc/init.d/odhcpd reload
	fi
	wait_for "$BOOT_TIMEOUT" "dnsmasq running" \
		in_router sh -c 'ubus call service list "{\"name\":\"dnsmasq\"}" | grep -q "\"running\": true"'
	# dnsmasq's init writes the LAN's dhcp-range once lan is up (procd's interface
	# trigger reloads it then).
	wait_for "$BOOT_TIMEOUT" "dnsmasq serving DHCP on lan" \
		in_router sh -c 'grep -q "^dhcp-range=set:lan,192.168.1" /var/etc/dnsmasq.conf.*'
	wait_for "$BOOT_TIMEOUT" "fw4 table" in_router nft list table inet fw4
	wait_for "$BOOT_TIMEOUT" "ISP resolver" in_ns isp sh -c 'ss -lun | grep -q 198.51.100.53:53'
	[ "$lanveil" = 1 ] && install_lanveil
	trap - ERR
	log "up in $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s"
}

# stop_ns NAME SIGNAL GRACE: signal the namespace's PID 1 and wait for it to go.
stop_ns() {
	local name="$1" sig="$2" grace="$3" pid i
	pid="$(ns_pid "$name")" || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		[ -d "/proc/$pid" ] || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		[ -d "/proc/$pid" ] || return 0
		sleep 0.1
	done
	log "warning: $name (pid $pid) did not exit"
}

down() {
	local name pid ns p left=0
	# procd as PID 1: TERM is a reboot request. It runs the K* scripts (services
	# stop: lanveil restores dnsmasq and drops its table), then reboot() ends the
	# pid namespace. KILL after 15 s.
	stop_ns router TERM 15
	stop_ns lan KILL 1
	stop_ns isp KILL 1
	# Every process still in one of the recorded namespaces (it should be none:
	# they die with their pid namespace's PID 1).
	for name in router lan isp; do
		[ -f "$RUN/$name.netns" ] || continue
		ns="$(cat "$RUN/$name.netns")"
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] || continue
			kill -KILL "${p#/proc/}" 2>/dev/null || true
			left=1
		done
	done
	[ "$left" = 0 ] || sleep 0.5
	rm -f "$RUN"/*.pid "$RUN"/*.netns "$RUN/links-ready"
	return 0
}

status() {
	local name ok=0
	for name in router lan isp; do
		if pid="$(ns_pid "$name")"; then
			echo "$name: pid $pid"
		else
			echo "$name: down"
			ok=1
		fi
	done
	return "$ok"
}

cmd="${1:-}"
shift || true
case "$cmd" in
up) up "$@" ;;
install) install_lanveil ;;
down) down ;;
status) status ;;
exec)
	who="${1:-}"
	shift || true
	[ "${1:-}" = -- ] && shift
	[ $# -gt 0 ] || die "exec $who -- CMD..."
	case "$who" in
	router) in_router "$@" ;;
	lan | isp) in_ns "$who" "$@" ;;
	*) die "exec router|lan|isp -- CMD..." ;;
	esac
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p' | sed -n '/^The emulated/,/^State/p'
	exit 2
	;;
esac
