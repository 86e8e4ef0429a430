# Shared helpers for the OpenWrt shell tests (run by bash or busybox ash).
# Every check prints one line, "PASS name" or "FAIL name: why"; the runner
# counts them. Nothing is skipped silently: a missing tool is a FAIL.
# shellcheck shell=bash disable=SC2034

TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$TESTS_DIR/../.." && pwd)"
PKG="$REPO/openwrt/lanveil"
DOUBLES="$TESTS_DIR/doubles"
WORK="${LANVEIL_TEST_WORK:-$REPO/target/openwrt-test}"
_pass=0
_fail=0

pass() { echo "PASS $1"; _pass=$((_pass + 1)); }
fail() { echo "FAIL $1: $2"; _fail=$((_fail + 1)); }

# check NAME COMMAND... : PASS if the command succeeds.
check() {
	local name="$1" out
	shift
	if out="$("$@" 2>&1)"; then
		pass "$name"
	else
		fail "$name" "$(printf '%s' "$out" | tail -n 15)"
	fi
}

finish() {
	[ -n "${STANDIN_PID:-}" ] && kill "$STANDIN_PID" 2>/dev/null
	echo "# $(basename "$0"): $_pass passed, $_fail failed"
	[ "$_fail" -eq 0 ]
}

# --- init-script sandbox (test_init.sh, test_capport.sh) ---------------------------
# busybox ash with busybox's own tools, the real uci, procd/rc.common doubles, in a
# private network namespace (real nft, throwaway ruleset) and mount namespace (a
# private /tmp/.uci, uci's default save dir; only that directory is overmounted:
# the checkout itself may live under /tmp).

# Re-executes the calling script inside the namespaces (call with "$@" right after
# sourcing this file). uci is built first: the namespace has no network.
enter_namespaces() {
	if [ "${LANVEIL_IN_NS:-}" != 1 ]; then
		"$TESTS_DIR/build-uci.sh" >/dev/null || { echo "FAIL uci-build: tests/openwrt/build-uci.sh failed"; exit 1; }
		exec unshare --mount --net env LANVEIL_IN_NS=1 bash "$0" "$@"
	fi
	mkdir -p /tmp/.uci && mount -t tmpfs tmpfs /tmp/.uci
}

# sandbox NAME: $T=$WORK/NAME with bin/ (busybox applets, uci, jshn, nft, the
# logger double) as the only PATH.
sandbox() {
	local a
	UCI_PREFIX="$("$TESTS_DIR/build-uci.sh")" || { fail uci-build "build-uci.sh failed"; finish; exit 1; }
	T="$WORK/$1"
	rm -rf "$T"
	mkdir -p "$T/bin"
	for a in $(busybox --list); do
		case "$a" in logger | logread) continue ;; esac
		ln -s "$(command -v busybox)" "$T/bin/$a"
	done
	ln -s "$(command -v busybox)" "$T/bin/busybox"
	ln -s "$UCI_PREFIX/bin/uci" "$T/bin/uci"
	ln -s "$(command -v nft)" "$T/bin/nft"
	# procd.sh's procd_lock (the double's too) needs flock, which OpenWrt's busybox has and
	# Debian's lacks: util-linux's.
	command -v flock >/dev/null || { fail flock "flock not installed (Debian: util-linux)"; finish; exit 1; }
	ln -s "$(command -v flock)" "$T/bin/flock"
	ln -s "$DOUBLES/logger" "$T/bin/logger"
	ln -s "$DOUBLES/logread" "$T/bin/logread"
	# jshn.sh calls the jshn binary by name.
	ln -s "$UCI_PREFIX/bin/jshn" "$T/bin/jshn"
	export PATH="$T/bin"
	export JSHN_SH="$UCI_PREFIX/share/libubox/jshn.sh" LANVEIL_DOUBLES="$DOUBLES"
	# The system's python (not a PATH shim: PATH is busybox only now).
	PY="$(command -v python3 || echo /usr/bin/python3)"
	# The real daemon binary (the double runs it for --check-config / --print-signals).
	LANVEIL_REAL_BIN="${LANVEIL_BIN:-$REPO/target/debug/lanveil}"
	export LANVEIL_REAL_BIN
	if [ ! -x "$LANVEIL_REAL_BIN" ]; then
		fail lanveil-binary "$LANVEIL_REAL_BIN missing: cargo build -p lanveil"
		finish
		exit 1
	fi
	# A process named 'lanveil' that stands in for a running daemon (pidfile, /proc/PID/comm).
	mkdir -p "$T/standin"
	/bin/cp /bin/sleep "$T/standin/lanveil"
	"$T/standin/lanveil" 100000 &
	STANDIN_PID=$!
}

# The daemon as the init script sees it: procd's pidfile naming a live process called
# lanveil, and the control socket (the double answers on it).
daemon_up() {
	mkdir -p "$R/var/run/lanveil/daemon"
	echo "${1:-$STANDIN_PID}" >"$R/var/run/lanveil/daemon.pid"
	[ -S "$R/var/run/lanveil/daemon/control.sock" ] ||
		"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$R/var/run/lanveil/daemon/control.sock"
}
# The daemon is gone: its pid no longer exists (procd leaves the file), the socket file stays.
daemon_dead() {
	echo 2147483646 >"$R/var/run/lanveil/daemon.pid"
}
# Never started: neither pidfile nor socket.
daemon_down() {
	rm -f "$R/var/run/lanveil/daemon.pid" "$R/var/run/lanveil/daemon/control.sock"
}

# A scratch OpenWrt root in $R with the package's files and the doubles; $ORIG is
# a copy of its /etc/config/dhcp.
mkroot() {
	local f
	R="$T/root"
	rm -rf "$R"
	mkdir -p "$R/etc/config" "$R/etc/init.d" "$R/etc/udhcpc.user.d" "$R/usr/share/lanveil" "$R/usr/sbin" \
		"$R/lib/functions" "$R/lib/netifd" "$R/tmp" "$R/var/lock" "$R/log"
	cp "$TESTS_DIR/fixtures/etc/config/"* "$R/etc/config/"
	cp "$PKG/files/lanveil.config" "$R/etc/config/lanveil"
	cp "$PKG/files/lanveil.init" "$R/etc/init.d/lanveil"
	cp "$PKG/files/lanveil.early" "$R/etc/init.d/lanveil_early"
	cp "$PKG/files/lanveil.sh" "$R/usr/share/lanveil/lanveil.sh"
	mkdir -p "$R/usr/libexec"
	cp "$PKG/files/lanveil.guard" "$R/usr/libexec/lanveil-guard"
	cp "$PKG/files/lanveil.udhcpc" "$R/etc/udhcpc.user.d/lanveil"
	cp "$DOUBLES/dnsmasq.init" "$R/etc/init.d/dnsmasq"
	cp "$DOUBLES/dnsmasq.init" "$R/etc/init.d/odhcpd"
	cp "$DOUBLES/dnsmasq.init" "$R/etc/init.d/network"
	cp "$DOUBLES/network.sh" "$R/lib/functions/network.sh"
	cp "$DOUBLES/dhcp.script" "$R/lib/netifd/dhcp.script"
	cp "$DOUBLES/lanveil" "$R/usr/sbin/lanveil"
	# rc.common where the init scripts' shebang names it (lanveil's enable runs lanveil_early's
	# through it).
	cp "$DOUBLES/rc.common" "$R/etc/rc.common"
	# An installed package: its postinst marked lanveil_early set up (lanveil_early_setup).
	mkdir -p "$R/etc/lanveil"
	: >"$R/etc/lanveil/early-enabled"
	printf 'root:x:0:0:root:/root:/bin/ash\ndnsmasq:x:453:453:dnsmasq:/var:/bin/false\nlanveil:x:5453:5453:lanveil:/var:/bin/false\n' >"$R/etc/passwd"
	printf 'lan br-lan\nguest br-guest\nwan wan\n' >"$R/tmp/fake-network"
	export IPKG_INSTROOT="$R" UCI_CONFIG_DIR="$R/etc/config" PROCD_LOG="$R/log/procd" LANVEIL_TEST_LOG="$R/log"
	: >"$PROCD_LOG"
	nft delete table inet lanveil 2>/dev/null
	nft delete table inet lanveil_down 2>/dev/null
	for f in /tmp/.uci/* /tmp/.uci/.[!.]*; do
		[ -e "$f" ] && rm -rf "$f"
	done
	ORIG="$T/dhcp.orig"
	cp "$R/etc/config/dhcp" "$ORIG"
	# A running daemon unless a test says otherwise; a short wait when it does not answer.
	daemon_up
	uci -q -c "$R/etc/config" set lanveil.openwrt.start_timeout=1
	uci -q -c "$R/etc/config" commit lanveil
}

rc() { busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" "$@"; }
# wan_up's detached restart (lanveil_wan_restart) has finished: no process of a wan_up is left
# (the job is a fork of it, same command line). Waits up to 20 s.
wan_job_done() {
	local i f busy
	for i in $(seq 1 100); do
		busy=""
		# No pgrep in Debian's busybox: the command lines themselves.
		for f in /proc/[0-9]*/cmdline; do
			case "$(tr '\0' ' ' <"$f" 2>/dev/null)" in
				*"/etc/init.d/lanveil wan_up"*)
					busy=1
					break
					;;
			esac
		done 2>/dev/null
		[ -n "$busy" ] || return 0
		sleep 0.2
	done
	echo "wan_up's restart still running after 20 s"
	return 1
}
uci_() { uci -q -c "$R/etc/config" "$@"; }
# Value of a python expression over the last 'service set' JSON (variable j).
last_set() {
	grep '^service set ' "$PROCD_LOG" | tail -n 1 | sed 's/^service set //' |
		"$PY" -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" 2>&1
}
count() { grep -c "$2" "$1" 2>/dev/null || true; }

# The Makefile's prerm body, runnable against $R: writes $T/prerm (as packaged) and
# $T/prerm.local (its /etc/init.d and /usr/share paths pointed into the scratch root).
make_prerm() {
	awk '/^define Package\/lanveil\/prerm/{f=1;next} /^endef/{f=0} f' "$PKG/Makefile" | sed 's/\$\$/$/g' >"$T/prerm"
	sed -e '/IPKG_INSTROOT/d' -e "s|/etc/init.d/lanveil stop|busybox ash $DOUBLES/rc.common $R/etc/init.d/lanveil stop|" \
		-e "s|\. /usr/share/lanveil/lanveil.sh|IPKG_INSTROOT=$R; . $R/usr/share/lanveil/lanveil.sh|" "$T/prerm" >"$T/prerm.local"
}
# The Makefile's postinst body, its paths under $R ($T/postinst.local, as on a running router:
# without its image-build line; $T/postinst as packaged, for an image build with IPKG_INSTROOT=$R).
# shellcheck disable=SC2016  # the postinst's ${IPKG_INSTROOT}, matched as text
make_postinst() {
	awk '/^define Package\/lanveil\/postinst/{f=1;next} /^endef/{f=0} f' "$PKG/Makefile" | sed 's/\$\$/$/g' >"$T/postinst"
	sed -e '/^\[ -n "\${IPKG_INSTROOT}" \]/d' \
		-e "s|/etc/init.d/\(lanveil[a-z_]*\) \(enabled*\)|IPKG_INSTROOT=$R busybox ash $DOUBLES/rc.common $R/etc/init.d/\1 \2|" \
		-e "s| /etc/lanveil| $R/etc/lanveil|g" -e "s|>/etc/lanveil|>$R/etc/lanveil|g" \
		"$T/postinst" >"$T/postinst.local"
	grep -q '^\[ -n "\${IPKG_INSTROOT}" \]' "$T/postinst" && ! grep -q 'IPKG_INSTROOT}" \]' "$T/postinst.local" &&
		! grep -v '^#' "$T/postinst.local" | grep -n ' /etc/'
}
