# shellcheck shell=busybox
# lanveil: dnsmasq and firewall wiring, sourced by /etc/init.d/lanveil and the
# package's prerm. Everything here is undoable:
#
# dnsmasq  On wire, the user's dnsmasq settings are saved once in /etc/lanveil/
#          (a raw copy of /etc/config/dhcp plus the original server/noresolv/
#          localuse values per dnsmasq section), then every dnsmasq section gets
#          noresolv=1, localuse=1 and server=<lanveil's loopback listeners> ahead of
#          the user's domain-scoped servers (entries with a '/'); unconditional
#          upstreams (no '/') are removed, as they would let queries bypass lanveil.
#          On restore, if /etc/config/dhcp is still exactly what lanveil wrote, the
#          raw copy is put back (byte for byte); if the user changed it meanwhile,
#          lanveil's entries are removed and the saved values put back instead.
#          Changes go through a private uci save dir, so changes the user staged
#          but did not commit are never committed by lanveil.
# firewall An nft table 'inet lanveil' (own table: an error in it cannot break
#          fw4's ruleset, and fw4 reloads do not flush it), generated into
#          /var/run/lanveil and loaded on start, deleted on stop.
#
# Paths honour IPKG_INSTROOT and UCI_CONFIG_DIR (OpenWrt conventions), which is
# also how the tests run this against a scratch root.

LANVEIL_CONFDIR="${UCI_CONFIG_DIR:-${IPKG_INSTROOT:-}/etc/config}"
# /etc/lanveil/: kept over sysupgrade (keep.d). dnsmasq/ holds the saved dnsmasq
# settings (root only); the daemon's own state (option state_file) goes in daemon/,
# owned by the daemon's user.
LANVEIL_ETC="${IPKG_INSTROOT:-}/etc/lanveil"
LANVEIL_STATE="$LANVEIL_ETC/dnsmasq"
LANVEIL_RUN="${IPKG_INSTROOT:-}/var/run/lanveil"
LANVEIL_NL='
'
LANVEIL_TAB='	'
LANVEIL_CANARIES='/use-application-dns.net/ /mask.icloud.com/ /mask-h2.icloud.com/'

# Newline-separated words -> one space-separated line.
lanveil_join() {
	tr '\n' ' ' | sed 's/^ *//; s/ *$//'
}

lanveil_log() { # LEVEL MESSAGE
	if command -v logger >/dev/null 2>&1; then
		logger -t lanveil -p "daemon.$1" "$2"
	else
		echo "lanveil: $2" >&2
	fi
}

lanveil_uci() {
	uci -q -c "$LANVEIL_CONFDIR" "$@"
}

# dhcp is read and written through a private save dir (see above): the
# committed file plus lanveil's own pending changes, never the user's.
lanveil_uci_dhcp() {
	mkdir -p "$LANVEIL_RUN/uci"
	uci -q -c "$LANVEIL_CONFDIR" -t "$LANVEIL_RUN/uci" "$@"
}

lanveil_opt() { # KEY DEFAULT: option of the 'openwrt' section
	local v
	v="$(lanveil_uci get "lanveil.@openwrt[0].$1")" || v=""
	if [ -n "$v" ]; then printf '%s\n' "$v"; else printf '%s\n' "$2"; fi
}

lanveil_bool() { # KEY DEFAULT
	case "$(lanveil_opt "$1" "$2")" in
		1 | yes | on | true | enabled) return 0 ;;
	esac
	return 1
}

lanveil_in() { # ITEM LIST (newline separated)
	case "$LANVEIL_NL$2$LANVEIL_NL" in
		*"$LANVEIL_NL$1$LANVEIL_NL"*) return 0 ;;
	esac
	return 1
}

# dnsmasq 'server' targets for lanveil's listeners: 127.0.0.1:5453 -> 127.0.0.1#5453,
# 0.0.0.0 -> 127.0.0.1, [::] -> ::1, [2001:db8::1]:5453 -> 2001:db8::1#5453.
lanveil_dnsmasq_targets() {
	local l addr port
	for l in $(lanveil_uci get lanveil.@lanveil[0].listen); do
		port="${l##*:}"
		addr="${l%:*}"
		addr="${addr#[}"
		addr="${addr%]}"
		case "$addr" in
			0.0.0.0) addr=127.0.0.1 ;;
			::) addr=::1 ;;
		esac
		[ "$port" = 53 ] && {
			lanveil_log warn "listen $l is dnsmasq's port; not forwarding dnsmasq to it"
			continue
		}
		echo "$addr#$port"
	done
}

lanveil_dnsmasq_sections() {
	lanveil_uci_dhcp -X show dhcp | sed -n 's/^dhcp\.\([A-Za-z0-9_]*\)=dnsmasq$/\1/p'
}

lanveil_get_list() { # dhcp.SECTION.OPTION -> one value per line
	lanveil_uci_dhcp -d "$LANVEIL_NL" get "$1"
}

lanveil_state_get() { # SECTION KEY -> values, one per line
	[ -f "$LANVEIL_STATE/dnsmasq.state" ] || return 0
	awk -F "$LANVEIL_TAB" -v s="$1" -v k="$2" '$1 == s && $2 == k { print substr($0, length($1) + length($2) + 3) }' \
		"$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_has() { # SECTION
	[ -f "$LANVEIL_STATE/dnsmasq.state" ] && grep -q "^$1$LANVEIL_TAB" "$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_put() { # SECTION KEY VALUE
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_drop() { # SECTION KEY
	local f="$LANVEIL_STATE/dnsmasq.state"
	[ -f "$f" ] || return 0
	awk -F "$LANVEIL_TAB" -v s="$1" -v k="$2" '!($1 == s && $2 == k)' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
}

# Saves a section's original values (once per section).
lanveil_save_section() { # SECTION
	local s="$1" v
	lanveil_state_has "$s" && return 0
	for v in noresolv localuse; do
		lanveil_state_put "$s" "$v" "$(lanveil_uci_dhcp get "dhcp.$s.$v" || echo -)"
	done
	lanveil_get_list "dhcp.$s.server" | while IFS= read -r v; do
		lanveil_state_put "$s" server "$v"
	done
	lanveil_state_put "$s" saved 1
}

lanveil_restart_dnsmasq() {
	local init="${IPKG_INSTROOT:-}/etc/init.d/dnsmasq"
	[ -x "$init" ] && "$init" restart >/dev/null 2>&1
	return 0
}

# Points dnsmasq at lanveil. Idempotent: commits and restarts dnsmasq only when
# something changes.
lanveil_dnsmasq_wire() {
	local targets canaries s desired current v added orig pristine
	targets="$(lanveil_dnsmasq_targets)"
	if [ -z "$targets" ]; then
		lanveil_log err "no loopback listener to point dnsmasq at; dnsmasq left unchanged"
		return 1
	fi
	canaries=""
	if lanveil_bool force_dns 1 && lanveil_bool canary_domains 1; then
		for v in $LANVEIL_CANARIES; do canaries="$canaries$v$LANVEIL_NL"; done
	fi
	mkdir -p "$LANVEIL_STATE"
	rm -f "$LANVEIL_RUN/uci/dhcp"
	# dhcp.wired is what lanveil last committed; it only follows lanveil's own
	# commits, so once the user has edited the file it no longer matches and
	# restore undoes lanveil's entries instead of copying dhcp.orig back.
	pristine=0
	if [ ! -f "$LANVEIL_STATE/dhcp.wired" ] || cmp -s "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"; then
		pristine=1
	fi
	if [ ! -f "$LANVEIL_STATE/dhcp.orig" ]; then
		cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.orig" || return 1
		: >"$LANVEIL_STATE/dnsmasq.state"
	fi
	for s in $(lanveil_dnsmasq_sections); do
		lanveil_save_section "$s"
		current="$(lanveil_get_list "dhcp.$s.server")"
		orig="$(lanveil_state_get "$s" server)"
		added="$(lanveil_state_get "$s" added)"
		# Ours first, then the user's domain-scoped entries (minus canaries we added).
		desired="$targets$LANVEIL_NL$canaries"
		while IFS= read -r v; do
			[ -n "$v" ] || continue
			case "$v" in
				*/*)
					lanveil_in "$v" "$added" && continue
					lanveil_in "$v" "$desired" || desired="$desired$v$LANVEIL_NL"
					;;
				*)
					# An unconditional upstream added while lanveil ran: remember it
					# so stop puts it back.
					if ! lanveil_in "$v" "$added" && ! lanveil_in "$v" "$orig"; then
						lanveil_state_put "$s" server "$v"
						orig="$orig$LANVEIL_NL$v"
					fi
					;;
			esac
		done <<-EOF
			$current
		EOF
		desired="$(printf '%s' "$desired" | sed '/^$/d')"
		if [ "$current" != "$desired" ]; then
			lanveil_uci_dhcp delete "dhcp.$s.server"
			while IFS= read -r v; do
				[ -n "$v" ] && lanveil_uci_dhcp add_list "dhcp.$s.server=$v"
			done <<-EOF
				$desired
			EOF
		fi
		lanveil_state_drop "$s" added
		while IFS= read -r v; do
			[ -n "$v" ] || continue
			lanveil_in "$v" "$orig" || lanveil_state_put "$s" added "$v"
		done <<-EOF
			$targets
			$canaries
		EOF
		[ "$(lanveil_uci_dhcp get "dhcp.$s.noresolv")" = 1 ] || lanveil_uci_dhcp set "dhcp.$s.noresolv=1"
		[ "$(lanveil_uci_dhcp get "dhcp.$s.localuse")" = 1 ] || lanveil_uci_dhcp set "dhcp.$s.localuse=1"
	done
	if [ -n "$(lanveil_uci_dhcp changes dhcp)" ]; then
		lanveil_uci_dhcp commit dhcp || return 1
		[ "$pristine" = 1 ] && cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"
		lanveil_log info "dnsmasq now forwards to lanveil ($(printf '%s\n' "$targets" | lanveil_join))"
		lanveil_restart_dnsmasq
	elif [ ! -f "$LANVEIL_STATE/dhcp.wired" ]; then
		cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"
	fi
	return 0
}

# Puts back what lanveil_dnsmasq_wire changed. Idempotent; a no-op when nothing
# was saved.
lanveil_dnsmasq_restore() {
	local s v current added orig keep restored
	[ -f "$LANVEIL_STATE/dhcp.orig" ] || return 0
	rm -f "$LANVEIL_RUN/uci/dhcp"
	if cmp -s "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"; then
		cp -p "$LANVEIL_STATE/dhcp.orig" "$LANVEIL_CONFDIR/.dhcp.lanveil" &&
			mv "$LANVEIL_CONFDIR/.dhcp.lanveil" "$LANVEIL_CONFDIR/dhcp" || return 1
		restored="byte for byte"
	else
		for s in $(lanveil_dnsmasq_sections); do
			lanveil_state_has "$s" || continue
			current="$(lanveil_get_list "dhcp.$s.server")"
			added="$(lanveil_state_get "$s" added)"
			orig="$(lanveil_state_get "$s" server)"
			keep=""
			while IFS= read -r v; do
				[ -n "$v" ] || continue
				case "$v" in */*) ;; *) lanveil_in "$v" "$current" || keep="$keep$v$LANVEIL_NL" ;; esac
			done <<-EOF
				$orig
			EOF
			while IFS= read -r v; do
				[ -n "$v" ] || continue
				lanveil_in "$v" "$added" || keep="$keep$v$LANVEIL_NL"
			done <<-EOF
				$current
			EOF
			lanveil_uci_dhcp delete "dhcp.$s.server"
			while IFS= read -r v; do
				[ -n "$v" ] && lanveil_uci_dhcp add_list "dhcp.$s.server=$v"
			done <<-EOF
				$keep
			EOF
			for v in noresolv localuse; do
				[ "$(lanveil_uci_dhcp get "dhcp.$s.$v")" = 1 ] || continue
				orig="$(lanveil_state_get "$s" "$v")"
				if [ "$orig" = - ]; then
					lanveil_uci_dhcp delete "dhcp.$s.$v"
				else
					lanveil_uci_dhcp set "dhcp.$s.$v=$orig"
				fi
			done
		done
		[ -z "$(lanveil_uci_dhcp changes dhcp)" ] || lanveil_uci_dhcp commit dhcp || return 1
		restored="by undoing lanveil's entries (dhcp was edited meanwhile)"
	fi
	lanveil_forget_state
	lanveil_log info "dnsmasq settings restored $restored"
	lanveil_restart_dnsmasq
}

lanveil_forget_state() {
	rm -f "$LANVEIL_STATE/dhcp.orig" "$LANVEIL_STATE/dhcp.wired" "$LANVEIL_STATE/dnsmasq.state"
	rmdir "$LANVEIL_STATE" "$LANVEIL_ETC" 2>/dev/null
	return 0
}

# Package removal: also the daemon's state.
lanveil_purge() {
	lanveil_forget_state
	rm -rf "$LANVEIL_ETC"
}

# Creates the directory of the daemon's state_file (under /etc/lanveil/ only),
# owned by USER, so the unprivileged daemon can replace the file atomically.
lanveil_state_dir() { # USER
	local f dir ids
	f="$(lanveil_uci get lanveil.@lanveil[0].state_file)" || return 0
	case "$f" in
		/etc/lanveil/*/*) ;;
		*) return 0 ;;
	esac
	dir="${IPKG_INSTROOT:-}${f%/*}"
	ids="$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "${IPKG_INSTROOT:-}/etc/passwd")"
	[ -n "$ids" ] || return 1
	mkdir -p "$dir" && chown "$ids" "$dir" && chmod 0700 "$dir"
}

# The control socket's directory (under /var/run, tmpfs) owned by the daemon's user, so it can
# create the socket after procd started it unprivileged.
lanveil_control_dir() { # USER
	local f dir ids
	f="$(lanveil_uci get lanveil.@lanveil[0].control_socket)" || return 0
	case "$f" in
		/var/run/lanveil/*) ;;
		*) return 0 ;;
	esac
	dir="${IPKG_INSTROOT:-}${f%/*}"
	ids="$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "${IPKG_INSTROOT:-}/etc/passwd")"
	[ -n "$ids" ] || return 1
	mkdir -p "$dir" && chown "$ids" "$dir" && chmod 0700 "$dir"
}

# Firewall zone sections named in force_dns_zone.
lanveil_capture_zones() {
	local zone s
	for zone in $(lanveil_opt force_dns_zone lan); do
		for s in $(lanveil_uci -X show firewall | sed -n 's/^firewall\.\([A-Za-z0-9_]*\)=zone$/\1/p'); do
			[ "$(lanveil_uci get "firewall.$s.name")" = "$zone" ] && echo "$s"
		done
	done
}

# Logical networks (interfaces) of the capture zones.
lanveil_capture_networks() {
	local s
	for s in $(lanveil_capture_zones); do
		lanveil_uci get "firewall.$s.network"
	done | tr ' ' '\n' | sed '/^$/d' | sort -u
}

# Linux devices of the capture zones (zone devices, and the devices of its networks).
lanveil_fw_devices() {
	local s dev net
	# shellcheck source=/dev/null
	[ -f "${IPKG_INSTROOT:-}/lib/functions/network.sh" ] && . "${IPKG_INSTROOT:-}/lib/functions/network.sh"
	{
		for s in $(lanveil_capture_zones); do
			for dev in $(lanveil_uci get "firewall.$s.device"); do
				echo "$dev"
			done
		done
		for net in $(lanveil_capture_networks); do
			dev=""
			network_get_device dev "$net" 2>/dev/null || network_get_physdev dev "$net" 2>/dev/null
			[ -n "$dev" ] && echo "$dev"
		done
	} | sed 's/+$/*/' | sort -u
}

# The nft table for DEVICES (space separated); FORCE_DNS and BLOCK_DOT are 0/1.
lanveil_fw_render() { # DEVICES FORCE_DNS BLOCK_DOT
	local set="" d
	for d in $1; do set="$set${set:+, }\"$d\""; done
	cat <<-EOF
		# Generated by /etc/init.d/lanveil; exists only while lanveil runs.
		table inet lanveil
		delete table inet lanveil
		table inet lanveil {
	EOF
	if [ "$2" = 1 ]; then
		cat <<-EOF
			chain dstnat {
				type nat hook prerouting priority dstnat - 5; policy accept;
				iifname { $set } meta l4proto { tcp, udp } th dport 53 fib daddr type != local counter redirect to :53 comment "lanveil: LAN DNS aimed at other resolvers goes to the router"
			}
		EOF
	fi
	if [ "$3" = 1 ]; then
		cat <<-EOF
			chain forward {
				type filter hook forward priority filter - 5; policy accept;
				iifname { $set } tcp dport 853 counter reject with tcp reset comment "lanveil: no DNS-over-TLS from the LAN to other resolvers"
				iifname { $set } udp dport 853 counter reject comment "lanveil: no DNS-over-QUIC from the LAN to other resolvers"
			}
		EOF
	fi
	echo "}"
}

lanveil_fw_apply() {
	local force=0 dot=0 devs f="$LANVEIL_RUN/lanveil.nft"
	lanveil_bool force_dns 1 && force=1
	lanveil_bool block_dot 0 && dot=1
	if [ "$force$dot" = 00 ]; then
		lanveil_fw_remove
		return 0
	fi
	if ! command -v nft >/dev/null 2>&1; then
		lanveil_log err "nft not found; LAN DNS capture is off"
		return 1
	fi
	devs="$(lanveil_fw_devices | lanveil_join)"
	if [ -z "$devs" ]; then
		lanveil_log err "no devices for zone(s) $(lanveil_opt force_dns_zone lan); LAN DNS capture is off"
		lanveil_fw_remove
		return 1
	fi
	mkdir -p "$LANVEIL_RUN"
	lanveil_fw_render "$devs" "$force" "$dot" >"$f.new" || return 1
	if cmp -s "$f.new" "$f" && nft list table inet lanveil >/dev/null 2>&1; then
		rm -f "$f.new"
		return 0
	fi
	if nft -f "$f.new"; then
		mv "$f.new" "$f"
		lanveil_log info "LAN DNS capture on for $devs$([ $dot = 1 ] && echo ', DoT to others rejected')"
	else
		lanveil_log err "could not load $f.new; LAN DNS capture is off"
		return 1
	fi
}

lanveil_fw_remove() {
	rm -f "$LANVEIL_RUN/lanveil.nft"
	command -v nft >/dev/null 2>&1 || return 0
	nft list table inet lanveil >/dev/null 2>&1 || return 0
	nft delete table inet lanveil && lanveil_log info "LAN DNS capture off"
}
