#!/bin/bash
# The cross-built routers' DoQ: each board build that carries the `doq` feature (board/ci.sh builds them into
# target/board/PROFILE/lanveil), run under qemu-user with the profile's CPU, forwards to the aioquic DoQ
# server of the interop tests (tests/doq/aioquic_server.py, venv target/doq-venv) over loopback: an A
# answer, NXDOMAIN, a 5 KB answer over LAN TCP, and on the server's side ID 0 and padding on every query.
# quinn-udp's socket code (GSO/GRO, ECN cmsgs) is per architecture, so this is not the host test again.
#
#   tests/doq/qemu-smoke.sh [PROFILE...]   (default: aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4)
#
# Prints PASS/FAIL lines and ends with "N passed, M failed".
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=tests/openwrt/lib.sh
. "$ROOT/tests/openwrt/lib.sh"
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4)
PY="$ROOT/target/doq-venv/bin/python"
T="$WORK/doq-qemu"
rm -rf "$T"
mkdir -p "$T"
PIDS=""
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

if ! "$PY" -c 'import aioquic' 2>/dev/null; then
	fail doq-qemu-aioquic "$PY has no aioquic (tests/all.sh's DoQ step sets it up)"
	echo "$_pass passed, $_fail failed"
	exit 1
fi
(
	cd "$T" || exit 1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
		-subj /CN=doq-qemu-ca -days 2 &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
			-subj /CN=doq.test &&
		printf 'subjectAltName=DNS:doq.test\n' >ext &&
		openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext
) >"$T/openssl.log" 2>&1 || { fail doq-qemu-certs "$(tail -n 3 "$T/openssl.log")"; echo "$_pass passed, $_fail failed"; exit 1; }
"$PY" "$ROOT/tests/doq/aioquic_server.py" "$T/cert.pem" "$T/key.pem" >"$T/server.log" 2>"$T/server.err" &
PIDS="$PIDS $!"
for _ in $(seq 100); do grep -q listening "$T/server.log" && break; sleep 0.1; done
SPORT=$(sed -n 's/.*"listening", "port": \([0-9]*\).*/\1/p' "$T/server.log")
[ -n "$SPORT" ] || { fail doq-qemu-server "the aioquic server did not start: $(tail -n 3 "$T/server.err")"; echo "$_pass passed, $_fail failed"; exit 1; }

for p in "${profiles[@]}"; do
	N="doq-qemu-$p"
	eval "$(cd "$ROOT" && cargo board show "$p")" || { fail "$N-profile" "unknown profile"; continue; }
	if ! grep -q '^features=.*doq' "$ROOT/target/board/$p/build-info" 2>/dev/null; then
		fail "$N-binary" "target/board/$p/lanveil missing or built without doq (cargo board build $p)"
		continue
	fi
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	printf "config lanveil 'main'\n\tlist listen '127.0.0.1:%s'\n\toption log_level 'info'\n\nconfig upstream 'doq'\n\toption url 'quic://127.0.0.1:%s#doq.test'\n\toption ca_file '%s/ca.pem'\n" \
		"$port" "$SPORT" "$T" >"$T/$p.conf"
	before=$(grep -c '"query"' "$T/server.log")
	$QEMU -cpu "$QEMU_CPU" "$BINARY" --config "$T/$p.conf" >"$T/$p.log" 2>&1 &
	lp=$!
	PIDS="$PIDS $lp"
	for _ in $(seq 50); do dig @127.0.0.1 -p "$port" +tries=1 +time=1 ready.example A >/dev/null 2>&1 && break; sleep 0.2; done
	a=$(dig @127.0.0.1 -p "$port" +tries=1 +time=3 +short www.qemu.example A)
	# aioquic_server.py answers 192.0.2.(length of the name, with its final dot, mod 256).
	if [ "$a" = "192.0.2.17" ]; then pass "$N-answer"; else fail "$N-answer" "got '$a': $(tail -n 3 "$T/$p.log")"; fi
	if dig @127.0.0.1 -p "$port" +tries=1 +time=3 nx.qemu.example A | grep -q 'status: NXDOMAIN'; then
		pass "$N-nxdomain"
	else
		fail "$N-nxdomain" "no NXDOMAIN"
	fi
	size=$(dig @127.0.0.1 -p "$port" +tcp +tries=1 +time=3 big-5000.qemu.example TXT | sed -n 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p')
	if [ "${size:-0}" -gt 5000 ]; then pass "$N-large"; else fail "$N-large" "answer of ${size:-no} octets"; fi
	kill "$lp" 2>/dev/null
	wait "$lp" 2>/dev/null
	queries=$(tail -n +1 "$T/server.log" | grep '"query"' | tail -n +"$((before + 1))")
	if [ -n "$queries" ] && ! echo "$queries" | grep -qv '"id": 0, "padding": true'; then
		pass "$N-wire"
	else
		fail "$N-wire" "queries not all ID 0 and padded: $queries"
	fi
done
echo "$_pass passed, $_fail failed"
[ "$_fail" -eq 0 ]
