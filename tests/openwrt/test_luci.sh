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
# Every call rejects on a ubus status (reject: true), so the views say which call failed
# instead of taking its expected default for an answer (browser_test.py's rpc_failure_checks).
check views-rpc-declare-reject python3 -c "
import glob, re, sys
calls = [c for f in glob.glob('$APP/htdocs/**/*.js', recursive=True) for c in re.findall(r'rpc\.declare\(\{(.*?)\}\);', open(f).read(), re.S)]
bad = [c for c in calls if not re.search(r'\breject: true\b', c)]
print(len(calls), 'declared, without reject: true:', bad)
sys.exit(0 if calls and not bad else 1)"
check acl-read-write-separate python3 -c "
import json, sys
a = json.load(open('$APP/root/usr/share/rpcd/acl.d/luci-app-lanveil.json'))['luci-app-lanveil']
r, w = a['read']['ubus']['luci.lanveil'], a['write']['ubus']['luci.lanveil']
sys.exit(0 if set(r) == {'status', 'presets', 'signals', 'zones'} and set(w) == {'check', 'probe', 'service'} else 1)"
# uci: lanveil's config only. The zone lists come from the plugin's zones method (names and
# networks), not from read of the firewall config (every forward, rule and ipset).
check acl-uci-only-lanveil python3 -c "
import json, sys
a = json.load(open('$APP/root/usr/share/rpcd/acl.d/luci-app-lanveil.json'))['luci-app-lanveil']
sys.exit(0 if a['read'].get('uci') == ['lanveil'] and a['write'].get('uci') == ['lanveil'] else 1)"
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
# A read-only LuCI/rpcd user: rpcd's own login config, read ACLs only (luci-base: uci get
# through ubus, for the configs another ACL grants; no config of its own).
viewer_hash="$(openssl passwd -1 -salt viewer viewer-pass)"
check rpcd-viewer-login r sh -c "
	uci set rpcd.viewer=login && uci set rpcd.viewer.username=viewer &&
	uci set rpcd.viewer.password='$viewer_hash' &&
	uci add_list rpcd.viewer.read=luci-app-lanveil && uci add_list rpcd.viewer.read=unauthenticated &&
	uci add_list rpcd.viewer.read=luci-base &&
	uci commit rpcd && /etc/init.d/rpcd restart"
# An operator: the app's read and write ACLs and luci-base's (what any LuCI login needs: uci
# get/set through ubus, for the configs another ACL grants), nothing else.
operator_hash="$(openssl passwd -1 -salt operator operator-pass)"
check rpcd-operator-login r sh -c "
	uci set rpcd.operator=login && uci set rpcd.operator.username=operator &&
	uci set rpcd.operator.password='$operator_hash' &&
	uci add_list rpcd.operator.read=luci-app-lanveil && uci add_list rpcd.operator.read=unauthenticated &&
	uci add_list rpcd.operator.write=luci-app-lanveil &&
	uci add_list rpcd.operator.read=luci-base && uci add_list rpcd.operator.write=luci-base &&
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
for m in status presets check probe signals zones; do
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
# The zones (names and networks) without the firewall config itself.
ubus_call "$vsid" luci.lanveil zones '{}' >"$T/viewer-zones.json"
check viewer-reads-zones sh -c "grep -q '{\"name\":\"lan\",\"networks\":\[\"lan\"\]}' '$T/viewer-zones.json' && grep -q '\"name\":\"wan\"' '$T/viewer-zones.json'"
# The zones method over every shape a zone section can have (uci on the router, no fw4 reload;
# taken out again at once): a name given once as an option; as a list (fw4 refuses such a zone:
# not listed); a name another zone has (listed once, with the first one's networks); no name (not
# listed); networks as a list, as one option of several words, repeated (listed once each).
r sh -c 'cp /etc/config/firewall /tmp/firewall.zones-test'
r sh -c 'set -e
	uci set firewall.lvz_str=zone; uci set firewall.lvz_str.name=lvz_str; uci set firewall.lvz_str.network="n1 n2 n1"
	uci set firewall.lvz_list=zone; uci add_list firewall.lvz_list.name=lvz_list; uci add_list firewall.lvz_list.name=lvz_other
	uci set firewall.lvz_dup=zone; uci set firewall.lvz_dup.name=lan; uci set firewall.lvz_dup.network=dup0
	uci set firewall.lvz_anon=zone; uci set firewall.lvz_anon.network=anon0
	uci set firewall.lvz_nets=zone; uci set firewall.lvz_nets.name=lvz_nets
	uci add_list firewall.lvz_nets.network="n3 n4"; uci add_list firewall.lvz_nets.network=n3
	uci commit firewall'
ubus_call "$vsid" luci.lanveil zones '{}' >"$T/viewer-zones-shapes.json"
r sh -c 'cp /tmp/firewall.zones-test /etc/config/firewall && rm /tmp/firewall.zones-test'
zones_are() { # JSON-RPC ANSWER-FILE: the zones, in order, as "name:net,net name:..."
	python3 -c '
import json, sys
z = json.load(open(sys.argv[1]))["result"][1]["zones"]
print(" ".join("%s:%s" % (e["name"], ",".join(e["networks"])) for e in z))' "$1"
}
check zones-method-shapes [ "$(zones_are "$T/viewer-zones-shapes.json")" = "lan:lan wan:wan,wan6 lvz_str:n1,n2 lvz_nets:n3,n4" ]
check zones-method-shapes-undone r sh -c '! grep -q lvz_ /etc/config/firewall'
# Only the zones fw4 loads (firewall4's fw4.uc, parse_zone): not one with enabled off ('0',
# 'no'), nor one whose enabled is no boolean fw4 reads, nor one whose name is no identifier
# (a space, a leading digit); enabled 'yes' is on. Those are listed apart, with why. A disabled
# section named lan before the real one: lan listed with the loaded section's networks, and
# not as unloaded.
r sh -c 'cp /etc/config/firewall /tmp/firewall.zones-test'
r sh -c 'set -e
	uci set firewall.lvz_dis=zone; uci set firewall.lvz_dis.name=lan; uci set firewall.lvz_dis.enabled=0; uci set firewall.lvz_dis.network=dis0
	uci reorder firewall.lvz_dis=0
	uci set firewall.lvz_off=zone; uci set firewall.lvz_off.name=lvz_off; uci set firewall.lvz_off.enabled=0
	uci set firewall.lvz_no=zone; uci set firewall.lvz_no.name=lvz_no; uci set firewall.lvz_no.enabled=no
	uci set firewall.lvz_maybe=zone; uci set firewall.lvz_maybe.name=lvz_maybe; uci set firewall.lvz_maybe.enabled=maybe
	uci set firewall.lvz_space=zone; uci set firewall.lvz_space.name="lvz space"
	uci set firewall.lvz_digit=zone; uci set firewall.lvz_digit.name=1lvz
	uci set firewall.lvz_yes=zone; uci set firewall.lvz_yes.name=lvz_yes; uci set firewall.lvz_yes.enabled=yes; uci set firewall.lvz_yes.network=n5
	uci commit firewall'
ubus_call "$vsid" luci.lanveil zones '{}' >"$T/viewer-zones-fw4.json"
r sh -c 'cp /tmp/firewall.zones-test /etc/config/firewall && rm /tmp/firewall.zones-test'
unloaded_are() { # JSON-RPC ANSWER-FILE: the unloaded zones, in order, as "name:reason|..."
	python3 -c '
import json, sys
z = json.load(open(sys.argv[1]))["result"][1]["unloaded"]
print("|".join("%s:%s" % (e["name"], e["reason"]) for e in z))' "$1"
}
check zones-method-fw4-loaded-only [ "$(zones_are "$T/viewer-zones-fw4.json")" = "lan:lan wan:wan,wan6 lvz_yes:n5" ]
check zones-method-fw4-unloaded-why [ "$(unloaded_are "$T/viewer-zones-fw4.json")" = "lvz_off:disabled|lvz_no:disabled|lvz_maybe:invalid|lvz space:invalid|1lvz:invalid" ]
check zones-method-fw4-undone r sh -c '! grep -q lvz /etc/config/firewall'
# No firewall config at all: the call fails (not found), rather than answer "no zones" (the
# settings page would take every zone its config names for one the router lacks).
r mv /etc/config/firewall /tmp/firewall.zones-test
ubus_call "$vsid" luci.lanveil zones '{}' >"$T/viewer-zones-none.json"
r mv /tmp/firewall.zones-test /etc/config/firewall
check zones-method-no-firewall-config-fails grep -q '"result":\[4\]' "$T/viewer-zones-none.json"
ubus_call "$vsid" luci.lanveil zones '{}' >"$T/viewer-zones-again.json"
check zones-method-after-failure [ "$(zones_are "$T/viewer-zones-again.json")" = "lan:lan wan:wan,wan6" ]
# uci get reaches rpcd (luci-base), which gives lanveil's config and refuses the firewall's
# (ubus status 6, permission denied).
ubus_call "$vsid" uci get '{"config":"lanveil","section":"rig"}' >"$T/viewer-uci-lanveil.json"
check viewer-reads-uci-lanveil grep -q 'dot.test' "$T/viewer-uci-lanveil.json"
ubus_call "$vsid" uci get '{"config":"firewall"}' >"$T/viewer-firewall.json"
check viewer-cannot-read-firewall grep -q '"result":\[6\]' "$T/viewer-firewall.json"
ubus_call "$vsid" session access '{"scope":"uci","object":"firewall","function":"read"}' >"$T/viewer-firewall-access.json"
check viewer-session-no-firewall-access grep -q '"access":false' "$T/viewer-firewall-access.json"
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
browser_results() { # OUT-FILE
	while read -r line; do
		case "$line" in
		"PASS "*) pass "${line#PASS }" ;;
		"FAIL "*) fail "$(printf '%s' "${line#FAIL }" | cut -d: -f1)" "$(printf '%s' "${line#FAIL }" | cut -d: -f2-)" ;;
		*) echo "$line" ;;
		esac
	done <"$1"
}
browser_results "$T/browser.out"
[ "$brc" = 0 ] || fail browser-run "exit $brc: $(tail -n 5 "$T/browser.err")"

# --- what the page and the card say when LAN DNS is not private, or down ---------------------
# States made with the router's own tools (uci, the init script, procd over ubus), then read
# from the plugin (ubus, as root on the router) and from the pages (the browser, text only):
#   dnsmasq '0', or another server= (uci, /etc/dnsmasq.conf): the card must not say "Private";
#   an invalid config, then Restart: the init script's "last good configuration" on the page;
#   the daemon's instance gone (procd gave up), the guard armed: "DNS is down for the LAN".
# Uses browser_test.py's helpers (login, waits, router()).
cat >"$T/browser_states.py" <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.environ["LANVEIL_LUCI_HERE"])
import browser_test as b
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

report, router, wait, text_of, shot, BASE = b.report, b.router, b.wait, b.text_of, b.shot, b.BASE
# A CA bundle path the checker accepts and the daemon cannot read: its error (quoted by the
# init script's status, "Its last words") carries markup.
HOSTILE_CA = "/etc/x<img src=x onerror=window.lanveilPwned=3>.pem"


def status():
    try:
        return json.loads(router("ubus", "call", "luci.lanveil", "status").stdout)
    except ValueError:
        return {}


def card(d, want_state, secs=40):
    """The front page's card: (data-state, text, reached) once it has want_state, or the last
    seen. The page is loaded again every few seconds; for "private" a LAN lookup first (the
    daemon connects an upstream on demand)."""
    end, st = time.time() + secs, None
    while True:
        if want_state == "private":
            b.dig("probe.test")
        d.get(BASE + "/admin/status/overview")
        got = wait("card " + want_state, lambda: (lambda e: e and e[0].get_attribute("data-state") == want_state)(
            d.find_elements(By.CSS_SELECTOR, "#lanveil-overview-state")), 5)
        if got:
            st = want_state
        else:
            try:
                els = d.find_elements(By.CSS_SELECTOR, "#lanveil-overview-state")
                st = els[0].get_attribute("data-state") if els else None
            except b.WebDriverException:
                st = None
        if got or time.time() > end:
            return (st, text_of(d, "#lanveil-overview-state"), got)


def restart_ok():
    router("/etc/init.d/lanveil", "restart")
    return wait("answering", lambda: (lambda s: s.get("answered") and s.get("dnsmasq") and not s.get("guard_armed"))(status()), 40)


def login(d):
    d.get(BASE + "/")
    wait("login form", lambda: [e for e in d.find_elements(By.NAME, "luci_password") if e.is_displayed()], 30)
    u = d.find_element(By.NAME, "luci_username")
    u.clear()
    u.send_keys("root")
    d.find_element(By.NAME, "luci_password").send_keys(b.PASSWORD)
    d.find_element(By.NAME, "luci_password").submit()
    return wait("logged in", lambda: d.find_elements(By.CSS_SELECTOR, "a[href$='/admin/logout']"))


def no_markup(d, name, css):
    imgs = d.execute_script("return document.querySelectorAll(arguments[0]).length", css + " img")
    pwned = d.execute_script("return window.lanveilPwned === undefined ? null : window.lanveilPwned")
    report(name, imgs == 0 and pwned is None, "%s img elements, window.lanveilPwned = %r" % (imgs, pwned))


def run(d):
    report("states-login", login(d), d.current_url)
    report("states-start-private", restart_ok(), status())
    st, text, _ = card(d, "private")
    report("card-private-when-wired", st == "private" and text.startswith("Private:"), "%s: %s" % (st, text))

    # option dnsmasq '0': lanveil runs and answers, its upstream is up, dnsmasq does not use it.
    router("sh", "-c", "uci set lanveil.openwrt.dnsmasq=0 && uci commit lanveil && /etc/init.d/lanveil restart")
    s = wait("unwired", lambda: (lambda s: s if s.get("answered") and s.get("dnsmasq") is False else None)(status()), 40) or status()
    report("status-dnsmasq-off-issue", s.get("dnsmasq_issue") == "off", {k: s.get(k) for k in ("dnsmasq", "dnsmasq_issue")})
    st, text, _ = card(d, "not-private")
    report("card-dnsmasq-off-not-private", st == "not-private" and text.startswith("Not private") and "Private:" not in text, "%s: %s" % (st, text))
    shot(d, "09-card-dnsmasq-off")
    router("sh", "-c", "uci set lanveil.openwrt.dnsmasq=1 && uci commit lanveil")
    report("states-rewired", restart_ok(), status())

    # Another unconditional server in /etc/dnsmasq.conf (dnsmasq reads it too), then in uci.
    router("sh", "-c", "cp -p /etc/config/dhcp /tmp/dhcp.states; [ -f /etc/dnsmasq.conf ] && cp -p /etc/dnsmasq.conf /tmp/dnsmasq.conf.states; "
           "echo server=9.9.9.9 >>/etc/dnsmasq.conf")
    s = status()
    report("status-dnsmasq-conf-other-server", s.get("dnsmasq") is False and s.get("dnsmasq_issue") == "other" and "9.9.9.9" in (s.get("dnsmasq_other") or []),
           {k: s.get(k) for k in ("dnsmasq", "dnsmasq_issue", "dnsmasq_other")})
    st, text, _ = card(d, "not-private")
    report("card-dnsmasq-conf-server-not-private", st == "not-private" and "elsewhere" in text and "9.9.9.9" in text, "%s: %s" % (st, text))
    shot(d, "10-card-dnsmasq-other")
    d.get(BASE + "/admin/services/lanveil/status")
    dm = wait("dnsmasq row", lambda: text_of(d, "#lanveil-dnsmasq"), 30) or ""
    report("status-page-dnsmasq-other-server", dm.startswith("no") and "9.9.9.9" in dm, dm)
    router("sh", "-c", "if [ -f /tmp/dnsmasq.conf.states ]; then mv /tmp/dnsmasq.conf.states /etc/dnsmasq.conf; else rm -f /etc/dnsmasq.conf; fi; "
           "uci add_list dhcp.@dnsmasq[0].server=198.51.100.9 && uci commit dhcp")
    st, text, _ = card(d, "not-private")
    report("card-uci-server-not-private", st == "not-private" and "198.51.100.9" in text, "%s: %s" % (st, text))
    router("sh", "-c", "cp -p /tmp/dhcp.states /etc/config/dhcp")
    st, text, _ = card(d, "private")
    report("card-private-again", st == "private", "%s: %s" % (st, text))

    # An invalid config applied without the check (uci, then reload): the daemon keeps its
    # last good configuration, and the page says so in the init script's words.
    router("sh", "-c", "cp -p /etc/config/lanveil /tmp/lanveil.states && uci set lanveil.rig.url=tls://203.0.113.300:853#dot2.test && "
           "uci commit lanveil", check=True)
    r = router("/etc/init.d/lanveil", "reload")
    # Not applied: the reload says so by its exit status too (lanveil-ctl push and scripts read it).
    report("invalid-reload-exits-1", r.returncode == 1, "exit %d: %s" % (r.returncode, r.stdout + r.stderr))
    d.get(BASE + "/admin/services/lanveil/status")
    init = wait("init status", lambda: "last good configuration" in text_of(d, "#lanveil-init-status") and text_of(d, "#lanveil-init-status"), 30) or ""
    report("status-page-last-good-configuration", "running on its last good configuration" in init and "/etc/config/lanveil is invalid" in init,
           init or text_of(d, "#lanveil-init-status"))
    shot(d, "11-status-last-good")
    router("sh", "-c", "cp -p /tmp/lanveil.states /etc/config/lanveil")
    report("states-config-restored", restart_ok(), status())

    # Restart from the page with a daemon that cannot start (its CA bundle is missing; the path
    # is markup) and no last good copy to run on: "restart: failed" alone hides that the LAN's DNS
    # is now refused. The init script's words (with the daemon's check) and the guard's state are
    # shown, as text.
    router("sh", "-c", "uci set lanveil.rig.ca_file=\"$1\" && uci commit lanveil && rm -f /etc/lanveil/daemon/last-good", "_", HOSTILE_CA, check=True)
    d.get(BASE + "/admin/services/lanveil/status")
    wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 30)
    d.find_element(By.ID, "lanveil-restart").click()
    res = wait("restart result", lambda: ("done" in text_of(d, "#lanveil-action-result") or "failed" in text_of(d, "#lanveil-action-result")) and text_of(d, "#lanveil-action-result"), 60)
    out = wait("restart output", lambda: text_of(d, "#lanveil-action-output"), 10) or ""
    said = router("sh", "-c", "sed -n 2p /var/run/lanveil/status").stdout.strip()
    report("restart-shows-init-status", res == "restart: failed" and said and said in out and "cannot read CA bundle" in out and "Fail-closed guard: on" in out, "%r / %r" % (res, out))
    report("restart-init-status-markup-as-text", HOSTILE_CA in out, out)
    down = wait("down", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='down']"), 30)
    init = text_of(d, "#lanveil-init-status")
    report("status-page-refused-start-guard", down and HOSTILE_CA in init and "Fail-closed guard: on" in init, init)
    no_markup(d, "init-status-no-markup", "#maincontent")
    shot(d, "11b-status-refused-start")
    st, text, _ = card(d, "down")
    said = wait("card init status", lambda: HOSTILE_CA in text_of(d, "#lanveil-overview-init"), 15)
    report("card-refused-start-init-status-as-text", st == "down" and said, "%s: %r" % (st, text_of(d, "#lanveil-overview-init")[-200:]))
    no_markup(d, "card-init-status-no-markup", "#lanveil-overview")
    router("sh", "-c", "mv /tmp/lanveil.states /etc/config/lanveil")
    report("states-config-restored-again", restart_ok(), status())

    # procd gave up on the daemon (its instance gone), the guard still runs and has armed:
    # the LAN's DNS is REFUSED. Neither "runs" nor "Private".
    router("ubus", "call", "service", "delete", '{"name":"lanveil","instance":"lanveil"}')
    s = wait("guard armed", lambda: (lambda s: s if s.get("guard_armed") else None)(status()), 30) or status()
    report("status-dead-daemon-not-running", s.get("running") is False and s.get("guard_running") is True,
           {k: s.get(k) for k in ("running", "guard_running", "guard_armed", "answered")})
    report("status-dead-daemon-guard-armed", s.get("guard_armed") is True and (s.get("init") or {}).get("state") == "down"
           and "NOT running" in (s.get("init") or {}).get("text", ""), {k: s.get(k) for k in ("guard_armed", "init")})
    st, text, _ = card(d, "down")
    report("card-dead-daemon-dns-down", st == "down" and "DNS is down for the LAN (fail-closed)" in text, "%s: %s" % (st, text))
    report("card-dead-daemon-init-status", "NOT running" in text_of(d, "#lanveil-overview-init"), text_of(d, "#lanveil-overview"))
    shot(d, "12-card-dead-daemon")
    d.get(BASE + "/admin/services/lanveil/status")
    down = wait("down", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='down']"), 30)
    report("status-page-dead-daemon-dns-down", down and "DNS is down for the LAN (fail-closed)" in text_of(d, "#lanveil-service-state"), text_of(d, "#lanveil-service-state"))
    init = text_of(d, "#lanveil-init-status")
    report("status-page-dead-daemon-guard", "NOT running" in init and "Fail-closed guard: on" in init, init)
    shot(d, "13-status-dead-daemon")
    d.find_element(By.ID, "lanveil-start").click()
    res = wait("start result", lambda: ("done" in text_of(d, "#lanveil-action-result") or "failed" in text_of(d, "#lanveil-action-result")) and text_of(d, "#lanveil-action-result"), 60)
    out = wait("start output", lambda: text_of(d, "#lanveil-action-output"), 10) or ""
    report("start-after-dead-daemon", res == "start: done" and "lanveil is running" in out, "%r / %r" % (res, out))
    up = wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 40)
    report("start-after-dead-daemon-running", up and not status().get("guard_armed"), text_of(d, "#lanveil-service-state"))


o = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1280,1100", "--user-data-dir=" + os.path.join(b.OUT, "chromium-profile-states")):
    o.add_argument(a)
o.binary_location = "/usr/bin/chromium"
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
drv.set_page_load_timeout(60)
try:
    run(drv)
except Exception as e:
    report("states-exception", False, repr(e))
finally:
    drv.quit()
sys.exit(1 if b.failed else 0)
EOF
nsenter -t "$lanpid" -n -- env HOME="$T" LANVEIL_LUCI_ROUTER="$ROUTER" LANVEIL_LUCI_OUT="$T" LANVEIL_LUCI_PASSWORD="$PASSWORD" \
	LANVEIL_LUCI_HERE="$HERE/luci" "$VENV/bin/python" "$T/browser_states.py" >"$T/states.out" 2>"$T/states.err"
src=$?
browser_results "$T/states.out"
[ "$src" = 0 ] || fail browser-states-run "exit $src: $(tail -n 5 "$T/states.err")"
shots="$(find "$T" -maxdepth 1 -name '*.png' | wc -l)"
check screenshots-kept [ "$shots" -ge 8 ]

echo "# test_luci.sh: $(($(date +%s) - t0)) s"
finish
