#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# luci-app-lanveil on the emulated router (tests/openwrt/router.sh), with OpenWrt's
# real procd, ubus, rpcd, uhttpd, ucode and luci-base, driven by a real headless
# browser (Debian's chromium + chromium-driver, Selenium from PyPI in a venv under
# target/). One line per check, "PASS name" or "FAIL name: why".
#
#   bash tests/openwrt/test_luci.sh        (root; needs target/board/x86_64/lanveil_*.ipk
#                                           from `cargo board ipk x86_64`; leaves the router down,
#                                           LANVEIL_LUCI_KEEP=1 leaves it up)
#
# Screenshots: target/luci-test/*.png.
# shellcheck disable=SC2016  # single-quoted snippets are run inside the router
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
ROUTER="$HERE/router.sh"
T="$REPO/target/luci-test"
VENV="$REPO/target/luci-venv"
SELENIUM_VERSION=4.51.0
PASSWORD=lanveil-test
rm -rf "$T"
mkdir -p "$T"
t0=$(date +%s)

r() { "$ROUTER" exec router -- "$@"; }
lan() { "$ROUTER" exec lan -- "$@"; }
cleanup() {
	[ -n "${LANVEIL_LUCI_KEEP:-}" ] || "$ROUTER" down >/dev/null 2>&1
}
trap cleanup EXIT

# --- tools (a missing one is a FAIL, never a skip) ------------------------------------
tools_ok=1
for tool in chromium chromedriver openssl unbound curl python3; do
	command -v "$tool" >/dev/null 2>&1 || { fail "tool-$tool" "$tool not installed (.ci/run installs it)"; tools_ok=0; }
done
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import selenium" 2>/dev/null; then
	if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "selenium==$SELENIUM_VERSION"; } >"$T/pip.log" 2>&1; then
		fail selenium-venv "pip install selenium==$SELENIUM_VERSION failed: $(tail -n 3 "$T/pip.log")"
		tools_ok=0
	fi
fi
[ "$tools_ok" = 1 ] || { finish; exit 1; }

# --- the package's sources -------------------------------------------------------------
APP="$REPO/openwrt/luci-app-lanveil"
check pot-up-to-date python3 "$HERE/luci/make_pot.py" --check
# Text in the views goes through _() (translated) or T() of a value; no bare literal.
check views-no-untranslated-literals sh -c "! grep -rnE \"T\\((['\\\"])\" '$APP/htdocs'"
check views-no-string-children sh -c "! grep -rnE \"E\\('[a-z0-9]+', \\{[^}]*\\}, ['\\\"]\" '$APP/htdocs'"
check acl-read-write-separate python3 -c "
import json, sys
a = json.load(open('$APP/root/usr/share/rpcd/acl.d/luci-app-lanveil.json'))['luci-app-lanveil']
r, w = a['read']['ubus']['luci.lanveil'], a['write']['ubus']['luci.lanveil']
sys.exit(0 if set(r) == {'status', 'presets', 'signals'} and set(w) == {'check', 'probe', 'service'} else 1)"
# The app's own service method, not luci's setInitAction (every init script).
check acl-writes-only-luci.lanveil python3 -c "
import json, sys
a = json.load(open('$APP/root/usr/share/rpcd/acl.d/luci-app-lanveil.json'))['luci-app-lanveil']
sys.exit(0 if set(a['write']['ubus']) == {'luci.lanveil'} and set(a['read']['ubus']) == {'luci.lanveil'} else 1)"

# --- packages ----------------------------------------------------------------------
LUCI_IPK="$(python3 "$HERE/luci/build_ipk.py" "$T")"
check luci-ipk-built test -f "$LUCI_IPK"
lanveil_ipk="$(find "$REPO/target/board/x86_64" -maxdepth 1 -name 'lanveil_*_x86_64.ipk' 2>/dev/null | sort | tail -n 1)"
[ -n "$lanveil_ipk" ] || { fail lanveil-ipk "no target/board/x86_64/lanveil_*.ipk (cargo board ipk x86_64)"; finish; exit 1; }

# --- the router: fresh flash, lanveil installed by router.sh, the app by opkg --------------
"$ROUTER" down >/dev/null 2>&1
if ! "$ROUTER" up --fresh >"$T/up.log" 2>&1; then
	fail router-up "$(tail -n 10 "$T/up.log")"
	finish
	exit 1
fi
pass router-up
r sh -c 'cat >/tmp/luci-app-lanveil.ipk' <"$LUCI_IPK"
check opkg-install-luci-app r opkg install /tmp/luci-app-lanveil.ipk
check opkg-status-luci-app r sh -c 'opkg status luci-app-lanveil | grep -q "^Status: install.* installed"'
for f in /www/luci-static/resources/view/lanveil/status.js /www/luci-static/resources/view/lanveil/settings.js \
	/www/luci-static/resources/view/status/include/70_lanveil.js /usr/share/luci/menu.d/luci-app-lanveil.json \
	/usr/share/rpcd/acl.d/luci-app-lanveil.json /usr/share/rpcd/ucode/lanveil.uc /usr/share/lanveil/presets.json; do
	check "installed-$(basename "$f")" r test -f "$f"
done
# The postinst sends rpcd SIGHUP; it re-executes itself and loads the plugin.
ok=0
for _ in $(seq 1 50); do r ubus -t 1 list luci.lanveil >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
check rpcd-has-luci.lanveil [ "$ok" = 1 ]
check uhttpd-running r sh -c 'ubus call service list "{\"name\":\"uhttpd\"}" | grep -q "\"running\": true"'
check rpcd-running r sh -c 'ubus call service list "{\"name\":\"rpcd\"}" | grep -q "\"running\": true"'

# root's password (the rig's flash has none), as `passwd` would store it.
hash="$(openssl passwd -6 -salt lanveilrig "$PASSWORD")"
r sed -i "s|^root:[^:]*:|root:$hash:|" /etc/shadow
# A read-only LuCI/rpcd user: rpcd's own login config, read ACLs only.
viewer_hash="$(openssl passwd -1 -salt viewer viewer-pass)"
check rpcd-viewer-login r sh -c "
	uci set rpcd.viewer=login && uci set rpcd.viewer.username=viewer &&
	uci set rpcd.viewer.password='$viewer_hash' &&
	uci add_list rpcd.viewer.read=luci-app-lanveil && uci add_list rpcd.viewer.read=unauthenticated &&
	uci commit rpcd && /etc/init.d/rpcd restart"
# An operator: the app's read and write ACLs, nothing else.
operator_hash="$(openssl passwd -1 -salt operator operator-pass)"
check rpcd-operator-login r sh -c "
	uci set rpcd.operator=login && uci set rpcd.operator.username=operator &&
	uci set rpcd.operator.password='$operator_hash' &&
	uci add_list rpcd.operator.read=luci-app-lanveil && uci add_list rpcd.operator.read=unauthenticated &&
	uci add_list rpcd.operator.write=luci-app-lanveil &&
	uci commit rpcd && /etc/init.d/rpcd restart"
ok=0
for _ in $(seq 1 50); do r ubus -t 1 list luci.lanveil >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
[ "$ok" = 1 ] || fail rpcd-restarted "luci.lanveil gone after rpcd restart"

# The LAN client: a static address on the LAN (DHCP is test_router.sh's).
lan sh -c 'ip addr add 192.168.1.50/24 dev eth0 && ip route add default via 192.168.1.1'

# --- two DoT upstreams in the ISP namespace (Debian's unbound, throwaway CA) -----------------
# dot.test at 203.0.113.53 answers probe.test 1.2.3.77; dot2.test at 203.0.113.54, 1.2.3.78.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=lanveil luci test CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
start_unbound() { # NAME ADDR ANSWER [CERTIFICATE-NAME]
	local cn="${4:-$1}"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
		-keyout "$T/$1.key" -out "$T/$1.csr" 2>/dev/null
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$cn" >"$T/$1.ext"
	openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/$1.ext" -out "$T/$1.pem" 2>/dev/null
	cat >"$T/$1.conf" <<-EOF
		server:
			interface: $2@853
			tls-port: 853
			tls-service-key: "$T/$1.key"
			tls-service-pem: "$T/$1.pem"
			do-daemonize: no
			username: ""
			chroot: ""
			directory: "$T"
			pidfile: ""
			use-syslog: no
			logfile: "$T/$1.log"
			verbosity: 1
			log-queries: yes
			do-ip6: no
			access-control: 0.0.0.0/0 allow
			local-zone: "." static
			local-zone: "probe.test." redirect
			local-data: "probe.test. 300 IN A $3"
		remote-control:
			control-enable: no
	EOF
	: >"$T/$1.log"
	"$ROUTER" exec isp -- unbound -c "$T/$1.conf" </dev/null >/dev/null 2>&1 &
}
"$ROUTER" exec isp -- ip addr add 203.0.113.54/32 dev lo
start_unbound dot.test 203.0.113.53 1.2.3.77
start_unbound dot2.test 203.0.113.54 1.2.3.78
# A hostile upstream: its certificate's name is markup (the probe's failure text quotes it).
"$ROUTER" exec isp -- ip addr add 203.0.113.55/32 dev lo
start_unbound evil 203.0.113.55 1.2.3.79 'evil<img src=x onerror=window.lanveilPwned=2>.test'
r sh -c 'mkdir -p /etc/lanveil && cat >/etc/lanveil/test-ca.pem' <"$T/ca.pem"
check lanveil-upstream-dot.test r sh -c '
	while uci -q delete lanveil.@upstream[0]; do :; done
	uci set lanveil.rig=upstream &&
	uci set lanveil.rig.url="tls://203.0.113.53:853#dot.test" &&
	uci set lanveil.rig.ca_file=/etc/lanveil/test-ca.pem &&
	uci commit lanveil && /etc/init.d/lanveil restart'
# A LAN lookup, so the upstream is connected and has an RTT.
dig_probe() {
	local want="$1" ans="" i
	for i in $(seq 1 40); do
		ans="$(lan dig +short +time=2 +tries=1 @192.168.1.1 "sh$i.probe.test" A 2>/dev/null)"
		[ "$ans" = "$want" ] && return 0
		sleep 0.5
	done
	echo "got '$ans', want $want"
	return 1
}
check lan-dig-via-dot.test dig_probe 1.2.3.77

# --- the ubus endpoint without a session, and a read-only session ------------------
ubus_call() { # SID OBJECT METHOD ARGS-JSON -> the JSON-RPC answer
	lan curl -s -m 10 -H 'Content-Type: application/json' -d \
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":[\"$1\",\"$2\",\"$3\",$4]}" \
		http://192.168.1.1/ubus
}
NULLSID=00000000000000000000000000000000
for m in status presets check probe signals; do
	ubus_call "$NULLSID" luci.lanveil "$m" '{}' >"$T/unauth-$m.json"
	check "unauthenticated-$m-refused" grep -q '"code":-32002' "$T/unauth-$m.json"
done
ubus_call "$NULLSID" uci get '{"config":"lanveil"}' >"$T/unauth-uci.json"
check unauthenticated-uci-refused grep -q '"code":-32002' "$T/unauth-uci.json"
ubus_call "$NULLSID" session login "{\"username\":\"viewer\",\"password\":\"viewer-pass\"}" >"$T/viewer-login.json"
vsid="$(sed -n 's/.*"ubus_rpc_session":"\([0-9a-f]*\)".*/\1/p' "$T/viewer-login.json")"
check viewer-login [ -n "$vsid" ]
ubus_call "$vsid" luci.lanveil status '{}' >"$T/viewer-status.json"
check viewer-reads-status grep -q '"answered":true' "$T/viewer-status.json"
ubus_call "$vsid" luci.lanveil check '{}' >"$T/viewer-check.json"
check viewer-cannot-check grep -q '"code":-32002' "$T/viewer-check.json"
ubus_call "$vsid" luci.lanveil probe '{"url":"tls://203.0.113.53:853#dot.test"}' >"$T/viewer-probe.json"
check viewer-cannot-probe grep -q '"code":-32002' "$T/viewer-probe.json"
ubus_call "$vsid" luci.lanveil service '{"action":"stop"}' >"$T/viewer-stop.json"
check viewer-cannot-stop grep -q '"code":-32002' "$T/viewer-stop.json"
ubus_call "$vsid" uci set '{"config":"lanveil","section":"rig","values":{"url":"tls://192.0.2.9:853#x.test"}}' >"$T/viewer-set.json"
check viewer-cannot-set-uci grep -q '"code":-32002' "$T/viewer-set.json"
check viewer-left-config-alone r grep -q 'dot.test' /etc/config/lanveil

# --- the operator (the app's write ACL) ---------------------------------------------------
ubus_call "$NULLSID" session login "{\"username\":\"operator\",\"password\":\"operator-pass\"}" >"$T/operator-login.json"
osid="$(sed -n 's/.*"ubus_rpc_session":"\([0-9a-f]*\)".*/\1/p' "$T/operator-login.json")"
check operator-login [ -n "$osid" ]
# Any other init script stays out of reach (luci's setInitAction is not granted).
ubus_call "$osid" luci setInitAction '{"name":"lanveil-rig-none","action":"stop"}' >"$T/operator-initaction.json"
check operator-no-setInitAction grep -q '"code":-32002' "$T/operator-initaction.json"
ubus_call "$osid" luci.lanveil service '{"action":"enable"}' >"$T/operator-service-bad.json"
check operator-service-only-start-stop-restart grep -q '"result":false' "$T/operator-service-bad.json"
# check's scratch files are root's, never under /tmp: a link planted at the old place
# (/tmp/lanveil-luci, into a directory another user owns) is not followed, nothing is
# created or removed there, and the check still works.
r sh -c 'rm -rf /tmp/lanveil-luci /tmp/attacker && mkdir /tmp/attacker && chown 65534 /tmp/attacker &&
	ln -s /tmp/attacker /tmp/lanveil-luci && touch -d "2020-01-01 00:00:00" /tmp/attacker'
ubus_call "$osid" luci.lanveil check '{}' >"$T/operator-check.json"
check operator-check-ok grep -q '"ok":true' "$T/operator-check.json"
check check-not-in-tmp r sh -c '[ -z "$(ls -A /tmp/attacker)" ] && [ "$(date -r /tmp/attacker +%Y)" = 2020 ]'
check check-work-dir-private r sh -c '[ "$(stat -c "%u %a %F" /var/run/lanveil-luci)" = "0 700 directory" ] && [ -z "$(ls -A /var/run/lanveil-luci)" ]'
r sh -c 'rm -rf /tmp/lanveil-luci /tmp/attacker'
# Status's "dnsmasq forwards to lanveil": not while another unconditional server is there
# (dnsmasq would race it against lanveil, in plaintext) or noresolv is off; listeners as
# the init script maps them (0.0.0.0 -> 127.0.0.1), the daemon's default when unset
# (127.0.0.1:5353). Files changed with the uci CLI only (no reload: nothing rewires them).
dnsmasq_flag() { ubus_call "$osid" luci.lanveil status '{}' | grep -o '"dnsmasq":[a-z]*'; }
r sh -c 'cp /etc/config/dhcp /tmp/dhcp.luci-test && cp /etc/config/lanveil /tmp/lanveil.luci-test'
check status-dnsmasq-wired-before [ "$(dnsmasq_flag)" = '"dnsmasq":true' ]
r sh -c 'uci add_list dhcp.@dnsmasq[0].server=9.9.9.9 && uci commit dhcp'
check status-dnsmasq-other-server-not-wired [ "$(dnsmasq_flag)" = '"dnsmasq":false' ]
r sh -c 'cp /tmp/dhcp.luci-test /etc/config/dhcp && uci set dhcp.@dnsmasq[0].noresolv=0 && uci commit dhcp'
check status-dnsmasq-resolv-not-wired [ "$(dnsmasq_flag)" = '"dnsmasq":false' ]
r sh -c 'cp /tmp/dhcp.luci-test /etc/config/dhcp && uci delete lanveil.main.listen && uci add_list lanveil.main.listen=0.0.0.0:5453 && uci commit lanveil'
check status-dnsmasq-any-address-maps-to-loopback [ "$(dnsmasq_flag)" = '"dnsmasq":true' ]
r sh -c 'uci delete lanveil.main.listen && uci commit lanveil'
check status-dnsmasq-default-listen-5353 [ "$(dnsmasq_flag)" = '"dnsmasq":false' ]
r sh -c 'cp /tmp/dhcp.luci-test /etc/config/dhcp && cp /tmp/lanveil.luci-test /etc/config/lanveil'
check status-dnsmasq-wired-after [ "$(dnsmasq_flag)" = '"dnsmasq":true' ]

# --- the browser --------------------------------------------------------------------
# Chromium runs inside the LAN client's namespace and reaches uhttpd at 192.168.1.1:80
# as a LAN browser does. Its checks print PASS/FAIL lines; it calls back into this
# script's helpers (router state, daemon) through tests/openwrt/luci/rig-hook.sh.
export LANVEIL_LUCI_ROUTER="$ROUTER" LANVEIL_LUCI_OUT="$T" LANVEIL_LUCI_PASSWORD="$PASSWORD"
# Only the LAN's network namespace (not its pid namespace): the test also enters the
# router's namespaces from there, which a process inside another pid namespace cannot.
lanpid="$(cat "${LANVEIL_ROUTER_RUN:-$REPO/target/openwrt-rig/run}/lan.pid")"
nsenter -t "$lanpid" -n -- env HOME="$T" LANVEIL_LUCI_ROUTER="$ROUTER" LANVEIL_LUCI_OUT="$T" LANVEIL_LUCI_PASSWORD="$PASSWORD" \
	"$VENV/bin/python" "$HERE/luci/browser_test.py" >"$T/browser.out" 2>"$T/browser.err"
brc=$?
while read -r line; do
	case "$line" in
	"PASS "*) pass "${line#PASS }" ;;
	"FAIL "*) fail "$(printf '%s' "${line#FAIL }" | cut -d: -f1)" "$(printf '%s' "${line#FAIL }" | cut -d: -f2-)" ;;
	*) echo "$line" ;;
	esac
done <"$T/browser.out"
[ "$brc" = 0 ] || fail browser-run "exit $brc: $(tail -n 5 "$T/browser.err")"
shots="$(find "$T" -maxdepth 1 -name '*.png' | wc -l)"
check screenshots-kept [ "$shots" -ge 8 ]

echo "# test_luci.sh: $(($(date +%s) - t0)) s"
finish
