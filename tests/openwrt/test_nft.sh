#!/bin/bash
# The LAN-capture firewall table, as the init script generates it, loaded next to
# an fw4-shaped table in a throwaway "router" network namespace (a real load, not
# just `nft -c`, which misses wrong-hook errors), listed and asserted, then
# exercised with real traffic from a "client" namespace over a veth pair:
# DNS to another resolver is answered by the router, DoT to another resolver is
# refused, and nothing is captured once the table is gone.
# Addresses are documentation prefixes only (192.0.2.0/24, 198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32).
# shellcheck source-path=SCRIPTDIR
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
T="$WORK/nft"
rm -rf "$T"
mkdir -p "$T"
for tool in nft ip dig dnsmasq; do
	command -v "$tool" >/dev/null || fail "tool-$tool" "$tool not installed"
done
RT="lv-router-$$"
CL="lv-client-$$"
BH="lv-wan-$$"
cleanup() {
	[ -f "$T/dnsmasq.pid" ] && kill "$(cat "$T/dnsmasq.pid")" 2>/dev/null
	ip netns del "$RT" 2>/dev/null
	ip netns del "$CL" 2>/dev/null
	ip netns del "$BH" 2>/dev/null
}
trap cleanup EXIT
r() { ip netns exec "$RT" "$@"; }
c() { ip netns exec "$CL" "$@"; }

if ! { ip netns add "$RT" && ip netns add "$CL" && ip netns add "$BH"; }; then
	fail netns "cannot create network namespaces (need root)"
	finish
	exit 1
fi
ip link add br-lan netns "$RT" type veth peer name eth0 netns "$CL"
r ip link set lo up
r ip link set br-lan up
r ip addr add 192.0.2.1/24 dev br-lan
r ip addr add 2001:db8:1::1/64 dev br-lan nodad
# WAN: a veth into a namespace that drops everything (an unreachable upstream),
# reached through a gateway with a permanent neighbour entry (no ARP, no ICMP).
ip link add wan netns "$RT" type veth peer name wan-peer netns "$BH"
ip netns exec "$BH" ip link set wan-peer up
r ip link set wan up
r ip addr add 203.0.113.1/24 dev wan
r ip addr add 2001:db8:2::1/64 dev wan nodad
r ip neigh add 203.0.113.254 lladdr 02:00:5e:00:53:01 dev wan nud permanent
r ip neigh add 2001:db8:2::fe lladdr 02:00:5e:00:53:01 dev wan nud permanent
r ip route add default via 203.0.113.254
r ip -6 route add default via 2001:db8:2::fe
r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
c ip link set lo up
c ip link set eth0 up
c ip addr add 192.0.2.2/24 dev eth0
c ip addr add 2001:db8:1::2/64 dev eth0 nodad
c ip route add default via 192.0.2.1
c ip -6 route add default via 2001:db8:1::1

# fw4-shaped table: the chain names, hooks, priorities and policies fw4 emits
# (firewall4 templates/ruleset.uc) for a default lan/wan setup.
cat >"$T/fw4.nft" <<'EOF'
table inet fw4
flush table inet fw4
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept comment "!fw4: Accept traffic from loopback"
		ct state established,related accept
		iifname "br-lan" jump input_lan
		iifname "wan" jump input_wan
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "br-lan" jump forward_lan
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "lo" accept
	}
	chain handle_reject {
		meta l4proto tcp reject with tcp reset
		reject
	}
	chain input_lan {
		jump accept_from_lan
	}
	chain input_wan {
		jump handle_reject
	}
	chain forward_lan {
		jump accept_to_wan
	}
	chain accept_from_lan {
		iifname "br-lan" counter accept
	}
	chain accept_to_wan {
		oifname "wan" counter accept
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
	}
}
EOF
check fw4-harness-loads r nft -f "$T/fw4.nft"

# The table exactly as the init script renders it.
(
	# shellcheck source=../../openwrt/lanveil/files/lanveil.sh
	. "$PKG/files/lanveil.sh"
	lanveil_fw_render "br-lan" 1 1
) >"$T/lanveil.nft"
check lanveil-table-check-mode r nft -c -f "$T/lanveil.nft"
check lanveil-table-loads r nft -f "$T/lanveil.nft"
check lanveil-table-reloads-atomically r nft -f "$T/lanveil.nft"
r nft list table inet lanveil >"$T/listed.nft"
check listed-dstnat-hook grep -q 'type nat hook prerouting priority dstnat - 5; policy accept;' "$T/listed.nft"
check listed-forward-hook grep -q 'type filter hook forward priority filter - 5; policy accept;' "$T/listed.nft"
check listed-redirect grep -q 'iifname "br-lan" meta l4proto { tcp, udp } th dport 53 fib daddr type != local counter packets 0 bytes 0 redirect to :53' "$T/listed.nft"
check listed-dot-tcp grep -q 'iifname "br-lan" tcp dport 853 counter packets 0 bytes 0 reject with tcp reset' "$T/listed.nft"
check listed-dot-udp grep -q 'iifname "br-lan" udp dport 853 counter packets 0 bytes 0 reject' "$T/listed.nft"
check fw4-table-untouched sh -c "ip netns exec $RT nft list table inet fw4 | grep -q 'chain accept_to_wan'"

# A wrong-hook variant must fail to load (the class of error nft -c misses).
sed 's/type nat hook prerouting priority dstnat - 5/type filter hook prerouting priority dstnat - 5/' "$T/lanveil.nft" >"$T/wrong-hook.nft"
check wrong-hook-passes-nft-c r nft -c -f "$T/wrong-hook.nft"
check wrong-hook-fails-real-load sh -c "! ip netns exec $RT nft -f '$T/wrong-hook.nft' 2>/dev/null"
check table-intact-after-failed-load sh -c "ip netns exec $RT nft list chain inet lanveil dstnat | grep -q 'type nat hook'"

# The router's DNS (stand-in for dnsmasq on OpenWrt).
r dnsmasq --keep-in-foreground --no-resolv --no-hosts --port 53 --bind-interfaces \
	--listen-address 192.0.2.1 --listen-address 2001:db8:1::1 \
	--address=/probe.test/203.0.113.7 --pid-file="$T/dnsmasq.pid" --user=root --group=root \
	2>"$T/dnsmasq.log" &
sleep 1
dq() { c dig +time=2 +tries=1 +short "$@" probe.test A 2>&1; }
check router-dns-direct [ "$(dq @192.0.2.1)" = 203.0.113.7 ]
check capture-udp-ipv4 [ "$(dq @198.51.100.53)" = 203.0.113.7 ]
check capture-tcp-ipv4 [ "$(dq +tcp @198.51.100.53)" = 203.0.113.7 ]
check capture-udp-ipv6 [ "$(dq @2001:db8:ffff::53)" = 203.0.113.7 ]
check capture-tcp-ipv6 [ "$(dq +tcp @2001:db8:ffff::53)" = 203.0.113.7 ]
r nft list chain inet lanveil dstnat >"$T/after.nft"
check redirect-counted-4-flows grep -q 'counter packets 4 ' "$T/after.nft"
check direct-query-not-redirected sh -c "! grep -q 'counter packets 5 ' '$T/after.nft'"
dot() { c timeout 3 bash -c "exec 3<>/dev/tcp/$1/853" 2>&1; echo "rc=$?"; }
check dot-ipv4-refused sh -c "echo '$(dot 198.51.100.53)' | grep -q 'Connection refused'"
check dot-ipv6-refused sh -c "echo '$(dot 2001:db8:ffff::53)' | grep -q 'Connection refused'"

# The leak guard (its own table): nothing dnsmasq's uid (4242 here) sends leaves by the WAN
# device, nor what root sends from dnsmasq's query-port (5300), but to the owner's
# domain-scoped servers (203.0.113.99); other uids and the LAN are untouched. A dropped send
# fails at once (EPERM), a TCP connect is reset, so dnsmasq moves on to lanveil.
(
	# shellcheck source=../../openwrt/lanveil/files/lanveil.sh
	. "$PKG/files/lanveil.sh"
	lanveil_leak_render "wan" "4242" "5300" "203.0.113.99 2001:db8:2::99"
) >"$T/guard.nft"
check guard-table-loads r nft -f "$T/guard.nft"
check guard-keeps-capture sh -c "ip netns exec $RT nft list chain inet lanveil dstnat | grep -q 'redirect to :53'"
# send UID PROTO ADDR PORT: "ok" or the error's name.
send() {
	r python3 - "$@" <<-'PY'
		import errno, os, socket, sys
		uid, proto, addr, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
		sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
		if uid:
		    os.setgid(uid)
		    os.setuid(uid)
		fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
		try:
		    if proto == "udp":
		        s = socket.socket(fam, socket.SOCK_DGRAM)
		        if sport:
		            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
		        s.sendto(b"\0" * 12, (addr, port))
		    else:
		        s = socket.socket(fam, socket.SOCK_STREAM)
		        s.settimeout(1)
		        s.connect((addr, port))
		    print("ok")
		except socket.timeout:
		    print("timeout")
		except OSError as e:
		    print(errno.errorcode.get(e.errno, e.errno))
	PY
}
check guard-drops-udp-to-wan [ "$(send 4242 udp 198.51.100.53 53)" = EPERM ]
check guard-drops-udp6-to-wan [ "$(send 4242 udp 2001:db8:ffff::53 53)" = EPERM ]
check guard-drops-other-ports [ "$(send 4242 udp 198.51.100.53 5353)" = EPERM ]
check guard-resets-tcp-at-once [ "$(send 4242 tcp 198.51.100.53 53)" = ECONNREFUSED ]
check guard-owner-server-exempt [ "$(send 4242 udp 203.0.113.99 53)" = ok ]
check guard-owner-server6-exempt [ "$(send 4242 udp 2001:db8:2::99 53)" = ok ]
check guard-lan-untouched [ "$(send 4242 udp 192.0.2.2 53)" = ok ]
check guard-other-uid-untouched [ "$(send 4243 udp 198.51.100.53 53)" = ok ]
check guard-root-untouched [ "$(send 0 udp 198.51.100.53 53)" = ok ]
check guard-root-from-query-port [ "$(send 0 udp 198.51.100.53 53 5300)" = EPERM ]
check guard-root-from-query-port-lan [ "$(send 0 udp 192.0.2.2 53 5300)" = ok ]
check guard-counted-udp sh -c "ip netns exec $RT nft list chain inet lanveil_leak output | grep -q 'udp counter packets 3 '"
check guard-counted-tcp sh -c "ip netns exec $RT nft list chain inet lanveil_leak output | grep -q 'tcp counter packets 1 '"
check guard-counted-query-port sh -c "ip netns exec $RT nft list chain inet lanveil_leak output | grep -q 'udp sport 5300 counter packets 1 '"

# Stop = table deleted: nothing captured any more (the query goes out to the
# black-hole WAN and times out), fw4's table still there.
check table-deletes r nft delete table inet lanveil
check no-capture-after-stop [ "$(dq @198.51.100.53 | grep -c 203.0.113.7)" = 0 ]
check dot-not-refused-after-stop sh -c "echo '$(dot 198.51.100.53)' | grep -q 'rc=124'"
check fw4-survives-stop r nft list table inet fw4

finish
