#!/bin/bash
# LAN signals (captive-portal URI, RFC 8910; IPv6-only preferred, RFC 8925) and the
# WAN captive-portal relay of the init script, in the same sandbox as test_init.sh
# (busybox ash + busybox tools, real uci, procd doubles, private net/mount
# namespaces). odhcpd is a double: a file that does or does not contain the option
# name the init script probes for. The last part runs REAL dnsmasq and busybox
# udhcpc over a veth pair: dnsmasq configured from the UCI lanveil wrote (as
# OpenWrt's dnsmasq init turns dhcp_option into dhcp-option=<networkid>,...), and
# udhcpc -O 108 -O 114 running the hook of a second lanveil router.
# shellcheck source-path=SCRIPTDIR disable=SC2016  # literal $(...) and $1 on purpose
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
enter_namespaces "$@"
# Tools outside the busybox-only PATH.
DNSMASQ="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
IPCMD="$(command -v ip || echo /usr/sbin/ip)"
NSENTER="$(command -v nsenter || echo /usr/bin/nsenter)"
UNSHARE="$(command -v unshare || echo /usr/bin/unshare)"
sandbox capport

URI=https://gw.example.lan/api/captive
# openwrt.md §5.2: 0x0067 | u16 length | URI bytes.
RAW=0067002268747470733a2f2f67772e6578616d706c652e6c616e2f6170692f63617074697665
WAN_URI=https://portal.hotel.example/capport
CTL=/var/run/lanveil/daemon/control.sock

odhcpd_old() { printf 'odhcpd double (24.10)\ndhcpv6_raw\nra_flags\n' >"$R/usr/sbin/odhcpd"; }
odhcpd_new() { printf 'odhcpd double (25.12)\ndhcpv6_raw\ncaptive_portal_uri\nipv6_only_preferred\n' >"$R/usr/sbin/odhcpd"; }
# The owner's daemon settings: captive_portal_uri URI, v6only_wait WAIT (+ NAT64).
owner() {
	uci_ set lanveil.main.captive_portal_uri="$1"
	[ -n "${2:-}" ] && uci_ set lanveil.main.v6only_wait="$2" && uci_ set lanveil.main.dns64_prefix=64:ff9b::/96
	uci_ commit lanveil
}
# Re-snapshot the dhcp file after a fixture change.
reorig() { cp "$R/etc/config/dhcp" "$ORIG"; cp "$R/etc/config/network" "$T/network.orig"; }
opts() { uci_ -d '|' get "dhcp.${1:-lan}.dhcp_option"; }
get() { uci_ get "$1"; }
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
raw_of() { "$PY" -c 'import sys; u = sys.argv[1].encode(); print("0067%04x" % len(u) + u.hex())' "$1"; }
status() { cat "$R/var/run/lanveil/capport" 2>/dev/null; }
# udhcpc calling netifd's dhcp.script (double: only the user hooks): ACTION VAR=VALUE...
hook() {
	local action="$1"
	shift
	env INTERFACE=wan "$@" busybox ash "$R/lib/netifd/dhcp.script" "$action"
}
last_control() { tail -n 1 "$R/log/control" 2>/dev/null; }
has() { printf '%s\n' "$1" | grep -qF -- "$2"; }

# --- (i) odhcpd 24.10 (no native options), dnsmasq serves DHCPv4 ----------------
mkroot
odhcpd_old
owner "$URI" 1800
reorig
check old-start rc start
check old-dnsmasq-114-and-108 [ "$(opts)" = "114,$URI|108,00:00:07:08" ]
check old-dhcpv6-raw-103-exact-hex [ "$(get dhcp.lan.dhcpv6_raw)" = "$RAW" ]
check old-dhcpv6-raw-matches-python-encoding [ "$(raw_of "$URI")" = "$RAW" ]
check old-no-native-options [ -z "$(get dhcp.lan.captive_portal_uri)$(get dhcp.lan.ipv6_only_preferred)" ]
check old-wan-section-untouched [ -z "$(opts wan)$(get dhcp.wan.dhcpv6_raw)" ]
check old-status-ra37-unsupported grep -qx 'RA option 37: not supported by this odhcpd' "$R/var/run/lanveil/capport"
check old-status-says-how grep -q '^dhcp section lan: DHCPv4 114: dnsmasq dhcp_option; DHCPv6 103: odhcpd dhcpv6_raw; RA option 37: not supported by this odhcpd; DHCPv4 108: dnsmasq dhcp_option$' "$R/var/run/lanveil/capport"
check old-capport-command sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' capport | grep -q '^captive portal URI: $URI (option captive_portal_uri)$'"
check old-odhcpd-reloaded [ "$(count "$R/log/odhcpd" reload)" = 1 ]
check old-dnsmasq-restarted-once [ "$(count "$R/log/dnsmasq" restart)" = 1 ]
check old-wan-requests-114 [ "$(get network.wan.reqopts)" = 114 ]
check old-network-reloaded [ "$(count "$R/log/network" reload)" = 1 ]
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
rc reload >/dev/null 2>&1
check old-reload-idempotent cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check old-reload-no-restarts [ "$(count "$R/log/odhcpd" reload)$(count "$R/log/dnsmasq" restart)$(count "$R/log/network" reload)" = 111 ]
check old-stop rc stop
check old-stop-dhcp-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"
check old-stop-keeps-wan-reqopts [ "$(get network.wan.reqopts)" = 114 ]
check old-stop-status-removed [ ! -e "$R/var/run/lanveil/capport" ]
check old-stop-reloads-odhcpd-not-network [ "$(count "$R/log/odhcpd" reload)$(count "$R/log/network" reload)" = 21 ]
rc start >/dev/null 2>&1
check old-restart-no-network-reload [ "$(count "$R/log/network" reload)" = 1 ]
uci_ set lanveil.openwrt.relay_wan_portal=0
uci_ commit lanveil
rc reload >/dev/null 2>&1
check old-relay-off-network-byte-identical cmp "$R/etc/config/network" "$T/network.orig"
check old-relay-off-network-reloaded [ "$(count "$R/log/network" reload)" = 2 ]
check old-relay-off-forgets-network-state [ ! -e "$R/etc/lanveil/network" ]
rc stop >/dev/null 2>&1
check old-capport-command-after-stop sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' capport | grep -q 'No LAN signals'"

# 108 without NAT64 is not announced (the daemon refuses the config).
mkroot
odhcpd_old
uci_ set lanveil.main.v6only_wait=1800
uci_ commit lanveil
rc start >/dev/null 2>&1
check v6only-needs-dns64 [ -z "$(opts)" ]
check v6only-needs-dns64-logged grep -q 'v6only_wait.*needs dns64_prefix' "$R/log/syslog"
rc stop >/dev/null 2>&1

# 108 only where odhcpd serves router advertisements (RFC 8925 clients drop IPv4 on 108:
# without IPv6 from the router they would have no internet). The default lan (ra 'server')
# gets it; ra and dhcpv6 'disabled', or no ra at all (odhcpd's default), do not.
mkroot
odhcpd_old
uci_ set dhcp.lan.ra=disabled
uci_ set dhcp.lan.dhcpv6=disabled
uci_ commit dhcp
owner "$URI" 1800
reorig
rc start >/dev/null 2>&1
check v6only-ra-disabled-no-108 [ "$(opts)" = "114,$URI" ]
check v6only-ra-disabled-status grep -q "^dhcp section lan: .*DHCPv4 108: not announced (ra 'disabled': " "$R/var/run/lanveil/capport"
check v6only-ra-disabled-logged [ "$(count "$R/log/syslog" "daemon.warn.*dhcp.lan: IPv6-only preferred (DHCPv4 108) not announced: ra 'disabled'")" = 1 ]
rc reload >/dev/null 2>&1
check v6only-ra-disabled-logged-once [ "$(count "$R/log/syslog" "dhcp.lan: IPv6-only preferred (DHCPv4 108) not announced")" = 1 ]
uci_ delete dhcp.lan.ra
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check v6only-no-ra-option-no-108 [ "$(opts)" = "114,$URI" ]
check v6only-no-ra-option-status grep -q "^dhcp section lan: .*DHCPv4 108: not announced (no option ra (odhcpd's default: disabled)" "$R/var/run/lanveil/capport"
uci_ set dhcp.lan.ra=server
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check v6only-ra-server-108-again [ "$(opts)" = "114,$URI|108,00:00:07:08" ]
uci_ set dhcp.lan.ra=disabled
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check v6only-ra-disabled-108-removed [ "$(opts)" = "114,$URI" ]
rc stop >/dev/null 2>&1
check v6only-ra-disabled-stop-removes-ours [ "$(opts)|$(get dhcp.lan.ra)" = "|disabled" ]
# Native odhcpd serving DHCPv4: no ipv6_only_preferred where it sends no RA.
mkroot
odhcpd_new
uci_ set dhcp.odhcpd.maindhcp=1
uci_ set dhcp.lan.ra=disabled
uci_ commit dhcp
owner "$URI" 1800
rc start >/dev/null 2>&1
check v6only-native-ra-disabled-no-ipv6-only-preferred [ -z "$(get dhcp.lan.ipv6_only_preferred)" ]
check v6only-native-ra-disabled-uri-kept [ "$(get dhcp.lan.captive_portal_uri)" = "$URI" ]
rc stop >/dev/null 2>&1

# --- (ii) odhcpd 25.12 (native), odhcpd serves DHCPv4 (maindhcp 1) ---------------
mkroot
odhcpd_new
uci_ set dhcp.odhcpd.maindhcp=1
uci_ commit dhcp
owner "$URI" 1800
reorig
rc start >/dev/null 2>&1
check new-native-captive-portal-uri [ "$(get dhcp.lan.captive_portal_uri)" = "$URI" ]
check new-native-ipv6-only-preferred [ "$(get dhcp.lan.ipv6_only_preferred)" = 1800 ]
check new-no-dnsmasq-duplicates [ -z "$(opts)" ]
check new-no-dhcpv6-raw [ -z "$(get dhcp.lan.dhcpv6_raw)" ]
check new-status-native grep -q '^odhcpd: native captive_portal_uri and ipv6_only_preferred$' "$R/var/run/lanveil/capport"
check new-status-ra37-by-odhcpd grep -q 'RA option 37: odhcpd captive_portal_uri' "$R/var/run/lanveil/capport"
check new-status-no-unsupported sh -c "! grep -q 'not supported' '$R/var/run/lanveil/capport'"
rc stop >/dev/null 2>&1
check new-stop-dhcp-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"

# Native odhcpd, dnsmasq serves DHCPv4 (maindhcp 0, the default): odhcpd does
# 103 + RA 37, dnsmasq 114 + 108; no ipv6_only_preferred (odhcpd sends no DHCPv4).
mkroot
odhcpd_new
owner "$URI" 1800
reorig
rc start >/dev/null 2>&1
check new-v4dnsmasq-native-uri [ "$(get dhcp.lan.captive_portal_uri)" = "$URI" ]
check new-v4dnsmasq-dnsmasq-114-108 [ "$(opts)" = "114,$URI|108,00:00:07:08" ]
check new-v4dnsmasq-no-odhcpd-108-no-raw [ -z "$(get dhcp.lan.ipv6_only_preferred)$(get dhcp.lan.dhcpv6_raw)" ]
rc stop >/dev/null 2>&1
check new-v4dnsmasq-stop-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"

# One implementation: the values come from lanveil --print-signals (the real binary);
# the shell has no URI rule or encoder of its own. A comma in the URI: colon-hex for dnsmasq.
check shell-has-no-encoder sh -c "! grep -nE 'lanveil_uri_ok|lanveil_hex|lanveil_opt114_decode|od -An|0067%04x' '$PKG/files/lanveil.sh'"
mkroot
odhcpd_old
owner "https://gw.example.lan/a,b"
rc start >/dev/null 2>&1
check comma-uri-colon-hex-for-dnsmasq [ "$(opts)" = "114,$("$PY" -c 'import sys; print(":".join("%02x" % b for b in sys.argv[1].encode()))' https://gw.example.lan/a,b)" ]
check comma-uri-raw-103 [ "$(get dhcp.lan.dhcpv6_raw)" = "$(raw_of https://gw.example.lan/a,b)" ]
rc stop >/dev/null 2>&1

# The probe can be overridden (LANVEIL_ODHCPD_NATIVE=1/0).
mkroot
odhcpd_old
owner "$URI"
LANVEIL_ODHCPD_NATIVE=1 rc start >/dev/null 2>&1
check probe-override-native [ "$(get dhcp.lan.captive_portal_uri)" = "$URI" ]
rc stop >/dev/null 2>&1
rm -f "$R/usr/sbin/odhcpd"
rc start >/dev/null 2>&1
check no-odhcpd-no-raw [ "$(get dhcp.lan.dhcpv6_raw)$(get dhcp.lan.captive_portal_uri)|$(opts)" = "|114,$URI" ]
check no-odhcpd-status grep -q '^odhcpd: not installed$' "$R/var/run/lanveil/capport"
rc stop >/dev/null 2>&1

# The owner's own settings win and survive.
mkroot
odhcpd_old
uci_ add_list dhcp.lan.dhcp_option=114,https://own.example/
uci_ set dhcp.lan.dhcpv6_raw=00ff0000
uci_ commit dhcp
owner "$URI" 1800
reorig
rc start >/dev/null 2>&1
check owner-114-kept-ours-not-added [ "$(opts)" = "114,https://own.example/|108,00:00:07:08" ]
check owner-dhcpv6-raw-kept-ours-appended [ "$(get dhcp.lan.dhcpv6_raw)" = "00ff0000$RAW" ]
check owner-conflict-logged grep -q "dhcp.lan has the owner's dhcp_option 114" "$R/log/syslog"
rc stop >/dev/null 2>&1
check owner-stop-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"

# --- (iii) WAN hook: invalid URIs are ignored and logged ---------------------------
mkroot
odhcpd_old
rc start >/dev/null 2>&1
daemon_up
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
long="https://$(printf 'a%.0s' $(seq 1 248))"
n=0
for bad in "http://portal.hotel.example/" "https://portal.hotel.example/a b" "https://portal.hotel.example/a'b" \
	'https://portal.hotel.example/a"b' "$long" 'https://portal.hotel.example/$(reboot)' \
	'https://user@portal.hotel.example/' 'https:///capport'; do
	n=$((n + 1))
	hook bound "opt114=$(hex "$bad")" dns=192.0.2.53
	check "invalid-$n-not-told-to-daemon" [ "$(last_control)" = "$CTL wan-portal clear" ]
	check "invalid-$n-not-relayed" cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
	check "invalid-$n-logged" [ "$(count "$R/log/syslog" 'daemon.warn.*wan: ignoring DHCP option 114')" = "$n" ]
done
check invalid-long-is-256-bytes [ "${#long}" = 256 ]
check invalid-value-never-logged sh -c "! grep -q 'hotel' '$R/log/syslog'"
hook bound "opt114=$(hex https://ok.example/)0a" dns=192.0.2.53
check invalid-control-byte-rejected [ "$(last_control)" = "$CTL wan-portal clear" ]
hook bound 'opt114=https://portal.hotel.example/a b' dns=192.0.2.53
check invalid-text-form-rejected [ "$(last_control)" = "$CTL wan-portal clear" ]
check invalid-no-wan-portal-file [ ! -e "$R/var/run/lanveil/wan_portal" ]
ok255="https://$(printf 'b%.0s' $(seq 1 247))"
hook bound "opt114=$(hex "$ok255")"
check valid-255-bytes-accepted [ "$(last_control)" = "$CTL wan-portal set $ok255" ]
rc stop >/dev/null 2>&1

# --- (iv) WAN hook: told to the daemon, relayed to the LAN, cleared ----------------
mkroot
odhcpd_old
rc start >/dev/null 2>&1
daemon_up
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
restarts="$(count "$R/log/dnsmasq" restart)"
check hook-bound hook bound "opt114=$(hex "$WAN_URI")" "dns=192.0.2.53 198.51.100.53"
check hook-control-set [ "$(last_control)" = "$CTL wan-portal set $WAN_URI 192.0.2.53 198.51.100.53" ]
check hook-relay-dnsmasq-114 [ "$(opts)" = "114,$WAN_URI" ]
check hook-relay-dhcpv6-103 [ "$(get dhcp.lan.dhcpv6_raw)" = "$(raw_of "$WAN_URI")" ]
check hook-relay-status grep -q "^captive portal URI: $WAN_URI (relayed from DHCP option 114 on wan)$" "$R/var/run/lanveil/capport"
check hook-relay-restarts-dnsmasq [ "$(count "$R/log/dnsmasq" restart)" = $((restarts + 1)) ]
cp "$R/etc/config/dhcp" "$T/dhcp.relayed"
hook renew "opt114=$(hex "$WAN_URI")" "dns=192.0.2.53 198.51.100.53"
check hook-renew-idempotent cmp "$R/etc/config/dhcp" "$T/dhcp.relayed"
check hook-renew-no-restart [ "$(count "$R/log/dnsmasq" restart)" = $((restarts + 1)) ]
lines="$(count "$R/log/control" .)"
env INTERFACE=lan "opt114=$(hex "$WAN_URI")" busybox ash "$R/lib/netifd/dhcp.script" bound
check hook-ignores-non-wan-interface [ "$(count "$R/log/control" .)" = "$lines" ]
check hook-deconfig hook deconfig
check hook-deconfig-control-clear [ "$(last_control)" = "$CTL wan-portal clear" ]
check hook-deconfig-relay-removed cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check hook-deconfig-forgets-uri [ ! -e "$R/var/run/lanveil/wan_portal" ]
hook bound "opt114=$(hex "$WAN_URI")" >/dev/null
hook renew dns=192.0.2.53
check hook-lease-without-114-clears [ "$(last_control)" = "$CTL wan-portal clear" ]
check hook-lease-without-114-relay-removed cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
hook bound "opt114=$(hex urn:ietf:params:capport:unrestricted)"
check hook-unrestricted-urn-clears [ "$(last_control)" = "$CTL wan-portal clear" ]
# The daemon being down must not break the hook.
touch "$R/log/control.fail"
check hook-control-failure-ok hook bound "opt114=$(hex "$WAN_URI")"
check hook-control-failure-still-relays [ "$(opts)" = "114,$WAN_URI" ]
check hook-control-failure-logged grep -q 'could not tell the daemon: wan-portal set failed' "$R/log/syslog"
rm -f "$R/log/control.fail"
# The owner's URI wins over the WAN's (the daemon is still told).
owner "$URI"
rc reload >/dev/null 2>&1
hook bound "opt114=$(hex "$WAN_URI")"
check owner-wins-daemon-still-told [ "$(last_control)" = "$CTL wan-portal set $WAN_URI" ]
check owner-wins-lan-gets-owner-uri [ "$(opts) $(get dhcp.lan.dhcpv6_raw)" = "114,$URI $RAW" ]
uci_ delete lanveil.main.captive_portal_uri
uci_ set lanveil.openwrt.relay_wan_portal=0
uci_ commit lanveil
rc reload >/dev/null 2>&1
check relay-off-no-relay cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check relay-off-no-reqopts [ -z "$(get network.wan.reqopts)" ]
uci_ set lanveil.main.captive_plaintext=1
uci_ commit lanveil
rc reload >/dev/null 2>&1
check captive-plaintext-requests-114 [ "$(get network.wan.reqopts)" = 114 ]
uci_ delete lanveil.main.captive_plaintext
uci_ set lanveil.openwrt.relay_wan_portal=1
uci_ commit lanveil
rc reload >/dev/null 2>&1
check relay-on-again-from-remembered-uri [ "$(opts)" = "114,$WAN_URI" ]
rc stop >/dev/null 2>&1
daemon_down
check hook-stop-dhcp-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"
# Stopped: the hook remembers the URI but calls no daemon and leaves dhcp alone; start relays.
lines="$(count "$R/log/control" .)"
hook bound "opt114=$(hex "$WAN_URI")"
check stopped-hook-leaves-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
check stopped-hook-no-control-call [ "$(count "$R/log/control" .)" = "$lines" ]
daemon_up
rc start >/dev/null 2>&1
check start-relays-remembered-uri [ "$(opts)" = "114,$WAN_URI" ]
check start-tells-daemon-remembered-portal [ "$(tail -n +$((lines + 1)) "$R/log/control" | grep -c "^$CTL wan-portal set $WAN_URI\$")" = 1 ]
rc stop >/dev/null 2>&1

# --- (iv-b) the hook's record: told again to a restarted daemon ----------------------
# The daemon keeps the WAN's portal only in memory, and the ifup that runs the hook also
# runs wan_up (procd's interface trigger), which restarts the daemon: the hook records
# what it told (URI, the lease's DNS servers, the interface) and every start tells it again.
mkroot
odhcpd_old
rc start >/dev/null 2>&1
daemon_up
hook bound "opt114=$(hex "$WAN_URI")" "dns=192.0.2.53 198.51.100.53"
check record-uri-dns-interface [ "$(cat "$R/var/run/lanveil/wan_portal")" = "wan $WAN_URI 192.0.2.53 198.51.100.53" ]
told() { tail -n +$((lines + 1)) "$R/log/control" | grep -c "^$CTL wan-portal $1\$"; }
lines="$(count "$R/log/control" .)"
# wan_up (as in test_init.sh): the old daemon exits 1 s after procd is told to stop it.
"$T/standin/lanveil" 100000 &
OLD_PID=$!
daemon_up "$OLD_PID"
(sleep 1 && daemon_up && kill "$OLD_PID") &
check replay-wan-up rc wan_up wan
check replay-wan-up-done wan_job_done
check replay-wan-up-restarted grep -q '^service delete { "name": "lanveil", "instance": "lanveil" }' "$PROCD_LOG"
check replay-wan-up-tells-portal-and-dns [ "$(told "set $WAN_URI 192.0.2.53 198.51.100.53")" = 1 ]
check replay-wan-up-after-daemon-answers sh -c "tail -n +$((lines + 1)) '$R/log/control' | grep -n . | grep -B1 'wan-portal set' | head -n 1 | grep -q ' status\$'"
check replay-logged grep -q 'wan: captive portal told again to the daemon' "$R/log/syslog"
lines="$(count "$R/log/control" .)"
check replay-restart rc restart
check replay-restart-tells-portal [ "$(told "set $WAN_URI 192.0.2.53 198.51.100.53")" = 1 ]
# The hook ran while the daemon was between processes (no socket): its call was lost; the start tells it.
daemon_down
hook renew "opt114=$(hex "$WAN_URI")" "dns=203.0.113.53"
lines="$(count "$R/log/control" .)"
daemon_up
rc start >/dev/null 2>&1
check replay-lost-call-told-on-start [ "$(told "set $WAN_URI 203.0.113.53")" = 1 ]
# Cleared by the hook: nothing recorded, nothing told.
hook deconfig
check clear-removes-record [ ! -e "$R/var/run/lanveil/wan_portal" ]
lines="$(count "$R/log/control" .)"
rc restart >/dev/null 2>&1
check clear-no-replay [ "$(tail -n +$((lines + 1)) "$R/log/control" | grep -c 'wan-portal')" = 0 ]
# A socket that is not there yet: retried briefly.
hook bound "opt114=$(hex "$WAN_URI")" dns=192.0.2.53
rm -f "$R/var/run/lanveil/daemon/control.sock"
lines="$(count "$R/log/control" .)"
(sleep 0.5 && daemon_up) &
up_pid=$!
busybox ash -c '. "$1" && lanveil_wan_portal_replay' _ "$R/usr/share/lanveil/lanveil.sh"
wait "$up_pid"
check replay-waits-for-socket [ "$(told "set $WAN_URI 192.0.2.53")" = 1 ]
# A daemon that never takes it: 10 tries, one log line, no failure.
touch "$R/log/control.fail"
lines="$(count "$R/log/control" .)"
check replay-failure-ok busybox ash -c '. "$1" && lanveil_wan_portal_replay' _ "$R/usr/share/lanveil/lanveil.sh"
check replay-failure-retried [ "$(told "set $WAN_URI 192.0.2.53")" = 10 ]
check replay-failure-logged-once [ "$(count "$R/log/syslog" 'daemon.warn.*could not tell the daemon the WAN.s captive portal (wan) again')" = 1 ]
rm -f "$R/log/control.fail"
rc stop >/dev/null 2>&1

# --- (iv-c) two DHCP WANs (wan and wwan, a travel router): a lease withdraws only its own portal
mkroot
odhcpd_old
uci_ set network.wwan=interface
uci_ set network.wwan.proto=dhcp
uci_ commit network
rc start >/dev/null 2>&1
daemon_up
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
hook bound INTERFACE=wwan "opt114=$(hex "$WAN_URI")" dns=192.0.2.53
check wwan-portal-set [ "$(last_control)" = "$CTL wan-portal set $WAN_URI 192.0.2.53" ]
lines="$(count "$R/log/control" .)"
hook renew dns=198.51.100.53
check wan-renew-without-114-keeps-wwan-portal [ "$(told clear)" = 0 ]
check wan-renew-keeps-wwan-record [ "$(cut -d' ' -f1 "$R/var/run/lanveil/wan_portal")" = wwan ]
check wan-renew-keeps-relay [ "$(opts)" = "114,$WAN_URI" ]
hook deconfig
hook bound "opt114=$(hex 'https://bad.example/a b')" dns=198.51.100.53
check wan-deconfig-invalid-keep-wwan-portal [ "$(told clear)" = 0 ]
hook renew INTERFACE=wwan dns=192.0.2.53
check wwan-renew-without-114-clears [ "$(last_control)" = "$CTL wan-portal clear" ]
check wwan-renew-without-114-forgets [ ! -e "$R/var/run/lanveil/wan_portal" ]
check wwan-renew-without-114-relay-removed cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
rc stop >/dev/null 2>&1

# --- (v) package removal -------------------------------------------------------------
mkroot
odhcpd_old
owner "$URI" 1800
reorig
rc start >/dev/null 2>&1
daemon_up
hook bound "opt114=$(hex "$WAN_URI")"
make_prerm
check prerm-runs busybox ash "$T/prerm.local"
check prerm-dhcp-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"
check prerm-network-byte-identical cmp "$R/etc/config/network" "$T/network.orig"
check prerm-network-reloaded [ "$(count "$R/log/network" reload)" = 2 ]
check prerm-purges-state [ ! -e "$R/etc/lanveil" ]

# Edited while running: only lanveil's entries go (dhcp and network).
mkroot
odhcpd_old
uci_ add_list dhcp.lan.dhcp_option=6,192.168.1.2
uci_ set dhcp.lan.dhcpv6_raw=00ff0000
uci_ set network.wan.reqopts=121
uci_ commit dhcp
uci_ commit network
owner "$URI" 1800
rc start >/dev/null 2>&1
check edit-start-reqopts-appended [ "$(get network.wan.reqopts)" = "121 114" ]
daemon_up
hook bound "opt114=$(hex "$WAN_URI")"
uci_ set dhcp.lan.leasetime=6h
uci_ add_list dhcp.lan.dhcp_option=42,192.168.1.3
uci_ set network.wan.hostname=travel
uci_ commit dhcp
uci_ commit network
make_prerm
busybox ash "$T/prerm.local" >/dev/null 2>&1
check edit-prerm-keeps-user-options [ "$(opts)" = "6,192.168.1.2|42,192.168.1.3" ]
check edit-prerm-keeps-user-raw [ "$(get dhcp.lan.dhcpv6_raw)" = 00ff0000 ]
check edit-prerm-keeps-user-edit [ "$(get dhcp.lan.leasetime)" = 6h ]
check edit-prerm-no-native [ -z "$(get dhcp.lan.captive_portal_uri)$(get dhcp.lan.ipv6_only_preferred)" ]
check edit-prerm-reqopts-restored [ "$(get network.wan.reqopts)$(get network.wan.hostname)" = 121travel ]

# A list reqopts stays a list.
mkroot
uci_ add_list network.wan.reqopts=121
uci_ commit network
rc start >/dev/null 2>&1
check list-reqopts-add [ "$(uci_ show network.wan.reqopts)" = "network.wan.reqopts='121' '114'" ]
uci_ set network.wan.hostname=x
uci_ set lanveil.openwrt.relay_wan_portal=0
uci_ commit network
uci_ commit lanveil
rc reload >/dev/null 2>&1
check list-reqopts-restore [ "$(uci_ show network.wan.reqopts)" = "network.wan.reqopts='121'" ]

# --- (vi) real dnsmasq and busybox udhcpc over a veth pair -----------------------------
# Router A: what lanveil wrote into dhcp.lan -> dnsmasq lines, as OpenWrt's dnsmasq init
# does (each 'list dhcp_option' value -> dhcp-option=<networkid>,<value>).
mkroot
odhcpd_old
owner "$URI" 1800
rc start >/dev/null 2>&1
{
	echo "interface=lv-srv"
	echo "bind-interfaces"
	echo "port=0"
	echo "dhcp-range=set:lan,10.77.0.50,10.77.0.99,255.255.255.0,1h"
	echo "dhcp-option=lan,6,10.77.0.53"
	uci_ -d '
' get dhcp.lan.dhcp_option | sed 's/^/dhcp-option=lan,/'
} >"$T/dnsmasq.conf"
check real-conf-has-114 grep -qx "dhcp-option=lan,114,$URI" "$T/dnsmasq.conf"
check real-conf-has-108 grep -qx "dhcp-option=lan,108,00:00:07:08" "$T/dnsmasq.conf"
rc stop >/dev/null 2>&1
if [ ! -x "$DNSMASQ" ]; then
	fail real-dnsmasq "dnsmasq not installed (Debian: dnsmasq-base)"
else
	"$UNSHARE" --net sleep 120 &
	nspid=$!
	sleep 0.3
	"$IPCMD" link add lv-srv type veth peer name lv-cli
	"$IPCMD" link set lv-cli netns "$nspid"
	"$IPCMD" addr add 10.77.0.1/24 dev lv-srv
	"$IPCMD" link set lv-srv up
	"$NSENTER" -t "$nspid" -n "$IPCMD" link set lv-cli up
	"$DNSMASQ" --no-daemon --conf-file="$T/dnsmasq.conf" --user=root --pid-file= --dhcp-leasefile="$T/leases" \
		--log-facility=- --log-dhcp >"$T/dnsmasq.log" 2>&1 &
	dnsmasq_pid=$!
	sleep 0.5
	printf '#!/bin/sh\nenv > %s/udhcpc-$1.env\n' "$T" >"$T/envdump.sh"
	chmod +x "$T/envdump.sh"
	"$NSENTER" -t "$nspid" -n busybox udhcpc -i lv-cli -f -q -n -t 5 -T 1 -O 108 -O 114 -s "$T/envdump.sh" >"$T/udhcpc.log" 2>&1
	check real-udhcpc-bound [ -f "$T/udhcpc-bound.env" ]
	check real-opt114-hex-of-uri grep -qx "opt114=$(hex "$URI")" "$T/udhcpc-bound.env"
	check real-opt108-1800 grep -qx "opt108=00000708" "$T/udhcpc-bound.env"
	rm -f "$T"/udhcpc-*.env
	"$NSENTER" -t "$nspid" -n busybox udhcpc -i lv-cli -f -q -n -t 5 -T 1 -s "$T/envdump.sh" >>"$T/udhcpc.log" 2>&1
	check real-unrequested-not-sent sh -c "! grep -q '^opt1[01][48]=' '$T/udhcpc-bound.env'"
	# Router B (no owner URI, relay on) is router A's DHCP client on its WAN: real
	# udhcpc runs netifd's dhcp.script (double) and so lanveil's hook.
	mkroot
	odhcpd_old
	rc start >/dev/null 2>&1
	daemon_up
	"$NSENTER" -t "$nspid" -n env INTERFACE=wan busybox udhcpc -i lv-cli -f -q -n -t 5 -T 1 -O 114 \
		-s "$R/lib/netifd/dhcp.script" >>"$T/udhcpc.log" 2>&1
	check real-hook-told-daemon [ "$(last_control)" = "$CTL wan-portal set $URI 10.77.0.53" ]
	check real-hook-relayed [ "$(opts) $(get dhcp.lan.dhcpv6_raw)" = "114,$URI $RAW" ]
	rc stop >/dev/null 2>&1
	check real-router-b-stop-byte-identical cmp "$R/etc/config/dhcp" "$ORIG"
	kill "$dnsmasq_pid" "$nspid" 2>/dev/null
	wait "$dnsmasq_pid" "$nspid" 2>/dev/null
fi

finish
