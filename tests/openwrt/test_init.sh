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
sandbox init

servers() { uci_ -d ' ' get dhcp.@dnsmasq[0].server; }

# --- start --------------------------------------------------------------------
mkroot
check start-succeeds rc start
check procd-command [ "$(last_set 'j["instances"]["lanveil"]["command"]')" = "['/usr/sbin/lanveil', '--config', '/etc/config/lanveil']" ]
check procd-user-unprivileged [ "$(last_set '(j["instances"]["lanveil"]["user"], j["instances"]["lanveil"]["group"])')" = "('lanveil', 'lanveil')" ]
check procd-respawn [ "$(last_set 'j["instances"]["lanveil"]["respawn"]')" = "['3600', '5', '5']" ]
check procd-reload-signal-hup [ "$(last_set 'j["instances"]["lanveil"]["reload_signal"]')" = 1 ]
check procd-logs-to-syslog [ "$(last_set '(j["instances"]["lanveil"]["stdout"], j["instances"]["lanveil"]["stderr"], j["instances"]["lanveil"]["no_new_privs"])')" = "(True, True, True)" ]
check procd-reload-trigger [ "$(last_set '[t for t in j["triggers"] if t[0] == "config.change"][0][1][1][2]')" = lanveil ]
check procd-wan-up-trigger [ "$(last_set '[t[1][2] for t in j["triggers"] if t[0] == "interface.*.up" and t[1][1][2] == "wan"][0]')" = "['run_script', '/etc/init.d/lanveil', 'wan_up']" ]
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

# --- start again (reload, boot after a crash): idempotent -------------------------
cp "$R/etc/config/dhcp" "$T/dhcp.wired"
check restart-is-idempotent rc reload
check reload-leaves-dhcp-alone cmp "$R/etc/config/dhcp" "$T/dhcp.wired"
check reload-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = 1 ]
check reload-keeps-original cmp "$R/etc/lanveil/dnsmasq/dhcp.orig" "$ORIG"

# --- wan_up restarts only the daemon --------------------------------------------
check wan-up rc wan_up
check wan-up-sets-epoch [ -n "$(last_set 'j["instances"]["lanveil"]["env"]["LANVEIL_WAN_EPOCH"]')" ]
check wan-up-no-dnsmasq-restart [ "$(count "$R/log/dnsmasq" restart)" = 1 ]

# --- stop restores byte for byte ---------------------------------------------------
check stop-succeeds rc stop
check stop-restores-dhcp-byte-for-byte cmp "$R/etc/config/dhcp" "$ORIG"
check stop-removes-nft-table sh -c '! nft list table inet lanveil 2>/dev/null'
check stop-forgets-dnsmasq-state [ ! -e "$R/etc/lanveil/dnsmasq" ]
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
check invalid-config-no-instance [ "$(last_set 'len(j["instances"])')" = 0 ]
check invalid-config-dhcp-untouched cmp "$R/etc/config/dhcp" "$ORIG"
check invalid-config-logged grep -q 'daemon.err.*not starting' "$R/log/syslog"

# --- missing user: refuse ------------------------------------------------------------
mkroot
sed -i '/^lanveil:/d' "$R/etc/passwd"
rc start >/dev/null 2>&1
check missing-user-no-instance [ "$(last_set 'len(j["instances"])')" = 0 ]

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
uci_ delete lanveil.main.user
uci_ commit lanveil
: >"$PROCD_LOG"
rc start >/dev/null 2>&1
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

finish
