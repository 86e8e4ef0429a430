#!/bin/bash
# The init script and its dnsmasq/firewall wiring, run under busybox ash (with
# busybox's own sed/awk/grep/cmp, as on OpenWrt) against the real uci CLI and
# procd/rc.common test doubles that record what procd would receive. Runs in a
# private network namespace (real nft, throwaway ruleset) and mount namespace
# (a private /tmp/.uci, so uci's default save dir is a scratch one; only that
# directory is overmounted: the checkout itself may live under /tmp).
# shellcheck source-path=SCRIPTDIR
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
enter_namespaces "$@"
# Tools outside the busybox-only PATH (the real-daemon section at the end).
DNSMASQ="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
DIG="$(command -v dig || echo /usr/bin/dig)"
IPCMD="$(command -v ip || echo /usr/sbin/ip)"
sandbox init

servers() { uci_ -d ' ' get dhcp.@dnsmasq[0].server; }
status_has() { rc status 2>/dev/null | grep -q -- "$1"; }
status_lacks() { ! status_has "$1"; }

# --- start --------------------------------------------------------------------
mkroot
check start-succeeds rc start
check procd-command [ "$(last_set 'j["instances"]["lanveil"]["command"]')" = "['/usr/sbin/lanveil', '--config', '/etc/config/lanveil', '--last-good', '/etc/lanveil/daemon/last-good', '--wan-portal-record', '/var/run/lanveil/wan_portal']" ]
check procd-user-unprivileged [ "$(last_set '(j["instances"]["lanveil"]["user"], j["instances"]["lanveil"]["group"])')" = "('lanveil', 'lanveil')" ]
check procd-respawn [ "$(last_set 'j["instances"]["lanveil"]["respawn"]')" = "['3600', '5', '5']" ]
check procd-pidfile-for-guard [ "$(last_set 'j["instances"]["lanveil"]["pidfile"]')" = "$R/var/run/lanveil/daemon.pid" ]
check procd-guard-instance-root [ "$(last_set '(j["instances"]["guard"]["command"], "user" in j["instances"]["guard"], j["instances"]["guard"]["respawn"])')" = "(['/usr/libexec/lanveil-guard'], False, ['3600', '5', '5'])" ]
check status-up status_has '^lanveil is running; dnsmasq forwards to it.$'
check procd-reload-signal-hup [ "$(last_set 'j["instances"]["lanveil"]["reload_signal"]')" = 1 ]
# procd signals an instance only when a parameter changes: the config file's checksum is one.
check procd-watches-config-file [ "$(last_set 'list(j["instances"]["lanveil"]["file"])')" = "['/etc/config/lanveil']" ]
check procd-logs-to-syslog [ "$(last_set '(j["instances"]["lanveil"]["stdout"], j["instances"]["lanveil"]["stderr"], j["instances"]["lanveil"]["no_new_privs"])')" = "(True, True, True)" ]
check procd-reload-trigger [ "$(last_set '[t for t in j["triggers"] if t[0] == "config.change"][0][1][1][2]')" = lanveil ]
# A dhcp change (LuCI's apply, reload_config) wires dnsmasq again at once.
check procd-dhcp-rewire-trigger [ "$(last_set '[t[1][2] for t in j["triggers"] if t[0] == "config.change" and t[1][1][2] == "dhcp"][0]')" = "['run_script', '/etc/init.d/lanveil', 'rewire']" ]
check procd-wan-up-trigger [ "$(last_set '[t[1][2] for t in j["triggers"] if t[0] == "interface.*.up" and t[1][1][2] == "wan"][0]')" = "['run_script', '/etc/init.d/lanveil', 'wan_up', 'wan']" ]
check procd-lan-up-refresh-trigger [ "$(last_set '[t[1][2][2] for t in j["triggers"] if t[1][1][2] == "lan"][0]')" = reload ]
check dnsmasq-servers-rewired [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1" ]
check dnsmasq-noresolv-localuse [ "$(uci_ get dhcp.@dnsmasq[0].noresolv)$(uci_ get dhcp.@dnsmasq[0].localuse)" = 11 ]
check dnsmasq-restarted-once [ "$(count "$R/log/dnsmasq" restart)" = 1 ]
check state-saved cmp "$R/etc/lanveil/dnsmasq/dhcp.orig" "$ORIG"
check daemon-state-dir-owned-by-user [ "$(stat -c '%u:%g %a' "$R/etc/lanveil/daemon")" = "5453:5453 700" ]
check control-dir-owned-by-user [ "$(stat -c '%u:%g %a' "$R/var/run/lanveil/daemon")" = "5453:5453 700" ]
check run-dir-stays-root [ "$(stat -c '%u' "$R/var/run/lanveil")" = 0 ]
check nft-table-loaded nft list table inet lanveil
check nft-redirect-on-lan-device sh -c "nft list chain inet lanveil dstnat | grep -q 'iifname \"br-lan\" meta l4proto { tcp, udp } th dport 53 fib daddr type != local counter packets 0 bytes 0 redirect to :53'"
check nft-no-dot-block-by-default sh -c "! nft list chain inet lanveil forward 2>/dev/null"
# The leak guard: nothing dnsmasq (uid 453) sends leaves by the WAN zone's devices, but to
# the owner's domain-scoped server the wiring kept (/corp.example/10.0.0.1).
check nft-leak-guard-drops-dnsmasq-to-wan sh -c "nft list chain inet lanveil_leak output | grep -q 'meta skuid 453 oifname \"wan\" meta l4proto udp counter packets 0 bytes 0 drop'"
check nft-leak-guard-resets-dnsmasq-tcp-to-wan sh -c "nft list chain inet lanveil_leak output | grep -q 'meta skuid 453 oifname \"wan\" meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset'"
check nft-leak-guard-owner-server-exempt sh -c "nft list chain inet lanveil_leak output | grep -q 'ip daddr 10.0.0.1 accept'"
check nft-leak-guard-exempts-only-that [ "$(nft list chain inet lanveil_leak output | grep -c 'daddr .* accept')" = 1 ]
check nft-capture-table-has-no-leak-rules sh -c "! nft list table inet lanveil | grep -q skuid"
check status-leak-guard-on status_has '^Leak guard: on '
# Kept on flash for the next boot (lanveil_early loads it before the network).
check leak-guard-kept-for-boot cmp "$R/etc/lanveil/leak_guard.nft" "$R/var/run/lanveil/lanveil_leak.nft"

# --- start again (reload, boot after a crash): idempotent -------------------------
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
check restart-is-idempotent rc reload
check reload-leaves-dhcp-alone cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check reload-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = 1 ]
check reload-keeps-original cmp "$R/etc/lanveil/dnsmasq/dhcp.orig" "$ORIG"

# --- wan_up restarts only the daemon --------------------------------------------
# The daemon procd is told to stop: a second stand-in that exits 1 s later, when
# the pidfile names the first one again (the "new" process procd starts).
"$T/standin/lanveil" 100000 &
OLD_PID=$!
daemon_up "$OLD_PID"
(sleep 1 && daemon_up && kill "$OLD_PID") &
check wan-up rc wan_up
# The restart itself runs detached (procd runs triggers one at a time: see below).
check wan-up-restart-done wan_job_done
check wan-up-waited-for-old-daemon sh -c "! kill -0 $OLD_PID 2>/dev/null"
# Real procd only signals an instance with a reload_signal when its parameters
# change (test_router.sh shows it): wan_up deletes the daemon's instance, then starts.
check wan-up-deletes-daemon-instance grep -q '^service delete { "name": "lanveil", "instance": "lanveil" }' "$PROCD_LOG"
check wan-up-keeps-guard-instance sh -c "! grep -q '\"instance\": \"guard\"' '$PROCD_LOG'"
check wan-up-sets-epoch [ -n "$(last_set 'j["instances"]["lanveil"]["env"]["LANVEIL_WAN_EPOCH"]')" ]
check wan-up-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = 1 ]
# wan6 right after wan (one procd trigger each, naming its interface): the restart just made
# serves both, counted from when it finished. Here it took 10 s (a slow router; recorded so
# in wan_done) and wan6's clock says 1 s after it finished: 11 s after wan's trigger (also
# without a wan_done).
check wan-up-done-recorded sh -c "read -r e d <'$R/var/run/lanveil/wan_done' && [ \"\$e\" = \"\$(cat '$R/var/run/lanveil/wan_epoch')\" ] && [ \"\$d\" -ge \"\$e\" ]"
if read -r wan_e _ <"$R/var/run/lanveil/wan_done"; then
	echo "$wan_e $((wan_e + 10))" >"$R/var/run/lanveil/wan_done"
fi
mkdir -p "$T/clock"
# shellcheck disable=SC2016  # the stand-in's own $1, $@ and arithmetic
printf '#!/bin/sh\nif [ "$1" = +%%s ]; then read -r e d <"%s" 2>/dev/null || { read -r e <"%s" && d=$((e + 10)); }; echo $((d + 1)); else exec busybox date "$@"; fi\n' \
	"$R/var/run/lanveil/wan_done" "$R/var/run/lanveil/wan_epoch" >"$T/clock/date"
chmod +x "$T/clock/date"
check wan6-up-right-after env PATH="$T/clock:$PATH" busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" wan_up wan6
check wan6-up-served-by-restart grep -q 'daemon.info wan6 up: lanveil was restarted for manual 1 s ago; not again' "$R/log/syslog"
check wan6-up-no-second-restart [ "$(grep -c '^service delete { "name": "lanveil", "instance": "lanveil" }' "$PROCD_LOG")" = 1 ]

# --- stop restores byte for byte ---------------------------------------------------
check stop-succeeds rc stop
check stop-restores-dhcp-byte-for-byte cmp "$R/etc/config/dhcp" "$ORIG"
check stop-removes-nft-table sh -c '! nft list table inet lanveil 2>/dev/null'
check stop-forgets-dnsmasq-state [ ! -e "$R/etc/lanveil/dnsmasq" ]
check stop-forgets-saved-leak-guard [ ! -e "$R/etc/lanveil/leak_guard.nft" ]
check stop-keeps-daemon-state [ -d "$R/etc/lanveil/daemon" ]
check stop-deletes-procd-service [ "$(grep -c '^service delete { "name": "lanveil" }' "$PROCD_LOG")" = 1 ]
check stop-restarts-dnsmasq [ "$(count "$R/log/dnsmasq" restart)" = 2 ]
check stop-twice-is-noop rc stop
check stop-twice-leaves-dhcp cmp "$R/etc/config/dhcp" "$ORIG"

# --- user edits dhcp while lanveil runs: undo only lanveil's part -----------------
mkroot
rc start >/dev/null 2>&1
uci_ set dhcp.lan.leasetime=6h
uci_ add_list dhcp.@dnsmasq[0].server=1.1.1.1
uci_ add_list dhcp.@dnsmasq[0].server=/home.arpa/192.168.1.2
uci_ commit dhcp
rc reload >/dev/null 2>&1
check edit-reload-drops-new-plain-upstream [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1 /home.arpa/192.168.1.2" ]
rc stop >/dev/null 2>&1
check edit-stop-keeps-user-edit [ "$(uci_ get dhcp.lan.leasetime)" = 6h ]
check edit-stop-restores-servers [ "$(servers)" = "8.8.8.8 9.9.9.9#9953 1.1.1.1 /corp.example/10.0.0.1 /home.arpa/192.168.1.2" ]
check edit-stop-restores-noresolv-localuse [ -z "$(uci_ get dhcp.@dnsmasq[0].noresolv)$(uci_ get dhcp.@dnsmasq[0].localuse)" ]

# --- the owner edits dhcp while lanveil runs: procd's dhcp trigger wires again ----------
mkroot
rc start >/dev/null 2>&1
n_restart="$(count "$R/log/dnsmasq" restart)"
uci_ add_list dhcp.@dnsmasq[0].server=1.1.1.1
uci_ set dhcp.@dnsmasq[0].noresolv=0
uci_ commit dhcp
check rewire-runs rc rewire
check rewire-drops-plain-upstream [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1" ]
check rewire-noresolv-back [ "$(uci_ get dhcp.@dnsmasq[0].noresolv)" = 1 ]
check rewire-restarts-dnsmasq [ "$(count "$R/log/dnsmasq" restart)" = $((n_restart + 1)) ]
cp "$R/etc/config/dhcp" "$T/dhcp.rewired"
rc rewire >/dev/null 2>&1
check rewire-again-leaves-dhcp cmp "$R/etc/config/dhcp" "$T/dhcp.rewired"
check rewire-again-no-restart [ "$(count "$R/log/dnsmasq" restart)" = $((n_restart + 1)) ]
rc stop >/dev/null 2>&1
check rewire-stop-puts-owner-server-back [ "$(servers)" = "8.8.8.8 9.9.9.9#9953 1.1.1.1 /corp.example/10.0.0.1" ]
cp "$R/etc/config/dhcp" "$T/dhcp.stopped"
rc rewire >/dev/null 2>&1
check rewire-when-stopped-does-nothing cmp "$R/etc/config/dhcp" "$T/dhcp.stopped"

# --- anonymous dnsmasq sections: the undo follows the section, not its uci id -------------
# uci names an anonymous section by its position in the file (cfg01411c, cfg02411c: libuci's
# uci_fixup_section, at parse time): when the owner deletes or reorders sections while lanveil
# is wired, the ids move to other sections. Two dnsmasq instances with their own upstreams.
multi_root() {
	mkroot
	cp "$TESTS_DIR/fixtures/multi/dhcp" "$R/etc/config/dhcp"
	rm -rf "$T/multi.orig"
	mkdir -p "$T/multi.orig"
	cp "$R/etc/config/dhcp" "$T/multi.orig/dhcp"
	cp "$R/etc/config/dhcp" "$ORIG"
}
# A section's options and values, its name left out (uci show, lines sorted: wiring and undo
# move the list 'server' to the end of the section).
sect() { # CONFDIR SECTION
	uci -q -c "$1" show "dhcp.$2" | sed 's/^dhcp\.[A-Za-z0-9_]*/dhcp.S/' | sort
}
same_typed() { # TYPE NOW_INDEX ORIG_INDEX ORIG_CONFDIR: the live section holds exactly the original's values
	local a b
	a="$(sect "$R/etc/config" "@$1[$2]")"
	b="$(sect "$4" "@$1[$3]")"
	[ "$a" = "$b" ] || { printf 'now:\n%s\nexpected (original @%s[%s]):\n%s\n' "$a" "$1" "$3" "$b"; return 1; }
}
same_sect() { same_typed dnsmasq "$1" "$2" "${3:-$T/multi.orig}"; } # NOW_INDEX ORIG_INDEX [ORIG_CONFDIR]
nothing_of_lanveil() { # no loopback server, no marker, in the whole file
	! grep -n -e '127.0.0.1#5453' -e lanveil "$R/etc/config/dhcp"
}
# A fresh ROOT (multi_root, anon_root) with lanveil started, then the owner deletes the first
# TYPE section (LuCI's delete: uci delete + commit): the second takes its uci id.
first_deleted() { # ROOT TYPE
	"$1"
	rc start >/dev/null 2>&1
	uci_ delete "dhcp.@$2[0]"
	uci_ commit dhcp
}
multi_root
rc start >/dev/null 2>&1
check multi-both-wired [ "$(uci_ -d ' ' get dhcp.@dnsmasq[0].server)|$(uci_ -d ' ' get dhcp.@dnsmasq[1].server)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1|127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /guest.example/10.9.9.9" ]
# Each section carries the key its saved settings are filed under (dnsmasq ignores it).
check multi-sections-marked [ "$(uci_ get dhcp.@dnsmasq[0].lanveil_saved) $(uci_ get dhcp.@dnsmasq[1].lanveil_saved)" = "dnsmasq-1 dnsmasq-2" ]
check multi-rewire-idempotent sh -c "cp '$R/etc/config/dhcp' '$T/multi.wired' && busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' rewire && cmp '$R/etc/config/dhcp' '$T/multi.wired'"
# Untouched: the pristine path still puts the original back byte for byte.
rc stop >/dev/null 2>&1
check multi-stop-byte-for-byte cmp "$R/etc/config/dhcp" "$ORIG"
# The owner deletes the first instance (LuCI's delete: uci delete + commit) and stops lanveil.
first_deleted multi_root dnsmasq
rc stop >/dev/null 2>&1
check multi-delete-first-stop-restores-second same_sect 0 1
check multi-delete-first-stop-nothing-left nothing_of_lanveil
check multi-delete-first-stop-forgets-state [ ! -e "$R/etc/lanveil/dnsmasq" ]
# ... the same with procd's dhcp trigger in between (LuCI's apply runs rewire).
first_deleted multi_root dnsmasq
rc rewire >/dev/null 2>&1
check multi-delete-first-rewire-keeps-wiring [ "$(uci_ -d ' ' get dhcp.@dnsmasq[0].server)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /guest.example/10.9.9.9" ]
rc stop >/dev/null 2>&1
check multi-delete-first-rewire-stop-restores-second same_sect 0 1
check multi-delete-first-rewire-stop-nothing-left nothing_of_lanveil
# The owner moves the second instance to the top (uci reorder: the ids swap sections).
multi_root
rc start >/dev/null 2>&1
uci_ reorder dhcp.@dnsmasq[1]=0
uci_ commit dhcp
rc rewire >/dev/null 2>&1
rc stop >/dev/null 2>&1
both_swapped() { same_sect 0 1 && same_sect 1 0; }
check multi-reorder-stop-restores-both both_swapped
check multi-reorder-stop-nothing-left nothing_of_lanveil
# The owner deletes the first and adds a new instance in second place (the id the second had)
# while wired: the new one is saved with its own values and gets them back.
multi_root
rc start >/dev/null 2>&1
uci_ delete dhcp.@dnsmasq[0]
uci_ add dhcp dnsmasq >/dev/null
uci_ set dhcp.@dnsmasq[-1].domain=iot
uci_ add_list dhcp.@dnsmasq[-1].server=192.0.2.53
uci_ reorder dhcp.@dnsmasq[-1]=1
uci_ commit dhcp
rm -rf "$T/multi.added"
mkdir -p "$T/multi.added"
cp "$R/etc/config/dhcp" "$T/multi.added/dhcp"
rc rewire >/dev/null 2>&1
check multi-added-wired [ "$(uci_ -d ' ' get dhcp.@dnsmasq[1].server)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/" ]
rc stop >/dev/null 2>&1
check multi-added-stop-restores-second same_sect 0 1
check multi-added-stop-restores-new same_sect 1 1 "$T/multi.added"
check multi-added-stop-nothing-left nothing_of_lanveil
# Saved by an older lanveil (keyed by uci id, no option in the sections): the next wiring
# re-files each section's values under a key of its own, now carried by the section, so a
# deletion after that still restores the right section.
legacy_multi() {
	multi_root
	rc start >/dev/null 2>&1
	sed -i -e 's/^dnsmasq-1\t/cfg01411c\t/' -e 's/^dnsmasq-2\t/cfg02411c\t/' "$R/etc/lanveil/dnsmasq/dnsmasq.state"
	uci_ delete dhcp.@dnsmasq[0].lanveil_saved
	uci_ delete dhcp.@dnsmasq[1].lanveil_saved
	uci_ commit dhcp
}
legacy_multi
# Stopped at once (no wiring in between): found by the ids.
rc stop >/dev/null 2>&1
check multi-legacy-stop-at-once-restores-first same_sect 0 0
check multi-legacy-stop-at-once-restores-second same_sect 1 1
check multi-legacy-stop-at-once-nothing-left nothing_of_lanveil
legacy_multi
rc reload >/dev/null 2>&1
check multi-legacy-ids-refiled [ "$(uci_ get dhcp.@dnsmasq[0].lanveil_saved) $(uci_ get dhcp.@dnsmasq[1].lanveil_saved)" = "dnsmasq-1 dnsmasq-2" ]
check multi-legacy-state-rekeyed [ "$(cut -f1 "$R/etc/lanveil/dnsmasq/dnsmasq.state" | sort -u | tr '\n' ' ')" = "dnsmasq-1 dnsmasq-2 " ]
uci_ delete dhcp.@dnsmasq[0]
uci_ commit dhcp
rc stop >/dev/null 2>&1
check multi-legacy-delete-first-stop-restores-second same_sect 0 1
check multi-legacy-nothing-left nothing_of_lanveil
# ... and a new section without the option that later takes the first one's id (deleted; the
# new one put at the top of the file) is not taken for it: stop leaves it as the owner made it.
legacy_multi
rc reload >/dev/null 2>&1
uci_ delete dhcp.@dnsmasq[0]
uci_ add dhcp dnsmasq >/dev/null
uci_ set dhcp.@dnsmasq[-1].domain=new.example
uci_ reorder dhcp.@dnsmasq[-1]=0
uci_ commit dhcp
check multi-legacy-new-section-takes-old-id [ "$(uci_ -X show dhcp | sed -n "s/^dhcp\.\(cfg[0-9a-f]*\)\.domain='new.example'$/\1/p")" = cfg01411c ]
rc stop >/dev/null 2>&1
check multi-legacy-new-section-untouched [ "$(uci_ show dhcp.@dnsmasq[0] | sed 1d | tr '\n' ' ')" = "dhcp.cfg01411c.domain='new.example' " ]
check multi-legacy-new-section-second-restored same_sect 1 1
check multi-legacy-new-section-nothing-left nothing_of_lanveil
# The owner removes the option from a section: its saved values cannot be found, so nothing
# is guessed: only lanveil's servers come out (no loopback left), and the log says so.
multi_root
rc start >/dev/null 2>&1
uci_ delete dhcp.@dnsmasq[1].lanveil_saved
uci_ commit dhcp
rc stop >/dev/null 2>&1
check multi-unkeyed-first-restored same_sect 0 0
check multi-unkeyed-only-lanveils-servers-out [ "$(uci_ -d ' ' get dhcp.@dnsmasq[1].server)" = /guest.example/10.9.9.9 ]
check multi-unkeyed-nothing-left nothing_of_lanveil
check multi-unkeyed-logged grep -q 'daemon.warn.*no saved dnsmasq settings for this section' "$R/log/syslog"
# A section copied from a wired one (the block pasted in an editor, without the option): it
# is saved as new, without lanveil's servers, which stop would otherwise put back.
multi_root
rc start >/dev/null 2>&1
uci_ add dhcp dnsmasq >/dev/null
for v in 127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /copy.example/10.9.9.8; do
	uci_ add_list dhcp.@dnsmasq[-1].server="$v"
done
uci_ set dhcp.@dnsmasq[-1].domain=copy
uci_ commit dhcp
rc rewire >/dev/null 2>&1
rc stop >/dev/null 2>&1
check multi-copied-gets-only-its-own [ "$(uci_ -d ' ' get dhcp.@dnsmasq[2].server)" = /copy.example/10.9.9.8 ]
both_kept() { same_sect 0 0 && same_sect 1 1; }
check multi-copied-others-restored both_kept
check multi-copied-nothing-left nothing_of_lanveil

# --- anonymous dhcp sections: the LAN signals' undo follows the section, not its uci id -----
# As for dnsmasq above: lanveil's LAN signals in an anonymous 'config dhcp' are filed under the
# key the section carries (option lanveil_saved 'dhcp-N'), so a deleted or reordered section
# does not hand its record to the one that takes its id. Fixture: fixtures/anon/dhcp (guest
# first, without RA so without 108; lan second, with the owner's dhcpv6_raw).
CP_URI=https://gw.example.lan/portal
CP_RAW="$("$PY" -c 'import sys; u = sys.argv[1].encode(); print("0067%04x" % len(u) + u.hex())' "$CP_URI")"
anon_root() {
	mkroot
	cp "$TESTS_DIR/fixtures/anon/dhcp" "$R/etc/config/dhcp"
	printf 'odhcpd double (24.10)\ndhcpv6_raw\n' >"$R/usr/sbin/odhcpd"
	uci_ set lanveil.main.captive_portal_uri="$CP_URI"
	uci_ set lanveil.main.v6only_wait=1800
	uci_ set lanveil.main.dns64_prefix=64:ff9b::/96
	uci_ add_list lanveil.openwrt.force_dns_zone=guest
	uci_ commit lanveil
	rm -rf "$T/anon.orig"
	mkdir -p "$T/anon.orig"
	cp "$R/etc/config/dhcp" "$T/anon.orig/dhcp"
	cp "$R/etc/config/dhcp" "$ORIG"
}
same_dhcp() { same_typed dhcp "$1" "$2" "${3:-$T/anon.orig}"; } # NOW_INDEX ORIG_INDEX [ORIG_CONFDIR]
signals() { echo "$(uci_ -d '|' get "dhcp.@dhcp[$1].dhcp_option") $(uci_ get "dhcp.@dhcp[$1].dhcpv6_raw")"; }
GUEST_WIRED="6,192.168.2.1|114,$CP_URI $CP_RAW"
LAN_WIRED="114,$CP_URI|108,00:00:07:08 00ff0000$CP_RAW"
no_signals_left() { # nothing of lanveil's LAN signals (or its option) in the whole file, comments aside
	! grep -v '^#' "$R/etc/config/dhcp" | grep -n -e lanveil -e gw.example.lan -e 108, -e 0067
}
cap_state() { cut -f1,2 "$R/etc/lanveil/dnsmasq/dnsmasq.state" | grep '	cap_' | cut -f1 | sort -u | oneline; }
oneline() { tr '\n' ' ' | sed 's/ $//'; }
anon_root
rc start >/dev/null 2>&1
check anon-signals-applied [ "$(signals 0)|$(signals 1)" = "$GUEST_WIRED|$LAN_WIRED" ]
check anon-sections-marked [ "$(uci_ get dhcp.@dhcp[0].lanveil_saved) $(uci_ get dhcp.@dhcp[1].lanveil_saved)" = "dhcp-1 dhcp-2" ]
check anon-state-keyed [ "$(cap_state)" = "dhcp-1 dhcp-2" ]
check anon-rewire-idempotent sh -c "cp '$R/etc/config/dhcp' '$T/anon.wired' && busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' rewire && cmp '$R/etc/config/dhcp' '$T/anon.wired'"
rc stop >/dev/null 2>&1
check anon-stop-byte-for-byte cmp "$R/etc/config/dhcp" "$ORIG"
# The owner deletes the first section (the second takes its id) and stops lanveil.
first_deleted anon_root dhcp
rc stop >/dev/null 2>&1
check anon-delete-first-stop-restores-second same_dhcp 0 1
check anon-delete-first-stop-nothing-left no_signals_left
# ... with procd's dhcp trigger in between: the deleted section's record is dropped, the other
# keeps its signals (not doubled), stop restores it; wiring again and stopping is exact.
first_deleted anon_root dhcp
rc rewire >/dev/null 2>&1
check anon-delete-first-rewire-keeps-signals [ "$(signals 0)" = "$LAN_WIRED" ]
check anon-delete-first-rewire-drops-deleted [ "$(cap_state)" = dhcp-2 ]
rc stop >/dev/null 2>&1
check anon-delete-first-rewire-stop-restores-second same_dhcp 0 1
check anon-delete-first-rewire-stop-nothing-left no_signals_left
cp "$R/etc/config/dhcp" "$T/anon.deleted"
rc start >/dev/null 2>&1
check anon-delete-first-rewired-again [ "$(signals 0)" = "$LAN_WIRED" ]
rc stop >/dev/null 2>&1
check anon-delete-first-rewired-stop-exact cmp "$R/etc/config/dhcp" "$T/anon.deleted"
# The owner moves the second section to the top (the ids swap sections).
anon_root
rc start >/dev/null 2>&1
uci_ reorder dhcp.@dhcp[1]=0
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check anon-reorder-rewire-keeps-signals [ "$(signals 0)|$(signals 1)" = "$LAN_WIRED|$GUEST_WIRED" ]
rc stop >/dev/null 2>&1
anon_swapped() { same_dhcp 0 1 && same_dhcp 1 0; }
check anon-reorder-stop-restores-both anon_swapped
check anon-reorder-stop-nothing-left no_signals_left
# Filed by an older lanveil under the uci ids (no option in the sections). Stopped at once: the
# ids still name the sections they did.
legacy_state() {
	local ids
	ids="$(uci_ -X show dhcp | sed -n 's/^dhcp\.\(cfg[0-9a-f]*\)=dhcp$/\1/p' | oneline)"
	sed -i -e "s/^dhcp-1	/${ids% *}	/" -e "s/^dhcp-2	/${ids#* }	/" "$R/etc/lanveil/dnsmasq/dnsmasq.state"
	uci_ delete dhcp.@dhcp[0].lanveil_saved
	uci_ delete dhcp.@dhcp[1].lanveil_saved
	uci_ commit dhcp
}
anon_root
rc start >/dev/null 2>&1
legacy_state
check anon-legacy-state-by-id [ "$(cap_state)" = "$(uci_ -X show dhcp | sed -n 's/^dhcp\.\(cfg[0-9a-f]*\)=dhcp$/\1/p' | oneline)" ]
rc stop >/dev/null 2>&1
anon_both() { same_dhcp 0 0 && same_dhcp 1 1; }
check anon-legacy-stop-restores-both anon_both
check anon-legacy-stop-nothing-left no_signals_left
# The next wiring re-files them under keys the sections carry: a deletion after that is safe.
anon_root
rc start >/dev/null 2>&1
legacy_state
rc reload >/dev/null 2>&1
check anon-legacy-refiled [ "$(uci_ get dhcp.@dhcp[0].lanveil_saved) $(uci_ get dhcp.@dhcp[1].lanveil_saved)|$(cap_state)" = "dhcp-1 dhcp-2|dhcp-1 dhcp-2" ]
check anon-legacy-refiled-signals-kept [ "$(signals 0)|$(signals 1)" = "$GUEST_WIRED|$LAN_WIRED" ]
uci_ delete dhcp.@dhcp[0]
uci_ commit dhcp
rc stop >/dev/null 2>&1
check anon-legacy-delete-first-stop-restores-second same_dhcp 0 1
check anon-legacy-delete-first-nothing-left no_signals_left
# The owner removes the option from the second section: nothing is guessed. Its record is
# forgotten, its values are left to the owner (the log says so), the first is restored exactly.
anon_root
rc start >/dev/null 2>&1
uci_ delete dhcp.@dhcp[1].lanveil_saved
uci_ commit dhcp
rm -rf "$T/anon.unkeyed"
mkdir -p "$T/anon.unkeyed"
cp "$R/etc/config/dhcp" "$T/anon.unkeyed/dhcp"
rc stop >/dev/null 2>&1
check anon-unkeyed-first-restored same_dhcp 0 0
check anon-unkeyed-second-left same_dhcp 1 1 "$T/anon.unkeyed"
check anon-unkeyed-no-option-left sh -c "! grep -n lanveil_saved '$R/etc/config/dhcp'"
check anon-unkeyed-logged grep -q "daemon.warn.*dhcp.cfg03ad04 holds LAN signal values that lanveil added to a section it cannot find" "$R/log/syslog"
# ... wired again before the stop: its option 103 is not appended a second time.
anon_root
rc start >/dev/null 2>&1
uci_ delete dhcp.@dhcp[1].lanveil_saved
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check anon-unkeyed-rewire-not-doubled [ "$(signals 1)" = "$LAN_WIRED" ]
rc stop >/dev/null 2>&1
check anon-unkeyed-rewire-first-restored same_dhcp 0 0
# A section copied with its option (the block pasted in an editor) into a network outside the
# LAN: the copy gets its own key, lanveil's values come out of it, the original stays wired.
anon_root
rc start >/dev/null 2>&1
uci_ add dhcp dhcp >/dev/null
uci_ set dhcp.@dhcp[-1].interface=iot
uci_ add_list dhcp.@dhcp[-1].dhcp_option="114,$CP_URI"
uci_ add_list dhcp.@dhcp[-1].dhcp_option=108,00:00:07:08
uci_ set dhcp.@dhcp[-1].dhcpv6_raw="00ff0000$CP_RAW"
uci_ set dhcp.@dhcp[-1].lanveil_saved="$(uci_ get dhcp.@dhcp[1].lanveil_saved)"
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check anon-copy-out-of-lan-cleaned [ "$(signals 3)|$(uci_ get dhcp.@dhcp[3].lanveil_saved)" = " 00ff0000|" ]
check anon-copy-original-still-wired [ "$(signals 1)|$(uci_ get dhcp.@dhcp[1].lanveil_saved)" = "$LAN_WIRED|dhcp-2" ]
rc stop >/dev/null 2>&1
check anon-copy-stop-restores-originals anon_both
check anon-copy-stop-nothing-left no_signals_left
# A named section (OpenWrt's 'lan') is keyed by its name, which never moves: no option added.
mkroot
printf 'odhcpd double (24.10)\ndhcpv6_raw\n' >"$R/usr/sbin/odhcpd"
uci_ set lanveil.main.captive_portal_uri="$CP_URI"
uci_ commit lanveil
rc start >/dev/null 2>&1
check named-keyed-by-name [ "$(uci_ get dhcp.lan.dhcpv6_raw)|$(uci_ get dhcp.lan.lanveil_saved)|$(cap_state)" = "$CP_RAW||lan" ]
uci_ set dhcp.lan.leasetime=6h
uci_ commit dhcp
rc stop >/dev/null 2>&1
check named-edited-stop-restores [ "$(uci_ get dhcp.lan.leasetime)|$(uci_ get dhcp.lan.dhcpv6_raw)|$(uci_ get dhcp.lan.dhcp_option)" = "6h||" ]

# --- changes the user staged (uncommitted) are neither committed nor lost ----------
mkroot
uci_ set dhcp.lan.leasetime=1h
rc start >/dev/null 2>&1
rc stop >/dev/null 2>&1
check staged-change-not-committed cmp "$R/etc/config/dhcp" "$ORIG"
check staged-change-still-staged [ "$(uci_ changes dhcp)" = "dhcp.lan.leasetime='1h'" ]

# --- options ---------------------------------------------------------------------
mkroot
uci_ set lanveil.openwrt.dnsmasq=0
uci_ set lanveil.openwrt.force_dns=0
uci_ commit lanveil
rc start >/dev/null 2>&1
check dnsmasq-0-leaves-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
check force-dns-0-no-table sh -c '! nft list table inet lanveil 2>/dev/null'
check dnsmasq-0-still-starts-daemon [ "$(last_set '"lanveil" in j["instances"]')" = True ]
check dnsmasq-0-no-leak-guard-status status_lacks 'Leak guard'

# No LAN capture, but dnsmasq forwards to lanveil: the table holds the leak guard alone;
# dnsmasq '0' later (a reload) takes it away with the wiring, so the owner's servers work.
mkroot
uci_ set lanveil.openwrt.force_dns=0
uci_ commit lanveil
rc start >/dev/null 2>&1
check force-dns-0-leak-guard-only sh -c "nft list chain inet lanveil_leak output | grep -q 'meta skuid 453 oifname \"wan\"' && ! nft list table inet lanveil 2>/dev/null"
uci_ set lanveil.openwrt.dnsmasq=0
uci_ commit lanveil
rc reload >/dev/null 2>&1
check dnsmasq-0-reload-unwires cmp "$R/etc/config/dhcp" "$ORIG"
check dnsmasq-0-reload-drops-leak-guard sh -c '! nft list table inet lanveil_leak 2>/dev/null'
rc stop >/dev/null 2>&1
# The guard's zones are the owner's to choose (leak_guard_zone), and it can be turned off.
mkroot
uci_ set lanveil.openwrt.leak_guard_zone=guest
uci_ commit lanveil
rc start >/dev/null 2>&1
check leak-guard-zone-option sh -c "nft list chain inet lanveil_leak output | grep -q 'oifname { \"br-guest\", \"wg\\*\" }'"
# A network of a guard zone gets a trigger that loads the guard again when it comes up.
check leak-guard-zone-trigger [ "$(last_set '[t[1][2] for t in j["triggers"] if t[0] == "interface.*.up" and t[1][1][2] == "guest"]')" = "[['run_script', '/etc/init.d/lanveil', 'leak_guard']]" ]
uci_ set lanveil.openwrt.leak_guard=0
uci_ commit lanveil
rc reload >/dev/null 2>&1
check leak-guard-0-no-table sh -c '! nft list table inet lanveil_leak 2>/dev/null'
rc stop >/dev/null 2>&1
# The owner adds a domain-scoped server (LuCI's DNS forwardings, procd's dhcp trigger runs
# rewire): it is exempt at once. dnsmasq's query-port (its sockets opened as root): matched by
# that source port.
mkroot
rc start >/dev/null 2>&1
mkdir -p "$R/var/etc"
printf 'query-port=5300\n' >"$R/var/etc/dnsmasq.conf.cfg01411c"
uci_ add_list dhcp.@dnsmasq[0].server='/iptv.isp.example/192.0.2.99'
uci_ add_list dhcp.@dnsmasq[0].rev_server='10.0.0.0/8,10.1.2.3#5353'
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check rewire-exempts-owner-server sh -c "nft list chain inet lanveil_leak output | grep -q 'ip daddr 192.0.2.99 accept'"
check rewire-exempts-rev-server sh -c "nft list chain inet lanveil_leak output | grep -q 'ip daddr 10.1.2.3 accept'"
check leak-guard-query-port sh -c "nft list chain inet lanveil_leak output | grep -q 'meta skuid 0 oifname \"wan\" udp sport 5300 counter packets 0 bytes 0 drop'"
check status-owner-stop-removes-leak-guard sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' stop >/dev/null 2>&1; ! nft list table inet lanveil_leak 2>/dev/null"
# A pppoe WAN that is not up yet: netifd knows only the ethernet port under it, the guard
# also names the device pppoe makes when it comes up (a boot, a redial); option pppname wins.
mkroot
uci_ set network.wan.proto=pppoe
uci_ commit network
printf 'lan br-lan\nguest br-guest\nwan - wan\n' >"$R/tmp/fake-network"
rc start >/dev/null 2>&1
leak_udp_line() { nft list chain inet lanveil_leak output | grep 'meta skuid 453 oifname .* meta l4proto udp'; }
check leak-guard-pppoe-device-before-up sh -c "$(declare -f leak_udp_line); leak_udp_line | grep -q 'oifname \"pppoe-wan\" meta'"
# Up (pppoe-wan over wan): the same names, so neither the table nor its copy on flash changes.
saved_id="$(stat -c '%i %Y' "$R/etc/lanveil/leak_guard.nft")"
cp "$R/var/run/lanveil/lanveil_leak.nft" "$T/leak.down"
sleep 1
printf 'lan br-lan\nguest br-guest\nwan pppoe-wan wan\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check leak-guard-pppoe-up-same-table cmp "$R/var/run/lanveil/lanveil_leak.nft" "$T/leak.down"
check leak-guard-pppoe-up-no-flash-write [ "$(stat -c '%i %Y' "$R/etc/lanveil/leak_guard.nft")" = "$saved_id" ]
# pppoe carried on a LAN device (a single-port router, a modem on the LAN switch): the carrier is
# not guarded (dnsmasq answers the LAN there), nor is any device of the LAN.
printf 'lan br-lan\nguest br-guest\nwan - br-lan\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check leak-guard-not-on-pppoe-carrier sh -c "$(declare -f leak_udp_line); leak_udp_line | grep -q 'oifname \"pppoe-wan\" meta' && ! nft list table inet lanveil_leak | grep -q br-lan"
uci_ set network.wan.proto=dhcp
uci_ commit network
printf 'lan br-lan\nguest br-guest\nwan br-lan\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check leak-guard-never-a-lan-device sh -c "! nft list table inet lanveil_leak 2>/dev/null | grep -q br-lan"
uci_ set network.wan.proto=pppoe
uci_ set network.wan.pppname=dsl0
uci_ commit network
printf 'lan br-lan\nguest br-guest\nwan dsl0 wan\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check leak-guard-pppname sh -c "$(declare -f leak_udp_line); leak_udp_line | grep -q '\"dsl0\"' && ! leak_udp_line | grep -q pppoe-wan"
rc stop >/dev/null 2>&1

# --- boot: the leak guard before the network (lanveil_early, S19) -------------------------
# A reboot keeps the wiring (shutdown); the ruleset and /var start empty. dnsmasq (S19) starts
# wired, the WAN may be up from S20, lanveil starts at S25: lanveil_early loads the guard of the
# last run before the network.
early() { busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil_early" "$@"; }
mkroot
mkdir -p "$R/etc/rc.d"
rc enable
rc start >/dev/null 2>&1
check shutdown-keeps-saved-leak-guard sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' shutdown >/dev/null 2>&1; [ -s '$R/etc/lanveil/leak_guard.nft' ]"
reboot_clean() {
	nft delete table inet lanveil_leak 2>/dev/null
	nft delete table inet lanveil 2>/dev/null
	nft delete table inet lanveil_down 2>/dev/null
	rm -rf "$R/var/run/lanveil"
}
reboot_clean
early enable
check early-enable-link sh -c "[ -L '$R/etc/rc.d/S19lanveil_early' ] && ! ls '$R/etc/rc.d/' | grep -q '^K.*lanveil_early'"
check early-boot-succeeds early boot
check early-boot-loads-leak-guard sh -c "nft list chain inet lanveil_leak output | grep -q 'meta skuid 453 oifname \"wan\" meta l4proto udp counter packets 0 bytes 0 drop'"
check early-boot-logged grep -q 'leak guard loaded before the network' "$R/log/syslog"
check early-boot-loads-nothing-else sh -c "! nft list table inet lanveil 2>/dev/null && ! nft list table inet lanveil_down 2>/dev/null"
saved_id="$(stat -c '%i %Y' "$R/etc/lanveil/leak_guard.nft")"
sleep 1
rc start >/dev/null 2>&1
check boot-start-keeps-guard nft list chain inet lanveil_leak output
check boot-start-no-flash-write [ "$(stat -c '%i %Y' "$R/etc/lanveil/leak_guard.nft")" = "$saved_id" ]
# lanveil_early run again by hand (LuCI's Startup page) while the guard is loaded: the loaded
# one is the newer, nothing is reloaded.
printf '# an older copy\n' >>"$R/etc/lanveil/leak_guard.nft"
check early-start-keeps-loaded-guard sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil_early' start && ! grep -q 'an older copy' '$R/var/run/lanveil/lanveil_leak.nft'"
rc leak_guard >/dev/null 2>&1
check apply-rewrites-changed-copy sh -c "! grep -q 'an older copy' '$R/etc/lanveil/leak_guard.nft'"
# The WAN zone's networks have no device yet (a travel router's wwan before it associates):
# the guard loaded at boot stays (until their ifup trigger), with its copy.
printf 'lan br-lan\nguest br-guest\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check leak-guard-kept-while-devices-pending sh -c "nft list chain inet lanveil_leak output | grep -q 'oifname \"wan\"' && [ -s '$R/etc/lanveil/leak_guard.nft' ]"
check leak-guard-pending-logged grep -q "no devices in zone(s) wan yet; the one loaded stays" "$R/log/syslog"
# ... but not for zones it was not made for (the owner names a zone that has no network).
uci_ set lanveil.openwrt.leak_guard_zone=nosuch
uci_ commit lanveil
rc leak_guard >/dev/null 2>&1
check leak-guard-not-kept-for-other-zones sh -c "! nft list table inet lanveil_leak 2>/dev/null && [ ! -e '$R/etc/lanveil/leak_guard.nft' ]"
uci_ delete lanveil.openwrt.leak_guard_zone
uci_ commit lanveil
printf 'lan br-lan\nguest br-guest\nwan wan\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
# A changed guard (the owner exempts a new forwarding) is kept for the next boot.
uci_ add_list dhcp.@dnsmasq[0].server='/iptv.isp.example/192.0.2.99'
uci_ commit dhcp
rc rewire >/dev/null 2>&1
check changed-guard-kept-for-boot sh -c "grep -q 'ip daddr 192.0.2.99 accept' '$R/etc/lanveil/leak_guard.nft'"
# Not wired any more (the owner's stop; here the saved copy is left behind as by a crash
# between the two): the next boot loads nothing and drops the copy.
busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" shutdown >/dev/null 2>&1
cp "$R/etc/lanveil/leak_guard.nft" "$T/leak_guard.saved"
rc stop >/dev/null 2>&1
cp "$T/leak_guard.saved" "$R/etc/lanveil/leak_guard.nft"
reboot_clean
early boot >/dev/null 2>&1
check early-boot-unwired-loads-nothing sh -c "! nft list table inet lanveil_leak 2>/dev/null && [ ! -e '$R/etc/lanveil/leak_guard.nft' ]"
# The guard turned off (leak_guard '0') while wired: nothing at boot either.
mkroot
mkdir -p "$R/etc/rc.d"
rc enable
rc start >/dev/null 2>&1
cp "$R/etc/lanveil/leak_guard.nft" "$T/leak_guard.saved"
uci_ set lanveil.openwrt.leak_guard=0
uci_ commit lanveil
busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" shutdown >/dev/null 2>&1
cp "$T/leak_guard.saved" "$R/etc/lanveil/leak_guard.nft"
reboot_clean
early boot >/dev/null 2>&1
check early-boot-guard-off-loads-nothing sh -c "! nft list table inet lanveil_leak 2>/dev/null && [ ! -e '$R/etc/lanveil/leak_guard.nft' ]"
rc stop >/dev/null 2>&1

# The owner moved devices after the copy was saved (ports swapped, the WAN now pppoe, the guard
# made for other zones): the boot loads it for the devices the configuration has now, never
# one it gives to the LAN (dnsmasq talks to the LAN there), and a new WAN device is guarded
# from the start. A device the configuration does not name (a wwan's, named when it associates)
# stays as the last run saw it. Here the WAN zone also holds a wwan, up when the copy was made.
mkroot
mkdir -p "$R/etc/rc.d"
uci_ set network.wwan=interface
uci_ set network.wwan.proto=dhcp
uci_ add_list firewall.@zone[1].network=wwan
uci_ commit network
uci_ commit firewall
printf 'lan br-lan\nguest br-guest\nwan wan\nwwan phy0-sta0\n' >"$R/tmp/fake-network"
rc enable
rc start >/dev/null 2>&1
busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" shutdown >/dev/null 2>&1
cp "$R/etc/lanveil/leak_guard.nft" "$T/leak_guard.saved"
cp "$R/etc/config/network" "$T/network.saved"
# A boot with that copy and the configuration as it is now, before netifd (nothing it knows).
boot_moved() {
	cp "$T/leak_guard.saved" "$R/etc/lanveil/leak_guard.nft"
	reboot_clean
	rm -f "$R/tmp/fake-network"
	early boot >/dev/null 2>&1
}
# The guard's devices as nft lists them ("wan", or { "lan1", "wan" }).
leak_devs() { nft list chain inet lanveil_leak output | sed -n 's/.*meta skuid 453 oifname \(.*\) meta l4proto udp .*/\1/p'; }
# A datagram to ADDR port 53 from dnsmasq's uid: "sent", or the kernel's refusal (the guard).
send_as_dnsmasq() {
	"$PY" -c 'import os, socket, sys
os.setgid(453)
os.setuid(453)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"q", (sys.argv[1], 53))
    print("sent")
except OSError as e:
    print(e.strerror)' "$1"
}
check moved-saved-with-wwan grep -q 'oifname { "phy0-sta0", "wan" } meta l4proto udp' "$T/leak_guard.saved"
boot_moved
check unmoved-boot-loads-copy-as-is cmp "$R/var/run/lanveil/lanveil_leak.nft" "$T/leak_guard.saved"
# The ports swapped: 'wan' is a LAN port now, lan1 the WAN's.
uci_ set network.wan.device=lan1
uci_ set network.wan6.device=lan1
uci_ del_list network.@device[0].ports=lan1
uci_ add_list network.@device[0].ports=wan
uci_ commit network
boot_moved
check swapped-boot-guards-new-wan-only [ "$(leak_devs)" = '{ "lan1", "phy0-sta0" }' ]
check swapped-boot-logged grep -q 'leak guard loaded before the network, for lan1 phy0-sta0 (lanveil last left it for phy0-sta0 wan: the configuration has changed since)' "$R/log/syslog"
check swapped-boot-keeps-zones grep -qx '# zones: wan' "$R/var/run/lanveil/lanveil_leak.nft"
# What dnsmasq sends by the old WAN device (now the LAN's) goes; by the new one, not.
for d in wan:192.0.2.1 lan1:198.51.100.1; do
	"$IPCMD" link add "${d%%:*}" type veth peer name "${d%%:*}-peer"
	"$IPCMD" addr add "${d#*:}/24" dev "${d%%:*}"
	"$IPCMD" link set "${d%%:*}-peer" up
	"$IPCMD" link set "${d%%:*}" up
done
check swapped-boot-dnsmasq-sends-by-old-wan [ "$(send_as_dnsmasq 192.0.2.9)" = sent ]
check swapped-boot-dnsmasq-dropped-by-new-wan [ "$(send_as_dnsmasq 198.51.100.9)" = "Operation not permitted" ]
"$IPCMD" link del wan
"$IPCMD" link del lan1
# The WAN now pppoe over the same port (wan6 on it: @wan): the device pppoe makes, not its carrier.
cp "$T/network.saved" "$R/etc/config/network"
uci_ set network.wan.proto=pppoe
uci_ set network.wan6.device=@wan
uci_ commit network
boot_moved
check pppoe-boot-guards-pppoe-device [ "$(leak_devs)" = '{ "phy0-sta0", "pppoe-wan" }' ]
# The owner chose other zones for the guard since: only their devices, none of the last run's.
cp "$T/network.saved" "$R/etc/config/network"
uci_ set lanveil.openwrt.leak_guard_zone=guest
uci_ commit lanveil
boot_moved
check other-zones-boot-their-devices-only [ "$(leak_devs)" = '"wg*"' ]
check other-zones-boot-zones-line grep -qx '# zones: guest' "$R/var/run/lanveil/lanveil_leak.nft"
uci_ delete lanveil.openwrt.leak_guard_zone
uci_ commit lanveil
# The WAN zone is the wwan alone now, its old port the LAN's, and the copy names nothing else:
# nothing to guard before the network (the wwan's device is named when it associates).
wan_to_wwan() {
	uci_ delete network.wan
	uci_ delete network.wan6
	uci_ add_list network.@device[0].ports=wan
	uci_ commit network
	uci_ set firewall.@zone[1].network=wwan
	uci_ commit firewall
}
cp "$T/network.saved" "$R/etc/config/network"
wan_to_wwan
sed -i 's/oifname { "phy0-sta0", "wan" }/oifname { "wan" }/' "$T/leak_guard.saved"
boot_moved
check all-moved-boot-loads-nothing sh -c '! nft list table inet lanveil_leak 2>/dev/null'
check all-moved-boot-logged grep -q 'leak guard not loaded before the network: the configuration gives none of the devices lanveil last left it for (wan) to zone(s) wan' "$R/log/syslog"
# While running, the wwan not associated yet (its zone's networks have no device): the loaded
# guard stays for its devices, not for one the configuration now gives to the LAN.
rc stop >/dev/null 2>&1
cp "$T/network.saved" "$R/etc/config/network"
uci_ set firewall.@zone[1].network='wan wwan'
uci_ commit firewall
printf 'lan br-lan\nguest br-guest\nwan wan\nwwan phy0-sta0\n' >"$R/tmp/fake-network"
daemon_up
rc start >/dev/null 2>&1
wan_to_wwan
printf 'lan br-lan\nguest br-guest\nwwan -\n' >"$R/tmp/fake-network"
rc leak_guard >/dev/null 2>&1
check pending-guard-drops-moved-device [ "$(leak_devs)" = '"phy0-sta0"' ]
check pending-guard-drop-logged grep -q 'the one loaded stays, for phy0-sta0 as the configuration has them now, until they come up' "$R/log/syslog"
check pending-guard-drop-kept-for-boot cmp "$R/etc/lanveil/leak_guard.nft" "$R/var/run/lanveil/lanveil_leak.nft"
rc stop >/dev/null 2>&1

# lanveil itself running as the dnsmasq user: its own DoT must not be dropped, so no guard.
mkroot
uci_ set lanveil.main.user=dnsmasq
uci_ commit lanveil
rc start >/dev/null 2>&1
check own-user-not-guarded sh -c "nft list table inet lanveil && ! nft list table inet lanveil_leak 2>/dev/null"
rc stop >/dev/null 2>&1
# No dnsmasq user (not OpenWrt's dnsmasq): no guard, and the log says so.
mkroot
sed -i '/^dnsmasq:/d' "$R/etc/passwd"
rc start >/dev/null 2>&1
check no-dnsmasq-user-no-guard sh -c "nft list table inet lanveil && ! nft list table inet lanveil_leak 2>/dev/null"
check no-dnsmasq-user-logged grep -q "leak guard off: dnsmasq's user not found" "$R/log/syslog"
rc stop >/dev/null 2>&1

mkroot
uci_ set lanveil.openwrt.block_dot=1
uci_ set lanveil.openwrt.canary_domains=0
uci_ add_list lanveil.openwrt.force_dns_zone=guest
uci_ commit lanveil
rc start >/dev/null 2>&1
check block-dot-tcp-reset sh -c "nft list chain inet lanveil forward | grep -q 'tcp dport 853 counter packets 0 bytes 0 reject with tcp reset'"
check block-dot-udp sh -c "nft list chain inet lanveil forward | grep -q 'udp dport 853 counter packets 0 bytes 0 reject'"
check zones-lan-and-guest sh -c "nft list chain inet lanveil dstnat | grep -q 'iifname { \"br-guest\", \"br-lan\", \"wg\\*\" }'"
check canaries-off [ "$(servers)" = "127.0.0.1#5453 /corp.example/10.0.0.1" ]
rc stop >/dev/null 2>&1
check options-stop-restores cmp "$R/etc/config/dhcp" "$ORIG"

# --- invalid config: refuse, touch nothing ----------------------------------------
mkroot
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
rc start >/dev/null 2>&1
code=$?
# A refused start is a failure its caller sees (a shell, LuCI's Restart, lanveil-ctl push).
check invalid-config-start-exits-1 [ "$code" = 1 ]
check invalid-config-no-instance [ "$(last_set 'len(j["instances"])')" = 0 ]
check invalid-config-dhcp-untouched cmp "$R/etc/config/dhcp" "$ORIG"
check invalid-config-logged grep -q 'daemon.err.*not starting' "$R/log/syslog"

# --- invalid config with a last good copy (the daemon keeps one): runs on it, says so ------
mkroot
mkdir -p "$R/etc/lanveil/daemon"
cp "$R/etc/config/lanveil" "$R/etc/lanveil/daemon/last-good"
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
rc start >/dev/null 2>&1
code=$?
# Running, but not on the file asked for: the start says so by its status too.
check last-good-start-exits-1 [ "$code" = 1 ]
check last-good-instance [ "$(last_set 'j["instances"]["lanveil"]["command"]')" = "['/usr/sbin/lanveil', '--config', '/etc/config/lanveil', '--last-good', '/etc/lanveil/daemon/last-good', '--wan-portal-record', '/var/run/lanveil/wan_portal']" ]
check last-good-wired [ "$(uci_ get dhcp.@dnsmasq[0].noresolv)" = 1 ]
check last-good-status status_has '^lanveil is running on its last good configuration: /etc/config/lanveil is invalid'
check last-good-logged grep -q 'starting on the last good configuration' "$R/log/syslog"
check last-good-dir-owned-by-user [ "$(stat -c '%u:%g' "$R/etc/lanveil/daemon")" = "5453:5453" ]
rc stop >/dev/null 2>&1
# An invalid copy is no way out: refused as without one.
mkroot
mkdir -p "$R/etc/lanveil/daemon"
printf "config lanveil\n\toption log_level 'INVALID'\n" >"$R/etc/lanveil/daemon/last-good"
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
rc start >/dev/null 2>&1
check last-good-invalid-refused [ "$(last_set 'len(j["instances"])')" = 0 ]

# --- missing user: refuse ------------------------------------------------------------
mkroot
sed -i '/^lanveil:/d' "$R/etc/passwd"
rc start >/dev/null 2>&1
code=$?
check missing-user-start-exits-1 [ "$code" = 1 ]
check missing-user-no-instance [ "$(last_set 'len(j["instances"])')" = 0 ]

# --- user root (or any uid 0): refuse, whatever state_file names ------------------------
for u in root toor; do
	mkroot
	[ "$u" = toor ] && echo 'toor:x:0:0:toor:/root:/bin/ash' >>"$R/etc/passwd"
	uci_ set lanveil.main.user="$u"
	uci_ set lanveil.main.state_file=/etc/shadow
	uci_ commit lanveil
	: >"$PROCD_LOG"
	rc start >/dev/null 2>&1
	code=$?
	check "user-$u-start-exits-1" [ "$code" = 1 ]
	check "user-$u-refused" [ "$(last_set 'len(j["instances"])')" = 0 ]
	# root by name: the config check refuses it; another name for uid 0: the init script.
	check "user-$u-logged" grep -qE "user.*(must not be root|'$u' is root)" "$R/log/syslog"
	check "user-$u-dhcp-untouched" cmp "$R/etc/config/dhcp" "$ORIG"
done

# --- low port: started as root, the daemon switches to its 'user' after binding --------
mkroot
uci_ delete lanveil.main.listen
uci_ add_list lanveil.main.listen=192.168.1.1:53
uci_ add_list lanveil.main.listen=127.0.0.1:5453
uci_ commit lanveil
rc start >/dev/null 2>&1
check low-port-no-procd-user [ "$(last_set '"user" in j["instances"]["lanveil"] or "group" in j["instances"]["lanveil"]')" = False ]
check low-port-no-new-privs [ "$(last_set 'j["instances"]["lanveil"]["no_new_privs"]')" = True ]
check low-port-dnsmasq-skips-port-53 [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1" ]
rc stop >/dev/null 2>&1
daemon_dead
uci_ delete lanveil.main.user
uci_ commit lanveil
: >"$PROCD_LOG"
rc start >/dev/null 2>&1
code=$?
check low-port-without-user-start-exits-1 [ "$code" = 1 ]
check low-port-without-user-refused [ "$(last_set 'len(j["instances"])')" = 0 ]
check low-port-without-user-logged grep -q 'needs option user' "$R/log/syslog"

# --- package removal (prerm body from the Makefile) restores --------------------------
mkroot
rc start >/dev/null 2>&1
make_prerm
check prerm-body-has-guards grep -q 'PKG_UPGRADE' "$T/prerm"
check prerm-runs busybox ash "$T/prerm.local"
check prerm-restores-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
check prerm-removes-table sh -c '! nft list table inet lanveil 2>/dev/null'
check prerm-purges-etc-lanveil [ ! -e "$R/etc/lanveil" ]

# --- restart, reboot, package upgrade keep dnsmasq wired; stop, disable, removal undo it ----
# Only an owner's stop (and disable, and opkg remove) gives the LAN its previous DNS servers;
# a stop on the way to a new start must never let dnsmasq forward in plaintext meanwhile.
# The doubles record every /etc/config/dhcp dnsmasq was (re)started with (dnsmasq.N.dhcp) and
# the one of each --check-config of a start (check.N.dhcp, with the restart marker then).
wired_file() { grep -q "^	list server '127.0.0.1#5453'\$" "$1" && grep -q "^	option noresolv '1'\$" "$1"; }
all_wired() { # every dhcp recorded since forget_copies is wired (and there were some)
	local f n=0
	for f in "$R"/log/*.dhcp; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		wired_file "$f" || { echo "dnsmasq not wired to lanveil in ${f##*/}:"; grep server "$f"; return 1; }
	done
	[ "$n" -gt 0 ] || { echo "nothing recorded"; return 1; }
}
forget_copies() { rm -f "$R"/log/*.dhcp "$R"/log/*.restarting; }
rc_env() { # VAR=VALUE ACTION: the init script with VAR in its environment (opkg's PKG_UPGRADE)
	env "$1" busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" "$2"
}
links() { # the rc.d entries, space separated
	local f
	for f in "$R"/etc/rc.d/*; do
		[ -L "$f" ] || [ -e "$f" ] && printf '%s ' "${f##*/}"
	done
	return 0
}
mkroot
mkdir -p "$R/etc/rc.d"
check enable-makes-links sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' enable && [ -L '$R/etc/rc.d/S25lanveil' ] && [ -L '$R/etc/rc.d/K15lanveil' ]"
rc start >/dev/null 2>&1
check enabled-start-no-boot-warning sh -c "! busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' status | grep -q '^Not enabled'"
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
n_restart="$(count "$R/log/dnsmasq" restart)"
forget_copies
: >"$PROCD_LOG"
check restart-succeeds rc restart
check restart-dhcp-wired-throughout all_wired
check restart-dhcp-untouched cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check restart-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = "$n_restart" ]
check restart-keeps-saved-settings cmp "$R/etc/lanveil/dnsmasq/dhcp.orig" "$ORIG"
check restart-stops-and-starts-daemon [ "$(grep -o '^service [a-z]*' "$PROCD_LOG" | tr '\n' ' ')" = "service delete service set " ]
# The guard does not arm for the planned gap (the marker is there when the new start begins).
check restart-gap-marked [ -e "$R/log/check.1.restarting" ]
check restart-marker-gone [ ! -e "$R/var/run/lanveil/restarting" ]
check restart-keeps-capture nft list table inet lanveil
check restart-no-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
check restart-status-up status_has '^lanveil is running; dnsmasq forwards to it.$'
# The start after the stop fails (the daemon never answers): fail-closed, never plaintext.
daemon_down
forget_copies
rc restart >/dev/null 2>&1
code=$?
check restart-failed-start-fails [ "$code" -ne 0 ]
check restart-failed-dhcp-wired-throughout all_wired
check restart-failed-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check restart-failed-guard-armed nft list table inet lanveil_down
# dnsmasq, its forwarding to lanveil refused, tries its other servers: none on the WAN.
check restart-failed-leak-guard-kept nft list chain inet lanveil_leak output
# A boot (empty ruleset) whose daemon never answers: the leak guard is loaded by the start
# itself, before the wait, and stays.
nft delete table inet lanveil_leak
rm -f "$R/var/run/lanveil/lanveil_leak.nft"
rc start >/dev/null 2>&1
check failed-boot-leak-guard-loaded nft list chain inet lanveil_leak output
check restart-failed-status status_has '^lanveil is NOT running: lanveil did not answer'
# ... or the configuration is now invalid: refused, fail-closed too.
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
daemon_dead
nft delete table inet lanveil_down 2>/dev/null
rm -f "$R/var/run/lanveil/lanveil_down.nft"
forget_copies
rc restart >/dev/null 2>&1
check restart-invalid-dhcp-wired-throughout all_wired
check restart-invalid-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check restart-invalid-guard-armed nft list table inet lanveil_down
check restart-invalid-status status_has '^lanveil is NOT running: lanveil did not start (invalid'
# ... with the old daemon still there when the start comes (procd's delete only signals it; it
# drains queries in flight): no running daemon to keep, as for a reload with a bad file. Refused.
daemon_up
nft delete table inet lanveil_down 2>/dev/null
rm -f "$R/var/run/lanveil/lanveil_down.nft"
rc restart >/dev/null 2>&1
check restart-invalid-old-daemon-draining-guard-armed nft list table inet lanveil_down
check restart-invalid-old-daemon-draining-status status_has '^lanveil is NOT running: lanveil did not start (invalid'
uci_ set lanveil.main.log_level=info
uci_ commit lanveil
daemon_up
rc restart >/dev/null 2>&1
check restart-recovers-guard-lifted sh -c '! nft list table inet lanveil_down 2>/dev/null'
check restart-recovers-status status_has '^lanveil is running'

# Reboot: procd runs K15lanveil shutdown; the next boot's start finds dnsmasq wired.
forget_copies
n_restart="$(count "$R/log/dnsmasq" restart)"
: >"$PROCD_LOG"
check shutdown-succeeds rc shutdown
check shutdown-keeps-dhcp cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check shutdown-keeps-saved-settings [ -f "$R/etc/lanveil/dnsmasq/dhcp.orig" ]
check shutdown-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = "$n_restart" ]
check shutdown-stops-daemon grep -q '^service delete { "name": "lanveil" }' "$PROCD_LOG"
check shutdown-status status_has '^lanveil was stopped for a reboot or poweroff; it starts again at boot.$'
# Boot: /var/run and the nft ruleset are new; no flash write (dhcp as it was, no dnsmasq restart).
rm -rf "$R/var/run/lanveil"
nft delete table inet lanveil 2>/dev/null
daemon_up
check boot-after-shutdown rc boot
check boot-dhcp-untouched cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check boot-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = "$n_restart" ]
check boot-capture-back nft list table inet lanveil
check boot-status-up status_has '^lanveil is running; dnsmasq forwards to it.$'

# opkg upgrade: default_prerm runs stop with PKG_UPGRADE=1, then the new version's
# default_postinst runs start (PKG_UPGRADE=1 too). The package's prerm body does nothing then.
make_prerm
mkdir -p "$R/etc/rc.d"
cp -a "$R/etc/rc.d" "$T/rc.d.before"
ln -sfn ../init.d/lanveil_early "$R/etc/rc.d/S19lanveil_early"
check upgrade-prerm-body-does-nothing env PKG_UPGRADE=1 busybox ash "$T/prerm.local"
check upgrade-prerm-body-keeps-dhcp cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check upgrade-prerm-body-keeps-early-link [ -L "$R/etc/rc.d/S19lanveil_early" ]
# The postinst body: default_postinst enables the init scripts on an install only, so the first
# upgrade from a version without lanveil_early enables it there, when lanveil is enabled; once
# (a marker), so an owner's later disable of it stays.
check postinst-body-paths make_postinst
rm -f "$R/etc/rc.d/"* "$R/etc/lanveil/early-enabled"
ln -sfn ../init.d/lanveil "$R/etc/rc.d/S25lanveil"
ln -sfn ../init.d/lanveil "$R/etc/rc.d/K15lanveil"
check upgrade-postinst-enables-early sh -c "PKG_UPGRADE=1 busybox ash '$T/postinst.local' && [ -L '$R/etc/rc.d/S19lanveil_early' ] && [ -e '$R/etc/lanveil/early-enabled' ]"
rm -f "$R/etc/rc.d/S19lanveil_early"
check upgrade-postinst-once sh -c "PKG_UPGRADE=1 busybox ash '$T/postinst.local' && [ ! -e '$R/etc/rc.d/S19lanveil_early' ]"
rm -f "$R/etc/rc.d/"* "$R/etc/lanveil/early-enabled"
check upgrade-postinst-disabled-no-early sh -c "PKG_UPGRADE=1 busybox ash '$T/postinst.local' && [ ! -e '$R/etc/rc.d/S19lanveil_early' ] && [ ! -e '$R/etc/lanveil/early-enabled' ]"
# ... and the owner enables lanveil later (by hand, LuCI's Startup page): its enable sets
# lanveil_early up then, once: enabled again after the owner disabled lanveil_early, it stays so.
enable_cmd="busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' enable"
check enable-after-disabled-upgrade-enables-early sh -c "$enable_cmd && [ -L '$R/etc/rc.d/S25lanveil' ] && [ -L '$R/etc/rc.d/K15lanveil' ] && [ -L '$R/etc/rc.d/S19lanveil_early' ] && [ -e '$R/etc/lanveil/early-enabled' ]"
rm -f "$R/etc/rc.d/"*
check enable-again-keeps-early-disabled sh -c "$enable_cmd && [ -L '$R/etc/rc.d/S25lanveil' ] && [ ! -e '$R/etc/rc.d/S19lanveil_early' ]"
rm -f "$R/etc/rc.d/"* "$R/etc/lanveil/early-enabled"
check install-postinst-marks sh -c "busybox ash '$T/postinst.local' && [ ! -e '$R/etc/rc.d/S19lanveil_early' ] && [ -e '$R/etc/lanveil/early-enabled' ]"
# An image build (IPKG_INSTROOT; default_postinst then enables both init scripts offline) marks
# it too: a first upgrade after the owner disabled lanveil_early leaves it disabled.
rm -f "$R/etc/rc.d/"* "$R/etc/lanveil/early-enabled"
check image-postinst-marks sh -c "IPKG_INSTROOT='$R' busybox ash '$T/postinst' && [ ! -e '$R/etc/rc.d/S19lanveil_early' ] && [ -e '$R/etc/lanveil/early-enabled' ]"
ln -sfn ../init.d/lanveil "$R/etc/rc.d/S25lanveil"
ln -sfn ../init.d/lanveil "$R/etc/rc.d/K15lanveil"
check image-then-upgrade-keeps-early-disabled sh -c "PKG_UPGRADE=1 busybox ash '$T/postinst.local' && [ ! -e '$R/etc/rc.d/S19lanveil_early' ]"
# Back to the installed package (mkroot: marked).
rm -rf "$R/etc/rc.d"
: >"$R/etc/lanveil/early-enabled"
mv "$T/rc.d.before" "$R/etc/rc.d"
check upgrade-stop rc_env PKG_UPGRADE=1 stop
check upgrade-stop-keeps-dhcp cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check upgrade-stop-keeps-saved-settings cmp "$R/etc/lanveil/dnsmasq/dhcp.orig" "$ORIG"
check upgrade-stop-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = "$n_restart" ]
check upgrade-stop-status status_has '^lanveil was stopped for a package upgrade'
check upgrade-start rc_env PKG_UPGRADE=1 start
check upgrade-start-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check upgrade-start-status-up status_has '^lanveil is running; dnsmasq forwards to it.$'
# The new version does not come up: fail-closed.
rc_env PKG_UPGRADE=1 stop >/dev/null 2>&1
daemon_down
rc_env PKG_UPGRADE=1 start >/dev/null 2>&1
check upgrade-failed-start-guard-armed nft list table inet lanveil_down
check upgrade-failed-start-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
daemon_up
rc start >/dev/null 2>&1

# A plain stop after all that still gives the LAN its DNS servers back.
check stop-after-restarts rc stop
check stop-after-restarts-restores cmp "$R/etc/config/dhcp" "$ORIG"
check stop-after-restarts-no-capture sh -c '! nft list table inet lanveil 2>/dev/null'

# disable (also LuCI's Startup -> Enabled off) = a full stop + no autostart: a reboot must
# not find dnsmasq forwarding to a daemon that no longer starts.
rc start >/dev/null 2>&1
: >"$PROCD_LOG"
check disable-runs rc disable
check disable-restores-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
check disable-removes-links [ -z "$(links)" ]
check disable-removes-capture sh -c '! nft list table inet lanveil 2>/dev/null'
check disable-stops-daemon grep -q '^service delete { "name": "lanveil" }' "$PROCD_LOG"
check disable-forgets-dnsmasq-state [ ! -e "$R/etc/lanveil/dnsmasq" ]
check disable-status status_has '^lanveil is stopped; dnsmasq and the firewall are as they were before it.$'
# Disabled: a reboot's shutdown (were it run) and an upgrade's stop undo the wiring, and the
# upgrade does not start it again (nothing would start it at the next boot).
rc start >/dev/null 2>&1
# Started by hand while disabled: the status says what a reboot would do, and how to avoid it.
check disabled-start-warns status_has '^Not enabled: it will not start at boot'
check disabled-start-logged grep -q 'started while disabled' "$R/log/syslog"
check disabled-shutdown-restores sh -c "busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' shutdown && cmp '$R/etc/config/dhcp' '$ORIG'"
rc start >/dev/null 2>&1
check disabled-upgrade-stop-restores sh -c "env PKG_UPGRADE=1 busybox ash '$DOUBLES/rc.common' '$R/etc/init.d/lanveil' stop && cmp '$R/etc/config/dhcp' '$ORIG'"
: >"$PROCD_LOG"
rc_env PKG_UPGRADE=1 start >/dev/null 2>&1
code=$?
# Not started on purpose: that is no failure (default_postinst runs it for every package).
check disabled-upgrade-start-exits-0 [ "$code" = 0 ]
check disabled-upgrade-not-started [ "$(last_set 'len(j["instances"])')" = 0 ]
check disabled-upgrade-dhcp-untouched cmp "$R/etc/config/dhcp" "$ORIG"
check disabled-upgrade-status status_has '^lanveil is disabled; the package upgrade did not start it.$'

# opkg remove: default_prerm runs the prerm body (stop + purge), then disable, then stop.
busybox ash "$DOUBLES/rc.common" "$R/etc/init.d/lanveil" enable
rc start >/dev/null 2>&1
make_prerm
check remove-prerm-body busybox ash "$T/prerm.local"
check remove-disable rc disable
check remove-stop rc stop
check remove-restores-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
check remove-no-links [ -z "$(links)" ]
check remove-purged [ ! -e "$R/etc/lanveil" ]

# --- sysupgrade: the backup carries the owner's dhcp for an image without lanveil ---------
# /lib/upgrade/lanveil.sh's hook on sysupgrade's file list (as run_hooks calls it), then a
# "new image without lanveil": a root holding only the backup's files, where the
# uci-defaults script from the backup runs (its paths pointed into that root).
mkroot
rc start >/dev/null 2>&1
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
printf '%s\n' /etc/config/dhcp /etc/config/lanveil /etc/lanveil/dnsmasq/dhcp.orig >"$T/conffiles"
check sysupgrade-hook-runs busybox ash -c ". '$R/usr/share/lanveil/lanveil.sh'; lanveil_sysupgrade_conffiles '$T/conffiles'"
check sysupgrade-hook-lists-owner-dhcp sh -c "grep -qx /etc/lanveil/sysupgrade/dhcp.owner '$T/conffiles' && grep -qx /etc/uci-defaults/99-lanveil-sysupgrade '$T/conffiles'"
check sysupgrade-owner-dhcp-is-original cmp "$R/etc/lanveil/sysupgrade/dhcp.owner" "$ORIG"
check sysupgrade-live-dhcp-untouched cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check sysupgrade-still-wired [ -f "$R/etc/lanveil/dnsmasq/dhcp.orig" ]
N="$T/newimage"
rm -rf "$N"
mkdir -p "$N"
while IFS= read -r f; do mkdir -p "$N${f%/*}" && cp -p "$R$f" "$N$f"; done <"$T/conffiles"
sed "s,/etc/,$N/etc/,g" "$N/etc/uci-defaults/99-lanveil-sysupgrade" >"$T/uci-defaults.sh"
check sysupgrade-defaults-runs busybox ash "$T/uci-defaults.sh"
check sysupgrade-new-image-gets-owner-dhcp cmp "$N/etc/config/dhcp" "$ORIG"
check sysupgrade-new-image-no-stale-state sh -c "[ ! -e '$N/etc/lanveil/dnsmasq' ] && [ ! -e '$N/etc/lanveil/sysupgrade' ]"
# An earlier uci-defaults script of the new image changed dhcp (not byte for byte the kept
# file any more): lanveil's entries are undone section by section, the other change stays.
rm -rf "$N"
mkdir -p "$N"
while IFS= read -r f; do mkdir -p "$N${f%/*}" && cp -p "$R$f" "$N$f"; done <"$T/conffiles"
check sysupgrade-hook-lists-restore-code sh -c "grep -qx /etc/lanveil/sysupgrade/lanveil.sh '$T/conffiles' && grep -qx /etc/lanveil/sysupgrade/dnsmasq/dnsmasq.state '$T/conffiles'"
uci -q -c "$N/etc/config" set dhcp.lan.leasetime=6h
uci -q -c "$N/etc/config" commit dhcp
check sysupgrade-edited-defaults-runs busybox ash "$T/uci-defaults.sh"
newsrv() { uci -q -c "$N/etc/config" -d ' ' get dhcp.@dnsmasq[0].server; }
check sysupgrade-edited-owner-servers [ "$(newsrv)" = "8.8.8.8 9.9.9.9#9953 /corp.example/10.0.0.1" ]
check sysupgrade-edited-noresolv-localuse-gone [ -z "$(uci -q -c "$N/etc/config" get dhcp.@dnsmasq[0].noresolv)$(uci -q -c "$N/etc/config" get dhcp.@dnsmasq[0].localuse)" ]
check sysupgrade-edited-keeps-other-change [ "$(uci -q -c "$N/etc/config" get dhcp.lan.leasetime)" = 6h ]
check sysupgrade-edited-no-stale-state sh -c "[ ! -e '$N/etc/lanveil/dnsmasq' ] && [ ! -e '$N/etc/lanveil/sysupgrade' ]"
# Not wired (stopped): nothing added, and what an earlier run listed is dropped.
rc stop >/dev/null 2>&1
check sysupgrade-stopped-hook-runs busybox ash -c ". '$R/usr/share/lanveil/lanveil.sh'; lanveil_sysupgrade_conffiles '$T/conffiles'"
check sysupgrade-stopped-adds-nothing sh -c "! grep -q -e lanveil/sysupgrade -e uci-defaults '$T/conffiles' && [ ! -e '$R/etc/lanveil/sysupgrade' ]"

# --- uci-defaults ------------------------------------------------------------------------
mkroot
uci_ delete lanveil.openwrt
uci_ commit lanveil
check uci-defaults-runs busybox ash "$PKG/files/lanveil.defaults"
check uci-defaults-adds-section [ "$(uci_ get lanveil.openwrt)$(uci_ get lanveil.openwrt.force_dns)" = openwrt1 ]
cp "$R/etc/config/lanveil" "$T/lanveil.once"
busybox ash "$PKG/files/lanveil.defaults"
check uci-defaults-idempotent cmp "$R/etc/config/lanveil" "$T/lanveil.once"
check uci-defaults-leaves-shipped-config sh -c "cp '$PKG/files/lanveil.config' '$R/etc/config/lanveil' && busybox ash '$PKG/files/lanveil.defaults' && cmp '$PKG/files/lanveil.config' '$R/etc/config/lanveil'"
# Older configs had the control socket in root's run directory: moved, and never chowned there.
uci_ set lanveil.main.control_socket=/var/run/lanveil/control.sock
uci_ commit lanveil
busybox ash "$PKG/files/lanveil.defaults"
check uci-defaults-moves-control-socket [ "$(uci_ get lanveil.main.control_socket)" = /var/run/lanveil/daemon/control.sock ]
uci_ set lanveil.main.control_socket=/var/run/lanveil/control.sock
uci_ commit lanveil
rm -rf "$R/var/run/lanveil"
rc start >/dev/null 2>&1
check legacy-control-socket-dir-not-chowned [ "$(stat -c '%u' "$R/var/run/lanveil" 2>/dev/null || echo 0)" = 0 ]
check legacy-control-socket-warned grep -q "control_socket: not prepared" "$R/log/syslog"
rc stop >/dev/null 2>&1

# state_file: only /etc/lanveil/daemon/ is handed to the daemon's user, never root's saved
# settings beside it (dnsmasq/, network/: stop and opkg remove copy them back into /etc/config),
# not through '..', not through a symlink the daemon's user planted in its own directory.
state_dir() { # STATE_FILE: lanveil_state_dir for it; then who owns root's dnsmasq/ and network/
	uci_ set lanveil.main.state_file="$1"
	uci_ commit lanveil
	mkdir -p "$R/etc/lanveil/dnsmasq" "$R/etc/lanveil/network" "$R/etc/lanveil/daemon"
	chown 0:0 "$R/etc/lanveil/dnsmasq" "$R/etc/lanveil/network"
	busybox ash -c ". '$R/usr/share/lanveil/lanveil.sh'; lanveil_state_dir lanveil" && echo -n "ok " || echo -n "refused "
	stat -c '%u%u' "$R/etc/lanveil/dnsmasq" "$R/etc/lanveil/network" | tr -d '\n'
}
check state-dir-refuses-dnsmasq [ "$(state_dir /etc/lanveil/dnsmasq/state)" = "refused 0000" ]
check state-dir-refuses-network [ "$(state_dir /etc/lanveil/network/state)" = "refused 0000" ]
check state-dir-refuses-dotdot [ "$(state_dir /etc/lanveil/daemon/../dnsmasq/state)" = "refused 0000" ]
ln -sfn ../dnsmasq "$R/etc/lanveil/daemon/sub"
check state-dir-refuses-symlink [ "$(state_dir /etc/lanveil/daemon/sub/state)" = "refused 0000" ]
rm -f "$R/etc/lanveil/daemon/sub"
check state-dir-daemon-ok [ "$(state_dir /etc/lanveil/daemon/state) $(stat -c '%u %a' "$R/etc/lanveil/daemon")" = "ok 0000 5453 700" ]
uci_ set lanveil.main.state_file=/etc/lanveil/daemon/state
uci_ commit lanveil

# --- the daemon's liveness (doubles: procd's pidfile, the control socket) ---------------
guard_check() { busybox ash -c ". '$R/usr/share/lanveil/lanveil.sh'; lanveil_guard_check"; }
# (i) never answers at start: nothing is rewired, the reason is loud.
mkroot
daemon_down
rc start >/dev/null 2>&1
code=$?
check not-up-start-fails [ "$code" -ne 0 ]
check not-up-dhcp-untouched cmp "$R/etc/config/dhcp" "$ORIG"
check not-up-no-capture sh -c '! nft list table inet lanveil 2>/dev/null'
check not-up-no-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
check not-up-logged grep -q 'daemon.err.*did not answer within 1 s of starting; dnsmasq and the firewall left unchanged' "$R/log/syslog"
check not-up-status status_has 'the LAN uses its previous DNS servers'
rc status >/dev/null 2>&1
code=$?
check not-up-status-fails [ "$code" -ne 0 ]
check not-up-guard-does-nothing guard_check
check not-up-guard-leaves-dhcp cmp "$R/etc/config/dhcp" "$ORIG"
# A pid that exists but is not lanveil does not count.
daemon_up "$$"
rc start >/dev/null 2>&1
check not-lanveil-pid-not-wired cmp "$R/etc/config/dhcp" "$ORIG"
# It comes up: the next start wires.
daemon_up
rc start >/dev/null 2>&1
check up-later-wired [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1" ]

# (ii) running, then gone: stay fail-closed, answer at once.
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
daemon_dead
printf '%s\n' "Sat Dec  6 00:00:01 2026 daemon.err lanveil: dnsmasq now forwards to lanveil" \
	"Sat Dec  6 00:00:02 2026 daemon.err lanveil[4242]: lanveil: cannot read CA bundle /etc/ssl/certs/ca-certificates.crt or /etc/ssl/cert.pem" >"$R/log/logread"
# The shipped guard script itself (what procd runs): it arms the guard. Stopped once it has
# (its status says so) and sleeps before its next check; up to 30 s, however loaded the machine.
guard_script() {
	local pid st=""
	IPKG_INSTROOT="$R" busybox ash "$R/usr/libexec/lanveil-guard" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 1 150); do
		[ -f "$R/var/run/lanveil/status" ] && read -r st _ <"$R/var/run/lanveil/status"
		# Its child: the 'sleep 1' between two checks.
		[ "$st" = down ] && awk -v p="$pid" '$4 == p && $2 == "(sleep)" { f = 1 } END { exit !f }' /proc/[0-9]*/stat 2>/dev/null && break
		sleep 0.2
	done
	kill "$pid"
	wait "$pid" 2>/dev/null
	[ "$st" = down ] || {
		echo "the guard script did not arm the guard within 30 s (status: ${st:-none})"
		return 1
	}
}
check died-guard-check guard_script
check died-guard-table sh -c "nft list table inet lanveil_down | grep -q 'ip daddr 127.0.0.1 udp dport 5453 counter packets 0 bytes 0 drop'"
check died-guard-tcp-reset sh -c "nft list table inet lanveil_down | grep -q 'ip daddr 127.0.0.1 tcp dport 5453 counter packets 0 bytes 0 reject with tcp reset'"
check died-dnsmasq-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check died-capture-stays nft list table inet lanveil
check died-logged grep -q 'daemon.err.*lanveil is not running.*LAN DNS is refused (fail-closed' "$R/log/syslog"
check died-status status_has '^lanveil is NOT running: lanveil is not running (exited, or procd gave up respawning it).$'
check died-status-guard status_has '^Fail-closed guard: on'
check died-status-last-words status_has '^Its last words: lanveil: cannot read CA bundle /etc/ssl/certs/ca-certificates.crt or /etc/ssl/cert.pem$'
guard_check
check died-logged-once [ "$(count "$R/log/syslog" 'LAN DNS is refused')" = 1 ]
daemon_up
check back-guard-check guard_check
check back-guard-lifted sh -c '! nft list table inet lanveil_down 2>/dev/null'
check back-logged grep -q 'lanveil answers again' "$R/log/syslog"
check back-status status_has '^lanveil is running'
# The guard sees the daemon back while a start writes the status too (an owner's start from
# LuCI after procd gave up): two processes write it at once, neither write fails, and the
# file they leave is one of them whole, with no temporary file beside it.
status_writer() {
	busybox ash -c ". '$R/usr/share/lanveil/lanveil.sh'
		i=0
		while [ \$i -lt 300 ]; do
			lanveil_status_set up \"written by $1\" || exit 1
			i=\$((i + 1))
		done"
}
status_writers_race() {
	local a b=0
	status_writer one &
	a=$!
	status_writer two || b=1
	wait "$a" && [ "$b" = 0 ]
}
check status-concurrent-writers-succeed status_writers_race
check status-concurrent-writers-whole sh -c "sed 1d '$R/var/run/lanveil/status' | grep -qx -e 'written by one' -e 'written by two' && [ \$(wc -l <'$R/var/run/lanveil/status') = 2 ]"
check status-concurrent-writers-no-temp sh -c "! ls '$R/var/run/lanveil/' | grep -q 'status\.new'"
# Wired from an earlier run (power loss) and the daemon does not come up: fail-closed too.
daemon_down
rc start >/dev/null 2>&1
check wired-not-up-guard nft list table inet lanveil_down
check wired-not-up-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
# An invalid config while wired: refused, fail-closed; stop undoes everything.
daemon_up
rc start >/dev/null 2>&1
check valid-again-guard-lifted sh -c '! nft list table inet lanveil_down 2>/dev/null'
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
# A reload with a bad file while the daemon runs: procd gets the same instances again (an
# instance missing from the set would be stopped), the daemon keeps its last good
# configuration (SIGHUP, it refuses the file), the LAN keeps working through it.
: >"$R/log/procd"
rc reload >/dev/null 2>&1
code=$?
check invalid-reload-exits-1 [ "$code" = 1 ]
check invalid-reload-keeps-instance [ "$(last_set '(j["instances"]["lanveil"]["command"], j["instances"]["lanveil"]["user"], j["instances"]["lanveil"]["reload_signal"], "guard" in j["instances"])')" = "(['/usr/sbin/lanveil', '--config', '/etc/config/lanveil', '--last-good', '/etc/lanveil/daemon/last-good', '--wan-portal-record', '/var/run/lanveil/wan_portal'], 'lanveil', 1, True)" ]
check invalid-reload-no-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
check invalid-reload-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check invalid-reload-status status_has '^lanveil is running on its last good configuration: /etc/config/lanveil is invalid and was not applied.$'
check invalid-reload-reason status_has 'log_level'
check invalid-reload-logged grep -q 'daemon.err.*log_level' "$R/log/syslog"
# Settings the daemon's check accepts but the init script cannot start with (a user that does
# not exist): on a reload the running daemon is kept too, not stopped into a refused LAN.
uci_ set lanveil.main.log_level=info
uci_ set lanveil.main.user=nosuchuser
uci_ commit lanveil
: >"$R/log/procd"
rc reload >/dev/null 2>&1
code=$?
check bad-user-reload-exits-1 [ "$code" = 1 ]
check bad-user-reload-keeps-instance [ "$(last_set '(j["instances"]["lanveil"]["user"], "guard" in j["instances"])')" = "('lanveil', True)" ]
check bad-user-reload-no-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
check bad-user-reload-status status_has "^user 'nosuchuser' does not exist$"
uci_ delete lanveil.main.user
uci_ set lanveil.main.log_level=INVALID
uci_ commit lanveil
# The daemon is gone and the file is bad: refused, fail-closed.
daemon_dead
rc restart >/dev/null 2>&1
code=$?
check invalid-while-wired-restart-exits-1 [ "$code" = 1 ]
check invalid-while-wired-guard nft list table inet lanveil_down
check invalid-while-wired-status status_has 'lanveil did not start (invalid'
rc stop >/dev/null 2>&1
check stop-lifts-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
check stop-restores-after-guard cmp "$R/etc/config/dhcp" "$ORIG"
check stop-status status_has '^lanveil is stopped'

# --- wan_up returns at once; the restart runs detached, under the service's lock --------------
# procd runs the trigger commands of all services one at a time and waits for each to exit,
# without a time limit (procd service/trigger.c: RUNQUEUE(q, 1)): a wan_up that waited for the
# old daemon to exit and the new one to answer would hold every other trigger of the router
# that long. Here the old daemon is slow to exit (it runs until the test kills it) and the new
# one slow to answer. The doubles' procd lock is flock's, as procd.sh's.
ms_since() { echo $(((${EPOCHREALTIME/./} - ${1/./}) / 1000)); }
lock_free() { flock "$R/var/lock/procd_lanveil.lock" true; }
wait_log() { # FILE PATTERN: up to 10 s
	local _
	for _ in $(seq 1 50); do
		grep -q "$2" "$1" && return 0
		sleep 0.2
	done
	echo "not in ${1##*/}: $2"
	return 1
}
old_daemon() { # a daemon that runs until killed
	"$T/standin/lanveil" 100000 &
	OLD_PID=$!
	daemon_up "$OLD_PID"
}
old_daemon_exits() {
	kill "$OLD_PID"
	wait "$OLD_PID" 2>/dev/null
}
mkroot
uci_ set lanveil.openwrt.start_timeout=5
uci_ commit lanveil
rc start >/dev/null 2>&1
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
old_daemon
: >"$PROCD_LOG"
lock_free
t0=$EPOCHREALTIME
rc wan_up wan >/dev/null 2>&1
wan_ms="$(ms_since "$t0")"
echo "# wan_up (the trigger) returned in $wan_ms ms, the old daemon still running"
check wan-up-trigger-returns-at-once [ "$wan_ms" -lt 1000 ]
check wan-up-returns-while-old-daemon-runs kill -0 "$OLD_PID"
check wan-up-instance-deleted-before-return grep -q '^service delete { "name": "lanveil", "instance": "lanveil" }' "$PROCD_LOG"
check wan-up-not-started-before-old-exits [ "$(count "$PROCD_LOG" '^service set')" = 0 ]
check wan-up-gap-marked [ -e "$R/var/run/lanveil/restarting" ]
# wan6's trigger right after: not held up by the restart under way (it keeps no lock), and
# served by it.
t0=$EPOCHREALTIME
rc wan_up wan6 >/dev/null 2>&1
wan_ms="$(ms_since "$t0")"
echo "# wan_up wan6 returned in $wan_ms ms"
check wan6-trigger-returns-at-once [ "$wan_ms" -lt 1000 ]
check wan6-trigger-served-by-restart grep -q 'daemon.info wan6 up: lanveil was restarted for wan ' "$R/log/syslog"
# The old daemon exits, the new one does not answer yet: the guard does not arm in the gap.
old_daemon_exits
daemon_dead
check wan-up-job-starts-after-old-exits wait_log "$PROCD_LOG" '^service set'
guard_check
check wan-up-gap-guard-not-armed sh -c '! nft list table inet lanveil_down 2>/dev/null'
daemon_up
check wan-up-restart-completes wan_job_done
check wan-up-restarted-once [ "$(count "$PROCD_LOG" '^service ')" = 2 ]
check wan-up-restart-epoch [ "$(last_set 'j["instances"]["lanveil"]["env"]["LANVEIL_WAN_EPOCH"]')" = "$(cat "$R/var/run/lanveil/wan_epoch")" ]
check wan-up-restart-status-up status_has '^lanveil is running; dnsmasq forwards to it.$'
check wan-up-restart-marker-gone [ ! -e "$R/var/run/lanveil/restarting" ]
check wan-up-restart-dhcp-untouched cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check wan-up-restart-no-guard sh -c '! nft list table inet lanveil_down 2>/dev/null'
# The owner stops lanveil while the job waits for the old daemon: the stop is not held up
# (no lock kept meanwhile), and the job then does not start lanveil again.
old_daemon
: >"$PROCD_LOG"
rc wan_up wan >/dev/null 2>&1
t0=$EPOCHREALTIME
check wan-up-then-stop rc stop
check wan-up-then-stop-not-held-up [ "$(ms_since "$t0")" -lt 3000 ]
old_daemon_exits
check wan-up-then-stop-job-done wan_job_done
check wan-up-then-stop-not-started-again [ "$(count "$PROCD_LOG" '^service set')" = 0 ]
check wan-up-then-stop-restored cmp "$R/etc/config/dhcp" "$ORIG"
check wan-up-then-stop-status status_has '^lanveil is stopped'
check wan-up-then-stop-logged grep -q 'daemon.info wan up: lanveil was stopped meanwhile; not started again' "$R/log/syslog"
check wan-up-then-stop-marker-gone [ ! -e "$R/var/run/lanveil/restarting" ]
# The owner stops lanveil while the job starts it (it holds the service's lock, as start does):
# the stop waits for the start, then undoes it all; the job cannot wire dnsmasq after the stop.
daemon_up
rc start >/dev/null 2>&1
old_daemon
: >"$PROCD_LOG"
rc wan_up wan >/dev/null 2>&1
old_daemon_exits
daemon_dead
wait_log "$PROCD_LOG" '^service set' >/dev/null
rc stop >/dev/null 2>&1 &
stop_pid=$!
sleep 1
check stop-waits-for-wan-restart kill -0 "$stop_pid"
check stop-waits-dhcp-still-wired cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
daemon_up
wait "$stop_pid"
check stop-after-wan-restart-job-done wan_job_done
check stop-after-wan-restart-order [ "$(grep -o '^service [a-z]*' "$PROCD_LOG" | tr '\n' ' ')" = "service delete service set service delete " ]
check stop-after-wan-restart-restored cmp "$R/etc/config/dhcp" "$ORIG"
check stop-after-wan-restart-status status_has '^lanveil is stopped'

# --- real dnsmasq + the real daemon ------------------------------------------------------
# dnsmasq forwards as lanveil wired it; the daemon is the real binary (started here, as procd
# would, with its pidfile; the double asks it over its real control socket).
real_conf() { # EXTRA_UCI_LINES -> $T/real.conf (paths inside $R, no user switch)
	{
		printf "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\toption control_socket '%s'\n%s\n" \
			"$R/var/run/lanveil/daemon/control.sock" "$1"
		printf "config upstream 'q'\n\toption url 'tls://192.0.2.1:853#dns.example'\n"
	} >"$T/real.conf"
}
start_real() {
	rm -f "$R/var/run/lanveil/daemon/control.sock"
	"$LANVEIL_REAL_BIN" --config "$T/real.conf" >>"$T/daemon.log" 2>&1 &
	REAL_PID=$!
	echo "$REAL_PID" >"$R/var/run/lanveil/daemon.pid"
}
# dig through dnsmasq; prints "STATUS MILLISECONDS" (STATUS "timeout" when dig got nothing).
ask() {
	local t0 out st
	t0="${EPOCHREALTIME/./}"
	out="$("$DIG" +tries=1 +time=2 -p 5399 @127.0.0.1 "$1" 2>&1)"
	st="$(printf '%s\n' "$out" | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')"
	echo "${st:-timeout} $(((${EPOCHREALTIME/./} - t0) / 1000))"
}
if [ ! -x "$DNSMASQ" ] || [ ! -x "$DIG" ]; then
	fail real-dnsmasq "dnsmasq or dig not installed (Debian: dnsmasq-base dnsutils)"
else
	"$IPCMD" link set lo up
	mkroot
	daemon_down
	touch "$R/log/control.real"
	real_conf ""
	: >"$T/daemon.log"
	start_real
	rc start >/dev/null 2>&1
	check real-wired-once-answering [ "$(servers)" = "127.0.0.1#5453 /use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/ /corp.example/10.0.0.1" ]
	"$DNSMASQ" --no-daemon --conf-file=/dev/null --port=5399 --listen-address=127.0.0.1 --bind-interfaces \
		--no-resolv --server="$(uci_ get dhcp.@dnsmasq[0].server | cut -d' ' -f1)" --pid-file= --user=root \
		--log-facility="$T/dnsmasq.log" 2>/dev/null &
	dnsmasq_pid=$!
	sleep 0.5
	r="$(ask probe1.home.arpa)"
	echo "# real: daemon up: ${r#* } ms, ${r%% *}"
	check real-up-answers [ "${r%% *}" = NXDOMAIN ]
	kill -KILL "$REAL_PID"
	wait "$REAL_PID" 2>/dev/null
	r="$(ask probe2.home.arpa)"
	echo "# real: daemon killed, no guard: ${r#* } ms, ${r%% *}"
	check real-killed-without-guard-times-out [ "${r%% *}" = timeout ]
	guard_check
	r="$(ask probe3.home.arpa)"
	echo "# real: daemon killed, guard armed: ${r#* } ms, ${r%% *}"
	check real-killed-refused [ "${r%% *}" = REFUSED ]
	check real-killed-refused-under-1s [ "${r#* }" -lt 1000 ]
	r="$(ask other.example)"
	check real-killed-no-plaintext [ "${r%% *}" = REFUSED ]
	start_real
	sleep 0.5
	guard_check
	r="$(ask probe4.home.arpa)"
	echo "# real: daemon back, guard lifted: ${r#* } ms, ${r%% *}"
	check real-back-answers [ "${r%% *}" = NXDOMAIN ]
	rc stop >/dev/null 2>&1
	kill "$REAL_PID" "$dnsmasq_pid" 2>/dev/null
	wait "$REAL_PID" "$dnsmasq_pid" 2>/dev/null

	# No CA bundle at start: the daemon exits, the LAN keeps its DNS servers.
	mkroot
	daemon_down
	touch "$R/log/control.real"
	real_conf "	option ca_file '$T/no-such-ca-bundle.pem'"
	: >"$T/daemon.log"
	start_real
	rc start >/dev/null 2>&1
	check real-no-ca-daemon-says-why grep -q 'cannot read CA bundle' "$T/daemon.log"
	check real-no-ca-dhcp-untouched cmp "$R/etc/config/dhcp" "$ORIG"
	check real-no-ca-no-capture sh -c '! nft list table inet lanveil 2>/dev/null'
	check real-no-ca-status status_has 'did not answer within 1 s of starting'
	rc stop >/dev/null 2>&1
fi

finish
