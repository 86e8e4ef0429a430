#!/bin/bash
# Runs a cross-built lanveil under qemu-user with the profile's CPU against a
# local DNS-over-TLS upstream (Debian's unbound with a throwaway CA made by
# openssl, answering local-data), and queries it with dig.
#
#   board/qemu-smoke.sh PROFILE          full DoT test
#   board/qemu-smoke.sh PROFILE --start  only: --version, --check-config, starts and answers (any rcode)
#
# Prints PASS/FAIL lines like the other test scripts.
# shellcheck source-path=SCRIPTDIR
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE="${1:?usage: qemu-smoke.sh PROFILE [--start]}"
MODE="${2:-full}"
# shellcheck source=../tests/openwrt/lib.sh
. "$ROOT/tests/openwrt/lib.sh"
eval "$(cd "$ROOT" && cargo board show "$PROFILE")" || { fail "qemu-$PROFILE-profile" "unknown profile"; finish; exit 1; }
T="$WORK/qemu/$PROFILE"
rm -rf "$T"
mkdir -p "$T"
N="qemu-$PROFILE"
PIDS=""
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

# The host's own architecture runs natively, so its RSS is the daemon's alone.
EMU="$QEMU -cpu $QEMU_CPU"
case "$TRIPLE" in "$(uname -m)"-*) EMU="" QEMU=env ;; esac
for tool in "$QEMU" unbound openssl dig; do
	command -v "$tool" >/dev/null || { fail "$N-tool-$tool" "$tool not installed"; finish; exit 1; }
done
[ -f "$BINARY" ] || { fail "$N-binary" "$BINARY missing; run cargo board build $PROFILE"; finish; exit 1; }
# shellcheck disable=SC2086  # EMU is a command prefix (or empty)
run() { $EMU "$BINARY" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

check "$N-version" sh -c "$EMU '$BINARY' --version | grep -qx 'lanveil 0.1.0'"

# --- the upstream: unbound serving DoT with a throwaway CA --------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=lanveil test CA" \
	-keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dot.test" \
	-keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:dot.test\nextendedKeyUsage=serverAuth\n' >"$T/ext"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
	-extfile "$T/ext" -out "$T/server.pem" 2>/dev/null
PIN="sha256/$(openssl x509 -in "$T/server.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
UP_PORT="$(free_port)"
cat >"$T/unbound.conf" <<EOF
server:
	interface: 127.0.0.1@$UP_PORT
	tls-port: $UP_PORT
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
	access-control: 127.0.0.0/8 allow
	local-zone: "." static
	local-zone: "probe.test." static
	local-data: "probe.test. 300 IN A 192.0.2.77"
	local-data: "probe.test. 300 IN AAAA 2001:db8::77"
remote-control:
	control-enable: no
EOF
check "$N-unbound-config" unbound-checkconf "$T/unbound.conf"
unbound -c "$T/unbound.conf" >/dev/null 2>&1 </dev/null &
PIDS="$PIDS $!"
for _ in $(seq 50); do
	openssl s_client -connect "127.0.0.1:$UP_PORT" -servername dot.test -CAfile "$T/ca.pem" </dev/null >/dev/null 2>&1 && break
	sleep 0.2
done
check "$N-upstream-speaks-tls" sh -c "openssl s_client -connect 127.0.0.1:$UP_PORT -servername dot.test -verify_return_error -CAfile '$T/ca.pem' </dev/null 2>&1 | grep -q 'Verify return code: 0'"

# --- lanveil's config: the shipped file, adapted with uci-style edits ------------------
PORT="$(free_port)"
config() { # PIN-LINE
	sed -e "s|list listen '127.0.0.1:5453'|list listen '127.0.0.1:$PORT'|" \
		-e "s|option log_level 'info'|option log_level 'debug'\n\toption ca_file '$T/ca.pem'|" \
		-e "/option user 'lanveil'/d" \
		-e "s|option state_file '/etc/lanveil/daemon/state'|option state_file '$T/state'|" \
		-e "/^config upstream/,/^\$/d" "$ROOT/openwrt/lanveil/files/lanveil.config"
	printf "config upstream 'local'\n\toption url 'tls://127.0.0.1:%s#dot.test'\n%s\n" "$UP_PORT" "$1"
}
config "" >"$T/lanveil.conf"
check "$N-check-config-shipped-format" run --check-config "$T/lanveil.conf"
printf "config lanveil 'main'\n\toption bogus 'x'\n" >"$T/bad.conf"
check "$N-check-config-rejects-bad" sh -c "! $EMU '$BINARY' --check-config '$T/bad.conf' 2>'$T/bad.err' && grep -q 'bad.conf:2' '$T/bad.err'"

start_lanveil() { # CONFIG LOG
	# Not through run(): $! must be qemu itself, so signals reach the daemon.
	# shellcheck disable=SC2086
	$EMU "$BINARY" --config "$1" >"$2" 2>&1 </dev/null &
	LV_PID=$!
	PIDS="$PIDS $LV_PID"
	for _ in $(seq 100); do
		dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" probe.test A >/dev/null 2>&1 && return 0
		kill -0 "$LV_PID" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
q() { dig +time=3 +tries=1 @127.0.0.1 -p "$PORT" "$@" 2>&1; }

# Started outside `check` (whose command substitution would wait for the daemon).
started=0
start_lanveil "$T/lanveil.conf" "$T/lanveil.log" && started=1
check "$N-starts" [ "$started" = 1 ]
if [ "$MODE" = --start ]; then
	check "$N-answers" sh -c "dig +time=3 +tries=1 @127.0.0.1 -p $PORT probe.test A | grep -q 'status:'"
else
	check "$N-udp-a" [ "$(q +short probe.test A)" = 192.0.2.77 ]
	check "$N-udp-aaaa" [ "$(q +short probe.test AAAA)" = 2001:db8::77 ]
	check "$N-tcp-a" [ "$(q +tcp +short probe.test A)" = 192.0.2.77 ]
	check "$N-nxdomain" sh -c "dig +time=3 +tries=1 @127.0.0.1 -p $PORT nothing.example A | grep -q 'status: NXDOMAIN'"
	check "$N-upstream-saw-queries-over-tls" grep -q 'probe.test. A IN' "$T/unbound.log"
	# 20 queries in a burst, all answered.
	ok=0
	for i in $(seq 20); do
		[ "$(q +short probe.test A)" = 192.0.2.77 ] && ok=$((ok + 1))
		[ "$i" = 10 ] && kill -HUP "$LV_PID"
	done
	check "$N-20-queries-across-sighup" [ "$ok" = 20 ]
	check "$N-alive-after-sighup" kill -0 "$LV_PID"
	rss="$(awk '/VmHWM/ { print $2 }' "/proc/$LV_PID/status" 2>/dev/null)"
	echo "# $N peak RSS: ${rss:-?} kB${EMU:+ (qemu + daemon, not comparable to the budget)}"
	# Only a native run measures the daemon alone.
	[ -z "$EMU" ] && check "$N-rss-within-budget" [ "${rss:-999999}" -le "$MAX_RSS_KIB" ]
fi
kill -TERM "$LV_PID" 2>/dev/null
rc=1
for _ in $(seq 50); do
	if ! kill -0 "$LV_PID" 2>/dev/null; then
		wait "$LV_PID"
		rc=$?
		break
	fi
	sleep 0.2
done
check "$N-sigterm-exits-0" [ "$rc" = 0 ]

if [ "$MODE" != --start ]; then
	# A wrong pin: the upstream is refused, the client gets SERVFAIL (never a plaintext answer).
	config "	list pin 'sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='" >"$T/badpin.conf"
	start_lanveil "$T/badpin.conf" "$T/badpin.log" || true
	check "$N-wrong-pin-servfail" sh -c "dig +time=5 +tries=1 @127.0.0.1 -p $PORT probe.test A | grep -q 'status: SERVFAIL'"
	kill -TERM "$LV_PID" 2>/dev/null
	wait "$LV_PID" 2>/dev/null
	config "	list pin '$PIN'" >"$T/goodpin.conf"
	start_lanveil "$T/goodpin.conf" "$T/goodpin.log" || true
	check "$N-right-pin-answers" [ "$(q +short probe.test A)" = 192.0.2.77 ]
	kill -TERM "$LV_PID" 2>/dev/null
	wait "$LV_PID" 2>/dev/null
fi

finish
