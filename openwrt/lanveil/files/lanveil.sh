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
# Keys     The saved values of a dnsmasq section are filed under a key that the
#          section carries while wired: 'option lanveil_saved dnsmasq-N', added with
#          lanveil's other changes (so the byte-for-byte restore drops it with them)
#          and deleted by the section-by-section restore. Not the section's uci id:
#          an anonymous section (OpenWrt's default 'config dnsmasq', @dnsmasq[0]) is
#          named by libuci when the file is parsed, from its position in the file and
#          its type (uci_fixup_section: cfg01411c is "section 1, a dnsmasq"), so when
#          the owner deletes or reorders sections (LuCI's dnsmasq instances), ids move
#          to other sections and the saved servers would land on the wrong one. An
#          option moves with its section; dnsmasq's init script reads only the options
#          it knows, and uci and LuCI keep unknown ones. A section without a key whose
#          uci id has saved values was saved by an older lanveil (keyed by id): a restore
#          finds them by that id, the next wiring re-files them under a key of its own
#          (the id passes to another section later). A section whose key has no saved values (the owner removed
#          or changed the option) is not guessed at: only values lanveil added (to any
#          section) are taken out of its servers on restore, and its noresolv and
#          localuse stay. Sections that share a key (a copied block) share the saved
#          values. Saved values of a deleted section are dropped with it.
#          The LAN signals in a 'config dhcp' section (its cap_* lines, see "LAN
#          signals") are keyed alike, with the same option ('dhcp-N': one option, the
#          key of whatever lanveil filed for its section; a dhcp key never has dnsmasq
#          lines, nor the reverse). It is there only while lanveil has signals in the
#          section, and only in anonymous ones: a named section (OpenWrt's 'lan', the
#          ones LuCI creates) is keyed by its name, which never moves. An anonymous
#          section without the option whose uci id has cap_* lines (an older lanveil)
#          has them re-filed under a new key by the next wiring (the id would pass to
#          another section later); a restore before that goes by the id. A key no
#          section carries (deleted, or the option removed) is dropped, not guessed
#          at: unlike loopback servers, the signals' values (the owner's URI) may be
#          the owner's own elsewhere, so none is taken out by value; a section without
#          signals of lanveil's that holds one is named in the log. A copied block with
#          the option: the copy gets a key of its own (and a copy of the lines).
# firewall An nft table 'inet lanveil' (own table: an error in it cannot break
#          fw4's ruleset, and fw4 reloads do not flush it), generated into
#          /var/run/lanveil and loaded on start, deleted on stop.
# LAN      Captive-portal URI / IPv6-only preferred for the LAN's DHCP and RA,
#          part of the dnsmasq wiring above (same save/restore); see "LAN signals".
# WAN      DHCP option 114 requested on the WAN ('reqopts'), and the udhcpc hook
#          that hands the learned URI to the daemon and the LAN; see below.
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

# Replaces list KEY of dhcp section S with VALUES (newline-separated, empty ones skipped).
lanveil_dhcp_set_list() { # S KEY VALUES
	local v
	lanveil_uci_dhcp delete "dhcp.$1.$2"
	while IFS= read -r v; do
		[ -n "$v" ] && lanveil_uci_dhcp add_list "dhcp.$1.$2=$v"
	done <<-EOF
		$3
	EOF
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

# The lines of LIST that are not in EXCLUDE (both newline separated), one per line.
lanveil_list_minus() { # LIST EXCLUDE
	local v
	while IFS= read -r v; do
		[ -n "$v" ] || continue
		lanveil_in "$v" "$2" || printf '%s\n' "$v"
	done <<-EOF
		$1
	EOF
}

lanveil_in() { # ITEM LIST (newline separated)
	case "$LANVEIL_NL$2$LANVEIL_NL" in
		*"$LANVEIL_NL$1$LANVEIL_NL"*) return 0 ;;
	esac
	return 1
}

# The daemon's listener when 'listen' is unset (firmware/config/src/keys.rs).
LANVEIL_DEFAULT_LISTEN=127.0.0.1:5353

# dnsmasq 'server' targets for lanveil's listeners: 127.0.0.1:5453 -> 127.0.0.1#5453,
# 0.0.0.0 -> 127.0.0.1, [::] -> ::1, [2001:db8::1]:5453 -> 2001:db8::1#5453.
lanveil_dnsmasq_targets() {
	local l addr port listen
	listen="$(lanveil_uci get lanveil.@lanveil[0].listen)" || listen=""
	for l in ${listen:-$LANVEIL_DEFAULT_LISTEN}; do
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

lanveil_state_get() { # KEY KIND -> values, one per line (KEY: the section's, see "Keys")
	[ -f "$LANVEIL_STATE/dnsmasq.state" ] || return 0
	awk -F "$LANVEIL_TAB" -v s="$1" -v k="$2" '$1 == s && $2 == k { print substr($0, length($1) + length($2) + 3) }' \
		"$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_has() { # KEY: its dnsmasq settings were saved
	[ -n "$(lanveil_state_get "$1" saved)" ]
}

# Keys (of sections of any config) with a lanveil entry KIND_PREFIX* in the state file.
lanveil_state_sections() { # KIND_PREFIX
	[ -f "$LANVEIL_STATE/dnsmasq.state" ] || return 0
	awk -F "$LANVEIL_TAB" -v p="$1" 'index($2, p) == 1 && !seen[$1]++ { print $1 }' "$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_put() { # KEY KIND VALUE
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$LANVEIL_STATE/dnsmasq.state"
}

lanveil_state_drop() { # KEY KIND
	local f="$LANVEIL_STATE/dnsmasq.state"
	[ -f "$f" ] || return 0
	awk -F "$LANVEIL_TAB" -v s="$1" -v k="$2" '!($1 == s && $2 == k)' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
}

# The option a wired dnsmasq section carries its key in (see "Keys" above).
LANVEIL_KEY_OPT=lanveil_saved

# The key a dnsmasq section's saved values are filed under: its lanveil_saved option; else its
# uci id when an older lanveil saved it under that; else nothing. Only [A-Za-z0-9_-] counts.
lanveil_dnsmasq_key() { # SECTION
	local k
	k="$(lanveil_uci_dhcp get "dhcp.$1.$LANVEIL_KEY_OPT")" || k=""
	case "$k" in *[!A-Za-z0-9_-]*) k="" ;; esac
	if [ -z "$k" ] && lanveil_state_has "$1"; then
		k="$1"
	fi
	printf '%s\n' "$k"
}

# KEY's state lines of one kind, dnsmasq (its saved settings) or cap (its LAN signals: cap_*),
# filed under NEW instead (move), or also under NEW (copy).
lanveil_state_refile() { # KEY NEW dnsmasq|cap move|copy
	local f="$LANVEIL_STATE/dnsmasq.state"
	awk -F "$LANVEIL_TAB" -v o="$1" -v n="$2" -v c="$3" -v m="$4" '
		$1 == o && (index($2, "cap_") == 1) == (c == "cap") { if (m == "copy") print; print n substr($0, length($1) + 1); next }
		{ print }' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
}

# A key no section carries and nothing is saved under: TYPE-N (dnsmasq-N, dhcp-N), N one more
# than any in use. Never a uci id: those have no '-'.
lanveil_new_key() { # TYPE
	local n
	n="$({
		[ -f "$LANVEIL_STATE/dnsmasq.state" ] && cut -f1 "$LANVEIL_STATE/dnsmasq.state"
		lanveil_uci_dhcp -X show dhcp | sed -n "s/^dhcp\.[A-Za-z0-9_]*\.$LANVEIL_KEY_OPT='\(.*\)'\$/\1/p"
	} | sed -n "s/^$1-\([0-9][0-9]*\)\$/\1/p" | awk '$1 > m { m = $1 } END { print m + 1 }')"
	echo "$1-$n"
}

# Saves section S's original values under KEY (once per key). SKIP: values (newline
# separated) not to save as the owner's: lanveil's own servers, for a section that first
# shows up while dnsmasq is already wired (it can have them only from a wired section it
# was copied from; saved, they would be put back by stop).
lanveil_save_section() { # SECTION KEY [SKIP]
	local s="$1" k="$2" v
	lanveil_state_has "$k" && return 0
	for v in noresolv localuse; do
		lanveil_state_put "$k" "$v" "$(lanveil_uci_dhcp get "dhcp.$s.$v" || echo -)"
	done
	lanveil_get_list "dhcp.$s.server" | while IFS= read -r v; do
		lanveil_in "$v" "${3:-}" || lanveil_state_put "$k" server "$v"
	done
	lanveil_state_put "$k" saved 1
}

lanveil_restart_dnsmasq() {
	local init="${IPKG_INSTROOT:-}/etc/init.d/dnsmasq"
	[ -x "$init" ] && "$init" restart >/dev/null 2>&1
	return 0
}

lanveil_reload_odhcpd() {
	local init="${IPKG_INSTROOT:-}/etc/init.d/odhcpd"
	[ -x "$init" ] && "$init" reload >/dev/null 2>&1
	return 0
}

# One writer at a time: the init script and the udhcpc hook (WAN lease events)
# both rewire /etc/config/dhcp. A lock left by a killed writer is broken after 10 s.
lanveil_lock() {
	local n=0
	mkdir -p "$LANVEIL_RUN"
	while ! mkdir "$LANVEIL_RUN/.lock" 2>/dev/null; do
		n=$((n + 1))
		[ "$n" -ge 10 ] && break
		sleep 1
	done
	return 0
}

lanveil_unlock() {
	rmdir "$LANVEIL_RUN/.lock" 2>/dev/null
	return 0
}

# Points dnsmasq at lanveil and applies the LAN signals (captive portal, IPv6-only
# preferred) and the WAN's request for DHCP option 114. Idempotent: commits and
# restarts dnsmasq/odhcpd/the WAN only when something changes.
lanveil_dnsmasq_wire() {
	local rc
	lanveil_lock
	lanveil_dnsmasq_wire_locked
	rc=$?
	lanveil_unlock
	return "$rc"
}

lanveil_dnsmasq_wire_locked() {
	local targets canaries s k n desired current v added orig pristine dns_changed skip=""
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
	else
		skip="$targets$LANVEIL_NL$canaries"
	fi
	for s in $(lanveil_dnsmasq_sections); do
		k="$(lanveil_dnsmasq_key "$s")"
		if [ -z "$k" ]; then
			k="$(lanveil_new_key dnsmasq)"
		elif [ "$k" = "$s" ]; then
			# Saved by an older lanveil under the uci id: re-filed under a key of its own (the
			# id passes to another section once the owner deletes or reorders one, and that
			# section, without the option, would be taken for this one).
			n="$(lanveil_new_key dnsmasq)"
			lanveil_state_refile "$k" "$n" dnsmasq move
			k="$n"
		fi
		lanveil_save_section "$s" "$k" "$skip"
		[ "$(lanveil_uci_dhcp get "dhcp.$s.$LANVEIL_KEY_OPT")" = "$k" ] || lanveil_uci_dhcp set "dhcp.$s.$LANVEIL_KEY_OPT=$k"
		current="$(lanveil_get_list "dhcp.$s.server")"
		orig="$(lanveil_state_get "$k" server)"
		added="$(lanveil_state_get "$k" added)"
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
					# so stop puts it back (lanveil's own: in a section copied from a
					# wired one).
					if ! lanveil_in "$v" "$added" && ! lanveil_in "$v" "$orig" && ! lanveil_in "$v" "$targets"; then
						lanveil_state_put "$k" server "$v"
						orig="$orig$LANVEIL_NL$v"
					fi
					;;
			esac
		done <<-EOF
			$current
		EOF
		desired="$(printf '%s' "$desired" | sed '/^$/d')"
		if [ "$current" != "$desired" ]; then
			lanveil_dhcp_set_list "$s" server "$desired"
		fi
		lanveil_state_drop "$k" added
		while IFS= read -r v; do
			[ -n "$v" ] || continue
			lanveil_in "$v" "$orig" || lanveil_state_put "$k" added "$v"
		done <<-EOF
			$targets
			$canaries
		EOF
		[ "$(lanveil_uci_dhcp get "dhcp.$s.noresolv")" = 1 ] || lanveil_uci_dhcp set "dhcp.$s.noresolv=1"
		[ "$(lanveil_uci_dhcp get "dhcp.$s.localuse")" = 1 ] || lanveil_uci_dhcp set "dhcp.$s.localuse=1"
	done
	dns_changed="$(lanveil_uci_dhcp changes dhcp)"
	LANVEIL_CAP_DNSMASQ=0 LANVEIL_CAP_ODHCPD=0
	lanveil_cap_wire
	if [ -n "$(lanveil_uci_dhcp changes dhcp)" ]; then
		lanveil_uci_dhcp commit dhcp || return 1
		[ "$pristine" = 1 ] && cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"
		[ -n "$dns_changed" ] && lanveil_log info "dnsmasq now forwards to lanveil ($(printf '%s\n' "$targets" | lanveil_join))"
		[ -n "$dns_changed" ] || [ "$LANVEIL_CAP_DNSMASQ" = 1 ] && lanveil_restart_dnsmasq
		[ "$LANVEIL_CAP_ODHCPD" = 1 ] && lanveil_reload_odhcpd
	elif [ ! -f "$LANVEIL_STATE/dhcp.wired" ]; then
		cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"
	fi
	return 0
}

# /etc/config/dhcp changed while lanveil runs (procd's config.change trigger for dhcp:
# LuCI's apply, reload_config): the owner may have added an unconditional upstream or
# turned noresolv off, which dnsmasq (reloaded by the same event) would use in plaintext.
# Wires again, only while lanveil's wiring is in place (checked under the lock, so a stop
# running at the same time wins). lanveil's own commits go through the uci CLI, which
# sends no config.change: no loop (a later reload_config reports the file once, and
# wiring again is then a no-op).
lanveil_dnsmasq_rewire() {
	local rc=0
	lanveil_lock
	if lanveil_wired && lanveil_bool dnsmasq 1; then
		lanveil_dnsmasq_wire_locked
		rc=$?
		# The owner's domain-scoped servers may have changed: the guard's exemptions follow.
		lanveil_leak_apply
	fi
	lanveil_unlock
	return "$rc"
}

# Puts back what lanveil_dnsmasq_wire changed. Idempotent; a no-op when nothing
# was saved.
lanveil_dnsmasq_restore() {
	local rc
	lanveil_lock
	lanveil_dnsmasq_restore_locked
	rc=$?
	lanveil_unlock
	return "$rc"
}

lanveil_dnsmasq_restore_locked() {
	local s k v current added orig keep restored odhcpd=0 ours
	rm -f "$LANVEIL_RUN/capport"
	[ -f "$LANVEIL_STATE/dhcp.orig" ] || return 0
	rm -f "$LANVEIL_RUN/uci/dhcp"
	for v in captive_portal_uri ipv6_only_preferred dhcpv6_raw; do
		[ -n "$(lanveil_state_sections "cap_$v")" ] && odhcpd=1
	done
	if cmp -s "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_STATE/dhcp.wired"; then
		cp -p "$LANVEIL_STATE/dhcp.orig" "$LANVEIL_CONFDIR/.dhcp.lanveil" &&
			mv "$LANVEIL_CONFDIR/.dhcp.lanveil" "$LANVEIL_CONFDIR/dhcp" || return 1
		restored="byte for byte"
	else
		# What lanveil added to any section: all that is taken out of one without saved values.
		ours="$(awk -F "$LANVEIL_TAB" '$2 == "added" { print substr($0, length($1) + length($2) + 3) }' "$LANVEIL_STATE/dnsmasq.state" 2>/dev/null)"
		for s in $(lanveil_dnsmasq_sections); do
			k="$(lanveil_dnsmasq_key "$s")"
			[ -z "$(lanveil_uci_dhcp get "dhcp.$s.$LANVEIL_KEY_OPT")" ] || lanveil_uci_dhcp delete "dhcp.$s.$LANVEIL_KEY_OPT"
			current="$(lanveil_get_list "dhcp.$s.server")"
			if [ -z "$k" ] || ! lanveil_state_has "$k"; then
				# Nothing saved for it (see "Keys" above): lanveil's own servers out, the rest stays.
				keep="$(lanveil_list_minus "$current" "$ours")"
				if [ "$keep" != "$current" ]; then
					lanveil_dhcp_set_list "$s" server "$keep"
					lanveil_log warn "dhcp.$s: no saved dnsmasq settings for this section (its option $LANVEIL_KEY_OPT was changed or removed); only lanveil's servers were taken out, check its servers, noresolv and localuse"
				fi
				continue
			fi
			added="$(lanveil_state_get "$k" added)"
			orig="$(lanveil_state_get "$k" server)"
			keep=""
			while IFS= read -r v; do
				[ -n "$v" ] || continue
				case "$v" in */*) ;; *) lanveil_in "$v" "$current" || keep="$keep$v$LANVEIL_NL" ;; esac
			done <<-EOF
				$orig
			EOF
			keep="$keep$(lanveil_list_minus "$current" "$added")"
			lanveil_dhcp_set_list "$s" server "$keep"
			for v in noresolv localuse; do
				[ "$(lanveil_uci_dhcp get "dhcp.$s.$v")" = 1 ] || continue
				orig="$(lanveil_state_get "$k" "$v")"
				if [ "$orig" = - ]; then
					lanveil_uci_dhcp delete "dhcp.$s.$v"
				else
					lanveil_uci_dhcp set "dhcp.$s.$v=$orig"
				fi
			done
		done
		# LAN signals: out of every section lanveil added some to (see "Keys").
		lanveil_cap_split
		lanveil_cap_off ""
		[ -z "$(lanveil_uci_dhcp changes dhcp)" ] || lanveil_uci_dhcp commit dhcp || return 1
		restored="by undoing lanveil's entries (dhcp was edited meanwhile)"
	fi
	lanveil_forget_state
	lanveil_log info "dnsmasq settings restored $restored"
	lanveil_restart_dnsmasq
	[ "$odhcpd" = 1 ] && lanveil_reload_odhcpd
	return 0
}

lanveil_forget_state() {
	rm -f "$LANVEIL_STATE/dhcp.orig" "$LANVEIL_STATE/dhcp.wired" "$LANVEIL_STATE/dnsmasq.state"
	rmdir "$LANVEIL_STATE" "$LANVEIL_ETC" 2>/dev/null
	return 0
}

# Package removal: also the WAN's reqopts and the daemon's state.
lanveil_purge() {
	lanveil_lock
	lanveil_net_restore
	lanveil_unlock
	lanveil_forget_state
	rm -rf "$LANVEIL_ETC"
	rm -f "${IPKG_INSTROOT:-}/etc/uci-defaults/99-lanveil-sysupgrade"
}

# Creates DIR (at or below BASE, both root paths already checked for '..') and hands it to
# USER (0700). No symlink is followed between BASE and DIR: chown would follow one and give
# the daemon's user whatever it points to.
lanveil_user_dir() { # USER DIR BASE
	local ids root="${IPKG_INSTROOT:-}" p
	ids="$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "$root/etc/passwd")"
	[ -n "$ids" ] || return 1
	mkdir -p "$root$2" || return 1
	p="$2"
	while :; do
		[ -L "$root$p" ] && return 1
		[ "$p" = "$3" ] && break
		p="${p%/*}"
		[ -n "$p" ] || return 1
	done
	chown "$ids" "$root$2" && chmod 0700 "$root$2"
}

# Creates the directory of the daemon's state_file, owned by USER, so the unprivileged
# daemon can replace the file atomically. Only /etc/lanveil/daemon/ (or below) is handed
# over: /etc/lanveil/dnsmasq/ and /etc/lanveil/network/ hold root's saved settings, which
# stop and opkg remove copy back into /etc/config, so the daemon's user must never be able
# to write there (nor anywhere a '..' leads).
lanveil_state_dir() { # USER
	local f
	f="$(lanveil_uci get lanveil.@lanveil[0].state_file)" || return 0
	case "$f" in
		*/../* | */./* | */.. | */. | *//*) return 1 ;;
		/etc/lanveil/daemon/*) ;;
		/etc/lanveil/*) return 1 ;;
		*) return 0 ;;
	esac
	lanveil_user_dir "$1" "${f%/*}" /etc/lanveil/daemon
}

# The control socket's directory, owned by the daemon's user so it can bind the
# socket. Only /var/run/lanveil/daemon/ (or below) is handed over: /var/run/lanveil
# itself holds root's state (uci save dir, nft file, lock), which the daemon's
# user must not be able to replace.
lanveil_control_dir() { # USER
	local f
	f="$(lanveil_uci get lanveil.@lanveil[0].control_socket)" || return 0
	case "$f" in
		*/../* | */./* | */.. | */. | *//*) return 1 ;;
		/var/run/lanveil/daemon/*) ;;
		/var/run/lanveil/*) return 1 ;;
		*) return 0 ;;
	esac
	lanveil_user_dir "$1" "${f%/*}" /var/run/lanveil/daemon
}

# Firewall zone sections with the names given.
lanveil_zones_named() { # NAME...
	local zone s
	for zone in "$@"; do
		for s in $(lanveil_uci -X show firewall | sed -n 's/^firewall\.\([A-Za-z0-9_]*\)=zone$/\1/p'); do
			[ "$(lanveil_uci get "firewall.$s.name")" = "$zone" ] && echo "$s"
		done
	done
}

# Logical networks (interfaces) of firewall zone sections.
lanveil_zone_networks() { # ZONE_SECTION...
	local s
	for s in "$@"; do
		lanveil_uci get "firewall.$s.network"
	done | tr ' ' '\n' | sed '/^$/d' | sort -u
}

# Firewall zone sections named in force_dns_zone.
lanveil_capture_zones() {
	# shellcheck disable=SC2046  # one argument per zone name
	lanveil_zones_named $(lanveil_opt force_dns_zone lan)
}

# Logical networks (interfaces) of the capture zones.
lanveil_capture_networks() {
	# shellcheck disable=SC2046  # one argument per zone section name
	lanveil_zone_networks $(lanveil_capture_zones)
}

# Linux devices of firewall zone sections (zone devices, and the devices of their networks).
lanveil_zone_devices() { # ZONE_SECTION...
	local s dev net pdev
	# shellcheck source=/dev/null
	[ -f "${IPKG_INSTROOT:-}/lib/functions/network.sh" ] && . "${IPKG_INSTROOT:-}/lib/functions/network.sh"
	{
		for s in "$@"; do
			for dev in $(lanveil_uci get "firewall.$s.device"); do
				echo "$dev"
			done
			# The layer-3 device (up) and the one the protocol makes (pppoe: pppoe-wan), else
			# the network's own device (also known while down): the same names whether the
			# network is up or not, so a redial or a boot does not change the tables (nor the
			# leak guard's copy on flash). Not the device under a protocol's own (pppoe's
			# carrier may be a LAN device: br-lan, a single-port router's eth0).
			for net in $(lanveil_uci get "firewall.$s.network"); do
				dev=""
				network_get_device dev "$net" 2>/dev/null && [ -n "$dev" ] && echo "$dev"
				pdev="$(lanveil_net_proto_device "$net")"
				if [ -n "$pdev" ]; then
					echo "$pdev"
				else
					dev=""
					network_get_physdev dev "$net" 2>/dev/null && [ -n "$dev" ] && echo "$dev"
				fi
			done
		done
	} | sed 's/+$/*/' | sort -u
}

# The device a network's protocol makes for itself when it comes up, named from the
# configuration alone: known while the interface is still down (a boot, a redial), when
# netifd reports at most the device underneath (pppoe's ethernet port). netifd's protocol
# scripts: ppp, pppoe, pppoa, pptp and 3g use option pppname, else PROTO-NETWORK (ppp.sh);
# 6in4, 6rd, 6to4 and map PROTO-NETWORK, dslite ds-NETWORK, gre gre4-NETWORK, grev6
# gre6-NETWORK; wireguard the network's own name.
lanveil_net_proto_device() { # NETWORK
	local proto name
	proto="$(lanveil_uci get "network.$1.proto")" || return 0
	case "$proto" in
		ppp | pppoe | pppoa | pptp | 3g)
			name="$(lanveil_uci get "network.$1.pppname")" || name=""
			echo "${name:-$proto-$1}"
			;;
		6in4 | 6rd | 6to4 | map) echo "$proto-$1" ;;
		dslite) echo "ds-$1" ;;
		gre) echo "gre4-$1" ;;
		grev6) echo "gre6-$1" ;;
		wireguard) echo "$1" ;;
	esac
	return 0
}

# Linux devices of the capture zones.
lanveil_fw_devices() {
	# shellcheck disable=SC2046  # one argument per zone section name (letters, digits, _)
	lanveil_zone_devices $(lanveil_capture_zones)
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
	lanveil_fw_render "$devs" "$force" "$dot" >"$f.new.$$" || return 1
	lanveil_nft_swap "$f" inet lanveil
	case $? in
		0) lanveil_log info "LAN DNS capture on for $devs$([ $dot = 1 ] && echo ', DoT to others rejected')" ;;
		1)
			lanveil_log err "could not load the table 'inet lanveil'; LAN DNS capture is off"
			return 1
			;;
	esac
	return 0
}

# Loads FILE.new.$$ (a table's whole text, this process's: the init script, the guard and
# hotplug may render the same table at once) unless FILE holds the same and the table FAMILY
# NAME is loaded: 0 loaded (FILE.new.$$ became FILE), 1 nft refused it (removed), 2 unchanged.
lanveil_nft_swap() { # FILE FAMILY NAME
	if cmp -s "$1.new.$$" "$1" && nft list table "$2" "$3" >/dev/null 2>&1; then
		rm -f "$1.new.$$"
		return 2
	fi
	if nft -f "$1.new.$$"; then
		mv "$1.new.$$" "$1"
		return 0
	fi
	rm -f "$1.new.$$"
	return 1
}

# --- The leak guard -----------------------------------------------------------------
#
# While dnsmasq forwards to lanveil (lanveil_wired), nothing dnsmasq sends leaves by the
# devices of the leak-guard zones (list leak_guard_zone, default wan): a server= line from
# outside uci (/etc/dnsmasq.conf, another package's file in /tmp/dnsmasq.d) would otherwise
# send some of the LAN's queries to the ISP in plaintext. Its own table, 'inet lanveil_leak'
# (a fault in it cannot take the LAN capture down), loaded whenever the wiring is in place:
# before the daemon answers, while it is down (lanveil_guard_arm), after a dhcp change
# (rewire) and when a guard zone's interface comes up; removed with the wiring. dnsmasq is
# matched by the uids its running processes have and the dnsmasq user's in /etc/passwd, and, when a
# query-port is set, by that source port from root (dnsmasq opens those sockets before it
# drops root). UDP is dropped (sendto fails at once), TCP reset: dnsmasq moves on to lanveil.
# The owner's domain-scoped servers and rev-servers in /etc/config/dhcp are exempt.
LANVEIL_LEAK_NFT="$LANVEIL_RUN/lanveil_leak.nft"
# Boot: a reboot keeps the wiring (the init script's shutdown), so dnsmasq (S19) starts
# forwarding to lanveil, the WAN comes up from S20 (network), and lanveil's own start comes
# only at S25. The table as last loaded is kept on flash (rewritten only when it changes) and
# /etc/init.d/lanveil_early (S19) loads it before the network is up; lanveil's start then
# renders it afresh (or keeps it while the zones' networks have no device yet). Its devices
# are the ones of the last run, named as strings: they match once they exist. The copy goes
# with the table (the wiring undone, leak_guard '0'). The owner may have moved devices since
# (the WAN from eth1 to pppoe or a wwan, a port from the WAN to the LAN, a sysupgrade that
# renamed them): the copy's devices are checked against the configuration first (see
# lanveil_leak_carry), so what dnsmasq sends by a device that is now the LAN's is not dropped
# until lanveil starts, and a new WAN device is guarded from the start.
LANVEIL_LEAK_SAVED="$LANVEIL_ETC/leak_guard.nft"

# Zone sections named in leak_guard_zone.
lanveil_leak_zones() {
	# shellcheck disable=SC2046  # one argument per zone name
	lanveil_zones_named $(lanveil_opt leak_guard_zone wan)
}

# Logical networks of the leak-guard zones (their ifup re-applies the guard).
lanveil_leak_networks() {
	# shellcheck disable=SC2046  # one argument per zone section name
	lanveil_zone_networks $(lanveil_leak_zones)
}

# uids dnsmasq runs as: its running processes' and the dnsmasq user's; never root's (root
# is everyone: matched by port instead) nor lanveil's own user's.
lanveil_dnsmasq_uids() {
	local d uid own
	own="$(lanveil_uci get lanveil.@lanveil[0].user)" || own=""
	[ -n "$own" ] && own="$(awk -F: -v u="$own" '$1 == u { print $3; exit }' "${IPKG_INSTROOT:-}/etc/passwd" 2>/dev/null)"
	{
		for d in "${IPKG_INSTROOT:-}"/proc/[0-9]*; do
			[ -r "$d/comm" ] && [ "$(cat "$d/comm" 2>/dev/null)" = dnsmasq ] || continue
			awk '$1 == "Uid:" { print $2; exit }' "$d/status" 2>/dev/null
		done
		awk -F: '$1 == "dnsmasq" { print $3; exit }' "${IPKG_INSTROOT:-}/etc/passwd" 2>/dev/null
	} | sort -un | while read -r uid; do
		case "$uid" in '' | 0 | *[!0-9]*) continue ;; esac
		[ "$uid" = "$own" ] && continue
		echo "$uid"
	done
}

# Source ports dnsmasq's configuration fixes for its queries (query-port=N, N > 0).
lanveil_dnsmasq_query_ports() {
	cat "${IPKG_INSTROOT:-}"/var/etc/dnsmasq.conf.* "${IPKG_INSTROOT:-}"/etc/dnsmasq.conf \
		"${IPKG_INSTROOT:-}"/tmp/dnsmasq.d/* 2>/dev/null |
		sed -n 's/^[[:space:]]*query-port=\([0-9][0-9]*\)[[:space:]]*$/\1/p' | sort -un |
		while read -r p; do [ "$p" -gt 0 ] && [ "$p" -lt 65536 ] && echo "$p"; done
}

# Addresses of the owner's domain-scoped dnsmasq servers (server=/DOMAIN/ADDR[#PORT][@SOURCE])
# and rev-servers (PREFIX,ADDR[#PORT]) in /etc/config/dhcp, which the wiring keeps.
lanveil_dnsmasq_owner_servers() {
	local s v a
	for s in $(lanveil_dnsmasq_sections); do
		lanveil_get_list "dhcp.$s.server"
		lanveil_get_list "dhcp.$s.rev_server" | sed -n 's/^[^,]*,/\//p'
	done | while IFS= read -r v; do
		case "$v" in */*) ;; *) continue ;; esac
		a="${v##*/}"
		a="${a%%@*}"
		a="${a%%#*}"
		lanveil_is_ip "$a" && echo "$a"
	done | sort -u
}

# A literal IPv4 or IPv6 address (as nft takes it)?
lanveil_is_ip() {
	case "$1" in
		*:*)
			case "$1" in *[!0-9A-Fa-f:.]* | *:::*) return 1 ;; esac
			;;
		*.*.*.*)
			echo "$1" | awk -F. 'NF != 4 { exit 1 } { for (i = 1; i <= 4; i++) if ($i !~ /^[0-9]+$/ || $i > 255) exit 1 }'
			;;
		*) return 1 ;;
	esac
}

# The guard's table. DEVICES: the guard zones' devices; UIDS: dnsmasq's; PORTS: its fixed
# query ports (sent from root); EXEMPT: addresses it may reach.
lanveil_leak_render() { # DEVICES UIDS PORTS EXEMPT ZONES
	local wset="" uset="" d fam
	for d in $1; do wset="$wset${wset:+, }\"$d\""; done
	for d in $2; do uset="$uset${uset:+, }$d"; done
	printf '# Generated by /etc/init.d/lanveil; exists while dnsmasq forwards to lanveil.\n'
	printf '# zones: %s\n' "${5:-}"
	printf 'table inet lanveil_leak\ndelete table inet lanveil_leak\ntable inet lanveil_leak {\n'
	printf '\tchain output {\n\t\ttype filter hook output priority filter - 5; policy accept;\n'
	for d in $4; do
		case "$d" in *:*) fam=ip6 ;; *) fam=ip ;; esac
		printf '\t\t%s daddr %s accept comment "lanveil: the owner'"'"'s domain-scoped dnsmasq server"\n' "$fam" "$d"
	done
	if [ -n "$uset" ]; then
		printf '\t\tmeta skuid { %s } oifname { %s } meta l4proto tcp counter reject with tcp reset comment "lanveil: dnsmasq forwards only to lanveil"\n' "$uset" "$wset"
		printf '\t\tmeta skuid { %s } oifname { %s } meta l4proto udp counter drop comment "lanveil: dnsmasq forwards only to lanveil"\n' "$uset" "$wset"
	fi
	for d in $3; do
		printf '\t\tmeta skuid 0 oifname { %s } udp sport %s counter drop comment "lanveil: dnsmasq'"'"'s query-port (opened as root)"\n' "$wset" "$d"
	done
	printf '\t}\n}\n'
}

# Loads (or keeps, or removes) the guard for the current wiring and settings.
lanveil_leak_apply() {
	local devs uids ports zones loaded f="$LANVEIL_LEAK_NFT"
	if ! lanveil_wired || ! lanveil_bool leak_guard 1; then
		lanveil_leak_remove
		return 0
	fi
	command -v nft >/dev/null 2>&1 || {
		lanveil_log err "nft not found; the leak guard is off"
		return 1
	}
	# Never a device of the LAN (a WAN network carried on it): dnsmasq answers the LAN there.
	# shellcheck disable=SC2046  # one argument per zone section name
	devs="$(lanveil_list_minus "$(lanveil_zone_devices $(lanveil_leak_zones))" "$(lanveil_fw_devices)" | lanveil_join)"
	zones="$(lanveil_opt leak_guard_zone wan | lanveil_join)"
	uids="$(lanveil_dnsmasq_uids | lanveil_join)"
	ports="$(lanveil_dnsmasq_query_ports | lanveil_join)"
	if [ -z "$devs" ] && lanveil_leak_pending "$zones" && [ -n "$uids$ports" ] &&
		nft list table inet lanveil_leak >/dev/null 2>&1; then
		# The zones' networks have no device yet (a wwan before it associates, a modem before it
		# is up): the guard already loaded for these zones (the last run's, at boot) stays until
		# their ifup trigger (leak_guard) renders it for the devices they get; but not on a
		# device the configuration now gives to something else (the LAN: dnsmasq talks there).
		loaded="$(lanveil_leak_devices "$f")"
		devs="$(lanveil_leak_carry "$loaded" | lanveil_join)"
		if [ "$devs" = "$(printf '%s\n' "$loaded" | sort -u | lanveil_join)" ]; then
			lanveil_log warn "leak guard: no devices in zone(s) $(lanveil_opt leak_guard_zone wan) yet; the one loaded stays until they come up"
			return 0
		fi
		[ -n "$devs" ] && lanveil_log warn "leak guard: no devices in zone(s) $(lanveil_opt leak_guard_zone wan) yet; the one loaded stays, for $devs as the configuration has them now, until they come up"
	fi
	if [ -z "$devs" ] || [ -z "$uids$ports" ]; then
		lanveil_log warn "leak guard off: $([ -z "$devs" ] && echo "no devices in zone(s) $(lanveil_opt leak_guard_zone wan)" || echo "dnsmasq's user not found (or it runs as root)"); a server= line outside uci could send LAN queries to the WAN in plaintext"
		lanveil_leak_remove
		return 1
	fi
	mkdir -p "$LANVEIL_RUN"
	lanveil_leak_render "$devs" "$uids" "$ports" "$(lanveil_dnsmasq_owner_servers | lanveil_join)" "$zones" >"$f.new.$$" || return 1
	lanveil_nft_swap "$f" inet lanveil_leak
	case $? in
		0) lanveil_log info "leak guard: nothing dnsmasq (uid $uids${ports:+, root from port $ports}) sends leaves by $devs" ;;
		1)
			lanveil_log err "could not load the leak guard table 'inet lanveil_leak'"
			return 1
			;;
	esac
	lanveil_leak_save
	return 0
}

# Are the guard's ZONES (as rendered) waiting for devices: the loaded table was made for them,
# and each of their networks is configured (an ifup will come)?
lanveil_leak_pending() { # ZONES
	local net nets
	grep -qxF "# zones: $1" "$LANVEIL_LEAK_NFT" 2>/dev/null || return 1
	nets="$(lanveil_leak_networks)"
	[ -n "$nets" ] || return 1
	for net in $nets; do
		lanveil_uci get "network.$net" >/dev/null || return 1
	done
	return 0
}

# Devices a rendered guard table (FILE) names, one per line.
lanveil_leak_devices() { # FILE
	awk -F'oifname [{] ' 'NF > 1 { split($2, a, " [}]"); print a[1]; exit }' "$1" 2>/dev/null |
		tr ',' '\n' | sed 's/^ *"//; s/" *$//; /^$/d'
}

# FILE with its devices set to DEVICES (space separated) and its zones to ZONES.
lanveil_leak_retarget() { # FILE DEVICES ZONES
	local set="" d
	for d in $2; do set="$set${set:+, }\"$d\""; done
	awk -v set="$set" -v zones="$3" '
		/^# zones: / { print "# zones: " zones; next }
		{
			i = index($0, "oifname { ")
			if (i) {
				rest = substr($0, i + 10)
				$0 = substr($0, 1, i + 9) set substr(rest, index(rest, " }"))
			}
			print
		}' "$1"
}

# Device names as words, one per line: no alias (@wan names another network's), no modem
# control path (/dev/cdc-wdm0), no bridge-vlan tag (lan1:u*); a firewall wildcard as nft's.
lanveil_dev_words() {
	tr ' ' '\n' | sed 's/:.*//; s/+$/*/; /^@/d; /\//d; /^$/d' | sort -u
}

# Devices the configuration itself names for networks NET..., known before netifd runs (a
# boot): the one the protocol makes (pppoe-wan, as lanveil_zone_devices), else the device
# option (a legacy ifname; a legacy bridge's br-NET); and wireless interfaces with an ifname
# of their own in the network.
lanveil_net_conf_devices() { # NETWORK...
	local net
	{
		lanveil_net_own_devices "$@"
		for net in "$@"; do
			lanveil_wifi_ifnames "$net"
		done
	} | lanveil_dev_words
}

# The same without the wireless interfaces.
lanveil_net_own_devices() { # NETWORK...
	local net pdev
	for net in "$@"; do
		pdev="$(lanveil_net_proto_device "$net")"
		if [ -n "$pdev" ]; then
			echo "$pdev"
		elif [ "$(lanveil_uci get "network.$net.type")" = bridge ]; then
			echo "br-$net"
		else
			lanveil_uci get "network.$net.device" || lanveil_uci get "network.$net.ifname"
		fi
	done | lanveil_dev_words
}

# ifnames of the wireless interfaces that have one (in NETWORK, when given).
lanveil_wifi_ifnames() { # [NETWORK]
	lanveil_uci -X show wireless | sed "s/'//g" | awk -F= -v want="${1:-}" '
		{ n = split($1, k, "."); v = substr($0, length($1) + 2) }
		n == 2 && v == "wifi-iface" { iface[k[2]] = 1 }
		n == 3 && k[3] == "network" { net[k[2]] = " " v " " }
		n == 3 && k[3] == "ifname" { ifname[k[2]] = v }
		END { for (s in ifname) if ((s in iface) && (want == "" || index(net[s], " " want " "))) print ifname[s] }'
}

# Every device name the configuration uses: the networks' devices, legacy ifnames, bridge
# ports and declared devices, the devices protocols make, wireless ifnames, firewall zones'
# devices.
lanveil_conf_device_names() {
	local s network
	network="$(lanveil_uci -X show network | sed "s/'//g")"
	{
		printf '%s\n' "$network" |
			awk -F= '{ n = split($1, k, ".") } n == 3 && k[3] ~ /^(device|ifname|ports|name)$/ { print substr($0, length($1) + 2) }'
		# shellcheck disable=SC2046  # one argument per network section name
		lanveil_net_own_devices $(printf '%s\n' "$network" | sed -n 's/^network\.\([A-Za-z0-9_]*\)=interface$/\1/p')
		lanveil_wifi_ifnames
		for s in $(lanveil_uci -X show firewall | sed -n 's/^firewall\.\([A-Za-z0-9_]*\)=zone$/\1/p'); do
			lanveil_uci get "firewall.$s.device"
		done
	} | lanveil_dev_words
}

# The devices of an earlier guard (SAVED, one per line: the last run's copy at boot, before the
# network; the loaded table while its zones' networks have no device) it is still right for:
# the ones the configuration names for the guard zones now, and those of SAVED it names for
# nothing else (a wireless or modem device, named only once it is up: the earlier guard saw
# it in these zones). Never a device of the LAN. A device the owner moved since (the WAN from
# eth1 to pppoe or a wwan, a port from the WAN to the LAN, a rename by a sysupgrade) is
# dropped or taken in at once, not only when netifd has brought it up.
lanveil_leak_carry() { # SAVED
	local guard other lan
	# shellcheck disable=SC2046  # one argument per zone section or network name
	guard="$({
		lanveil_zone_devices $(lanveil_leak_zones)
		lanveil_net_conf_devices $(lanveil_leak_networks)
	} | sort -u)"
	other="$(lanveil_list_minus "$(lanveil_conf_device_names)" "$guard")"
	# shellcheck disable=SC2046  # one argument per network name
	lan="$({
		lanveil_fw_devices
		lanveil_net_conf_devices $(lanveil_capture_networks)
	} | sort -u)"
	lanveil_list_minus "$({
		printf '%s\n' "$guard"
		lanveil_list_minus "$1" "$other"
	} | sort -u)" "$lan"
}

# Keeps the loaded table for the next boot (lanveil_leak_boot); writes flash only on a change.
lanveil_leak_save() {
	cmp -s "$LANVEIL_LEAK_NFT" "$LANVEIL_LEAK_SAVED" && return 0
	if ! { mkdir -p "$LANVEIL_ETC" && cp "$LANVEIL_LEAK_NFT" "$LANVEIL_LEAK_SAVED.new.$$" &&
		mv "$LANVEIL_LEAK_SAVED.new.$$" "$LANVEIL_LEAK_SAVED"; }; then
		rm -f "$LANVEIL_LEAK_SAVED.new.$$"
		lanveil_log warn "could not keep the leak guard for the next boot in $LANVEIL_LEAK_SAVED"
	fi
	return 0
}

# Boot, before the network (/etc/init.d/lanveil_early): the table of the last run, while
# dnsmasq is still wired to lanveil and the guard is on, for the devices the configuration
# has now (lanveil_leak_carry: the copy as it is when they are the same; none loaded when
# it names none). Unwired (an owner's stop, a removal that left the file), the saved copy goes.
lanveil_leak_boot() {
	local saved zones devs was how
	[ -f "$LANVEIL_LEAK_SAVED" ] || return 0
	if ! lanveil_wired || ! lanveil_bool leak_guard 1; then
		rm -f "$LANVEIL_LEAK_SAVED"
		return 0
	fi
	command -v nft >/dev/null 2>&1 || return 0
	# Loaded already (lanveil runs, or ran since the boot): that one is the newer.
	nft list table inet lanveil_leak >/dev/null 2>&1 && return 0
	mkdir -p "$LANVEIL_RUN"
	# Its devices as the configuration has them now; the last run's only when it guarded the
	# same zones.
	saved="$(lanveil_leak_devices "$LANVEIL_LEAK_SAVED")"
	was="$(printf '%s\n' "$saved" | sort -u | lanveil_join)"
	zones="$(lanveil_opt leak_guard_zone wan | lanveil_join)"
	grep -qxF "# zones: $zones" "$LANVEIL_LEAK_SAVED" || saved=""
	devs="$(lanveil_leak_carry "$saved" | lanveil_join)"
	if [ -z "$devs" ]; then
		lanveil_log warn "leak guard not loaded before the network: the configuration gives none of the devices lanveil last left it for ($was) to zone(s) $zones, and names none of theirs (a wireless or modem device is named when it comes up); lanveil's start renders it"
		return 0
	fi
	if [ -n "$saved" ] && [ "$devs" = "$was" ]; then
		how="as lanveil last left it"
		cp "$LANVEIL_LEAK_SAVED" "$LANVEIL_LEAK_NFT.new.$$" || return 1
	else
		how="for $devs (lanveil last left it for $was: the configuration has changed since)"
		lanveil_leak_retarget "$LANVEIL_LEAK_SAVED" "$devs" "$zones" >"$LANVEIL_LEAK_NFT.new.$$" || return 1
	fi
	lanveil_nft_swap "$LANVEIL_LEAK_NFT" inet lanveil_leak
	case $? in
		0) lanveil_log info "leak guard loaded before the network, $how (until lanveil starts)" ;;
		1)
			lanveil_log err "could not load the saved leak guard ($LANVEIL_LEAK_SAVED) at boot"
			return 1
			;;
	esac
	return 0
}

# lanveil_early is enabled once, with lanveil, and then left to the owner (who may disable it).
# An install enables it (default_postinst enables a package's init scripts on an install or an
# image build, not on an upgrade: the postinst only marks it set up). The first upgrade from a
# version without it enables it when lanveil is enabled (the postinst); when lanveil is disabled
# then, its first enable after that does (the init script's enable). The marker keeps it once.
LANVEIL_EARLY_MARK="$LANVEIL_ETC/early-enabled"

lanveil_early_mark() {
	mkdir -p "$LANVEIL_ETC" && : >"$LANVEIL_EARLY_MARK"
}

# Enables lanveil_early and marks it, unless it was set up before.
lanveil_early_setup() {
	[ -e "$LANVEIL_EARLY_MARK" ] && return 0
	sh "${IPKG_INSTROOT:-}/etc/rc.common" "${IPKG_INSTROOT:-}/etc/init.d/lanveil_early" enable &&
		lanveil_early_mark
}

lanveil_leak_remove() {
	rm -f "$LANVEIL_LEAK_NFT" "$LANVEIL_LEAK_SAVED"
	command -v nft >/dev/null 2>&1 || return 0
	nft list table inet lanveil_leak >/dev/null 2>&1 || return 0
	nft delete table inet lanveil_leak && lanveil_log info "leak guard off"
	return 0
}

# How many packets the leak guard dropped (nothing when it is off).
lanveil_leak_drops() {
	command -v nft >/dev/null 2>&1 || return 0
	nft list table inet lanveil_leak 2>/dev/null |
		sed -n 's/.* counter packets \([0-9]*\) .*/\1/p' | awk '{ n += $1 } END { if (NR) print n }'
}

lanveil_fw_remove() {
	rm -f "$LANVEIL_RUN/lanveil.nft"
	command -v nft >/dev/null 2>&1 || return 0
	nft list table inet lanveil >/dev/null 2>&1 || return 0
	nft delete table inet lanveil && lanveil_log info "LAN DNS capture off"
}

# --- The daemon's liveness: wire only when it answers, fail fast when it is gone ---
#
# Start:  the dnsmasq forwarding, the capture table and the LAN signals are put in
#         place only once the daemon answers (its control socket's status request;
#         without a control_socket, its process is alive), waited for at most
#         start_timeout seconds. If it does not answer, nothing is rewired: a LAN
#         that never used lanveil keeps its previous upstreams; one that is still
#         wired from an earlier run stays fail-closed (below). Either way the reason
#         goes to the log and /etc/init.d/lanveil status.
# Down:   while dnsmasq forwards to lanveil and the daemon's process is gone (crashed,
#         respawning, or procd gave up), the table 'inet lanveil_down' drops
#         dnsmasq's packets to lanveil's listeners in the output hook. sendto() then
#         fails at once and dnsmasq answers REFUSED (EDE "network error") within
#         milliseconds, instead of every LAN client waiting for a time-out. Nothing
#         is sent in plaintext: dnsmasq keeps forwarding only to lanveil. (An ICMP
#         port-unreachable, which a closed port already produces, does not help:
#         dnsmasq's unconnected UDP sockets never see it, and clients time out.)
#         The guard (a second procd instance, root: /usr/libexec/lanveil-guard)
#         checks the daemon's pid (written by procd) every second and arms/lifts it.
LANVEIL_PIDFILE="$LANVEIL_RUN/daemon.pid"
LANVEIL_STATUS="$LANVEIL_RUN/status"

# Is the daemon's process alive? procd writes its pid to $LANVEIL_PIDFILE.
lanveil_daemon_alive() {
	local pid comm
	[ -f "$LANVEIL_PIDFILE" ] || return 1
	read -r pid <"$LANVEIL_PIDFILE" || return 1
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	[ -r "/proc/$pid/comm" ] && read -r comm <"/proc/$pid/comm" || return 1
	[ "$comm" = lanveil ]
}

# Does it answer? Its control socket's status when one is configured, else: alive.
lanveil_daemon_answers() {
	local sock to=""
	lanveil_daemon_alive || return 1
	sock="$(lanveil_uci get lanveil.@lanveil[0].control_socket)" || return 0
	[ -S "${IPKG_INSTROOT:-}$sock" ] || return 1
	command -v timeout >/dev/null 2>&1 && to="timeout 2"
	# shellcheck disable=SC2086  # $to is a command prefix or nothing
	$to "${IPKG_INSTROOT:-}/usr/sbin/lanveil" --control "$sock" status >/dev/null 2>&1
}

# Waits (5 checks a second) up to start_timeout seconds for the daemon to answer.
lanveil_wait_ready() {
	local n=0 max
	max="$(lanveil_opt start_timeout 10)"
	case "$max" in '' | *[!0-9]*) max=10 ;; esac
	max=$((max * 5))
	while ! lanveil_daemon_answers; do
		[ "$n" -ge "$max" ] && return 1
		# busybox without FEATURE_FANCY_SLEEP has whole seconds only.
		if sleep 0.2 2>/dev/null; then
			n=$((n + 1))
		else
			sleep 1
			n=$((n + 5))
		fi
	done
	return 0
}

# Is dnsmasq forwarding to lanveil (lanveil's dhcp wiring in place)?
lanveil_wired() {
	[ -f "$LANVEIL_STATE/dhcp.orig" ]
}

# The daemon's last lines in the system log, if logread exists: procd logs its stderr
# tagged lanveil[PID] (this script's own lines are tagged lanveil, without a pid).
lanveil_daemon_said() {
	command -v logread >/dev/null 2>&1 || return 0
	logread -l 100 2>/dev/null | grep 'lanveil\[[0-9]*\]: ' | tail -n 3 | sed 's/^.*lanveil\[[0-9]*\]: *//'
}

# Writes the status file (/etc/init.d/lanveil status): STATE, then text lines. The init
# script and the guard may both write it at once: each through its own temporary file, the
# last rename wins whole.
lanveil_status_set() { # STATE TEXT
	mkdir -p "$LANVEIL_RUN"
	if ! {
		echo "$1 since $(date -u '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null)"
		printf '%s\n' "$2"
	} >"$LANVEIL_STATUS.new.$$" || ! mv "$LANVEIL_STATUS.new.$$" "$LANVEIL_STATUS"; then
		rm -f "$LANVEIL_STATUS.new.$$"
		return 1
	fi
}

lanveil_status_state() {
	local st=""
	[ -f "$LANVEIL_STATUS" ] && read -r st _ <"$LANVEIL_STATUS"
	echo "$st"
}

# The 'inet lanveil_down' table for dnsmasq's targets (lanveil_dnsmasq_targets).
lanveil_guard_render() {
	local t addr port fam
	cat <<-EOF
		# Generated by /etc/init.d/lanveil; loaded only while lanveil is down and dnsmasq forwards to it.
		table inet lanveil_down
		delete table inet lanveil_down
		table inet lanveil_down {
			chain output {
				type filter hook output priority filter - 5; policy accept;
	EOF
	for t in $(lanveil_dnsmasq_targets); do
		addr="${t%#*}"
		port="${t##*#}"
		case "$addr" in *:*) fam=ip6 ;; *) fam=ip ;; esac
		echo "		$fam daddr $addr udp dport $port counter drop comment \"lanveil is down: dnsmasq answers REFUSED at once\""
		echo "		$fam daddr $addr tcp dport $port counter reject with tcp reset comment \"lanveil is down\""
	done
	printf '\t}\n}\n'
}

lanveil_guard_armed() {
	command -v nft >/dev/null 2>&1 && nft list table inet lanveil_down >/dev/null 2>&1
}

# Fail closed, fast: LAN clients get REFUSED from dnsmasq, never a time-out or plaintext.
# $LANVEIL_RUN/lanveil_down.nft exists exactly while the table is loaded (the guard's
# once-a-second checks read that file instead of asking nft).
lanveil_guard_arm() { # REASON
	local f="$LANVEIL_RUN/lanveil_down.nft" said note=""
	lanveil_wired || return 0
	# With the daemon down dnsmasq tries its other servers: none of them on the WAN.
	lanveil_leak_apply
	if [ ! -f "$f" ]; then
		mkdir -p "$LANVEIL_RUN"
		if command -v nft >/dev/null 2>&1 && lanveil_guard_render >"$f.new.$$" && nft -f "$f.new.$$"; then
			mv "$f.new.$$" "$f"
		else
			rm -f "$f.new.$$"
			note=" (could not load the guard table 'inet lanveil_down': clients wait for time-outs)"
		fi
	fi
	[ "$(lanveil_status_state)" = down ] && return 0
	said="$(lanveil_daemon_said)"
	lanveil_log err "$1: LAN DNS is refused (fail-closed: dnsmasq still forwards only to lanveil) until it runs again$note; /etc/init.d/lanveil status"
	lanveil_status_set down "lanveil is NOT running: $1.
LAN DNS: dnsmasq answers REFUSED at once (fail-closed; nothing goes out in plaintext)$note.
Its last words: ${said:-see logread -e lanveil}
Fix the cause, then: /etc/init.d/lanveil restart (or stop, to give the LAN its previous DNS servers)."
}

lanveil_guard_lift() {
	[ -f "$LANVEIL_RUN/lanveil_down.nft" ] || return 0
	rm -f "$LANVEIL_RUN/lanveil_down.nft"
	nft delete table inet lanveil_down 2>/dev/null && lanveil_log info "lanveil answers again: LAN DNS goes through it"
	return 0
}

# One check of the guard loop.
lanveil_guard_check() {
	if ! lanveil_wired; then
		lanveil_guard_lift
	elif lanveil_daemon_alive; then
		[ "$(lanveil_status_state)" = up ] && return 0
		lanveil_guard_lift
		lanveil_status_set up "lanveil is running; dnsmasq forwards to it."
	elif lanveil_restarting; then
		return 0
	else
		lanveil_guard_arm "lanveil is not running (exited, or procd gave up respawning it)"
	fi
	return 0
}

# A planned restart of the daemon (wan_up) is in progress: $LANVEIL_RUN/restarting
# holds its start time; it counts for at most start_timeout + 12 s (a killed
# wan_up cannot keep the guard off).
lanveil_restarting() {
	local t max
	[ -f "$LANVEIL_RUN/restarting" ] && read -r t <"$LANVEIL_RUN/restarting" || return 1
	case "$t" in '' | *[!0-9]*) return 1 ;; esac
	max="$(lanveil_opt start_timeout 10)"
	case "$max" in '' | *[!0-9]*) max=10 ;; esac
	[ "$(date +%s)" -lt $((t + max + 12)) ]
}

# --- LAN signals: captive portal (RFC 8910) and IPv6-only preferred (RFC 8925) ---
#
# What:    the daemon's 'captive_portal_uri' (else, with relay_wan_portal, a URI
#          learned from the WAN's DHCP option 114 by the udhcpc hook below) and
#          'v6only_wait' are announced to LAN clients.
# Where:   every 'config dhcp' section whose interface is in a force_dns_zone zone
#          (the LAN lanveil already serves) and that is not 'ignore 1'.
# How:     odhcpd >= 25.12 (its binary knows 'captive_portal_uri'): native
#          captive_portal_uri (DHCPv6 103 + RA 37, and DHCPv4 114 when odhcpd is the
#          DHCPv4 server, dhcp.odhcpd.maindhcp=1) and ipv6_only_preferred (DHCPv4
#          108, only when odhcpd serves DHCPv4). Older odhcpd: DHCPv6 103 as
#          'dhcpv6_raw' hex; RA 37 is impossible there. While dnsmasq is the DHCPv4
#          server: 'list dhcp_option 114,URI' (colon-hex when the URI holds , # [ ])
#          and '108,HH:HH:HH:HH' (V6ONLY_WAIT's four octets) for dnsmasq. The values
#          come from lanveil --print-signals (lanveil_signals below).
# Undo:    same as the dnsmasq settings: dhcp.orig/dhcp.wired byte for byte, else
#          state lines (cap_*) that name exactly what lanveil added to a section,
#          filed under the section's key (see "Keys" at the top: the section's name,
#          or 'option lanveil_saved dhcp-N' in an anonymous one, removed with
#          lanveil's values). An owner's own values (a dhcp_option 114/108,
#          captive_portal_uri, ipv6_only_preferred) win and are left alone; an
#          owner's dhcpv6_raw is kept and lanveil's option 103 appended to it (not
#          when it already ends with it). odhcpd reads a section's options through
#          its own list of names (uci_to_blob), dnsmasq's init script by name: the
#          key option is ignored by both.
# Status:  $LANVEIL_RUN/capport (/etc/init.d/lanveil capport).

# The LAN signals, validated and encoded by the daemon's binary (one implementation of the URI
# rule and of the option encodings: lanveil --check-config FILE --print-signals, see
# firmware/src/cli.rs); the shell only picks which of the printed values go where. WAN_OPT114 is
# option 114 as udhcpc exports it (hex or text) or a URI the hook stored. Sets LANVEIL_SIG_URI,
# _SRC (owner|wan), _OPTS (dnsmasq dhcp_option values, newline separated), _RAW (dhcpv6_raw), _WAIT
# (V6ONLY_WAIT seconds), _WAN (ok|unrestricted|invalid: REASON) and _WAN_URI. Every value is
# printable ASCII without spaces, quotes, backslashes or '$'. Fails (logged) when the
# configuration does not check.
lanveil_signals() { # [WAN_OPT114]
	local out line k v
	LANVEIL_SIG_URI="" LANVEIL_SIG_SRC="" LANVEIL_SIG_OPTS="" LANVEIL_SIG_RAW="" LANVEIL_SIG_WAIT=""
	LANVEIL_SIG_WAN="" LANVEIL_SIG_WAN_URI=""
	[ $# -gt 0 ] && set -- --wan-portal "$1"
	if ! out="$("${IPKG_INSTROOT:-}/usr/sbin/lanveil" --check-config "$LANVEIL_CONFDIR/lanveil" --print-signals "$@" 2>&1)"; then
		lanveil_log err "cannot read the LAN signals: $(printf '%s' "$out" | head -n 1)"
		return 1
	fi
	while IFS= read -r line; do
		k="${line%% *}"
		v="${line#* }"
		case "$k" in
			captive_portal_uri) LANVEIL_SIG_URI="$v" ;;
			captive_portal_source) LANVEIL_SIG_SRC="$v" ;;
			dnsmasq_dhcp_option) LANVEIL_SIG_OPTS="$LANVEIL_SIG_OPTS$v$LANVEIL_NL" ;;
			dhcpv6_raw) LANVEIL_SIG_RAW="$v" ;;
			v6only_wait) LANVEIL_SIG_WAIT="$v" ;;
			wan_portal_uri) LANVEIL_SIG_WAN_URI="$v" ;;
			wan_portal) LANVEIL_SIG_WAN="$v" ;;
		esac
	done <<-EOF
		$out
	EOF
	return 0
}

# How odhcpd can carry the signals: native (>= 25.12), legacy, or none (not
# installed). LANVEIL_ODHCPD_NATIVE=1/0 overrides the probe. The probe looks for
# the UCI option name in the binary: odhcpd's option table holds it as a string.
lanveil_odhcpd_mode() {
	local bin="${IPKG_INSTROOT:-}/usr/sbin/odhcpd"
	case "${LANVEIL_ODHCPD_NATIVE:-}" in
		1) echo native; return 0 ;;
		0) echo legacy; return 0 ;;
	esac
	if [ ! -f "$bin" ]; then
		echo none
	elif grep -q captive_portal_uri "$bin" 2>/dev/null; then
		echo native
	else
		echo legacy
	fi
}

# The dhcp sections of the LAN (interface in a capture zone, not ignored).
lanveil_cap_sections() {
	local nets s iface
	nets="$(lanveil_capture_networks)"
	for s in $(lanveil_uci_dhcp -X show dhcp | sed -n 's/^dhcp\.\([A-Za-z0-9_]*\)=dhcp$/\1/p'); do
		iface="$(lanveil_uci_dhcp get "dhcp.$s.interface")" || iface="$s"
		[ "$(lanveil_uci_dhcp get "dhcp.$s.ignore")" = 1 ] && continue
		lanveil_in "$iface" "$nets" && echo "$s"
	done
}

# dnsmasq's code of a dhcp_option entry ("108,1800", "option:ipv6-only,1800" -> 108).
lanveil_dhcp_option_code() {
	local c="${1%%,*}"
	case "$c" in
		option:ipv6-only | ipv6-only) c=108 ;;
		option:captive-portal | captive-portal) c=114 ;;
	esac
	echo "$c"
}

# The dhcp sections (all, LAN or not).
lanveil_dhcp_sections() {
	lanveil_uci_dhcp -X show dhcp | sed -n 's/^dhcp\.\([A-Za-z0-9_]*\)=dhcp$/\1/p'
}

# SECTION is anonymous: 'uci show' without -X names it @dhcp[N] (a named one by its name).
lanveil_dhcp_anon() { # SECTION
	! lanveil_uci_dhcp show dhcp | grep -qxF "dhcp.$1=dhcp"
}

# KEY has LAN signals filed under it (state lines cap_*).
lanveil_cap_has() { # KEY
	[ -f "$LANVEIL_STATE/dnsmasq.state" ] || return 1
	awk -F "$LANVEIL_TAB" -v s="$1" '$1 == s && index($2, "cap_") == 1 { f = 1 } END { exit !f }' \
		"$LANVEIL_STATE/dnsmasq.state"
}

# The key the LAN signals lanveil put in dhcp section SECTION are filed under (see "Keys"): its
# lanveil_saved option; else a named section's name (named ids never move); else an anonymous
# section's uci id when an older lanveil filed them under that; else nothing.
lanveil_dhcp_key() { # SECTION
	local k
	k="$(lanveil_uci_dhcp get "dhcp.$1.$LANVEIL_KEY_OPT")" || k=""
	case "$k" in *[!A-Za-z0-9_-]*) k="" ;; esac
	if [ -z "$k" ] && { lanveil_cap_has "$1" || ! lanveil_dhcp_anon "$1"; }; then
		k="$1"
	fi
	printf '%s\n' "$k"
}

# KEY's cap_* lines out of the state.
lanveil_cap_forget() { # KEY
	local f="$LANVEIL_STATE/dnsmasq.state"
	[ -f "$f" ] || return 0
	awk -F "$LANVEIL_TAB" -v s="$1" '!($1 == s && index($2, "cap_") == 1)' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
}

# The key to wire SECTION under: its own; for an anonymous section whose signals an older lanveil
# filed under its uci id, those re-filed under a new key (that id will name another section once
# the owner deletes or reorders one); else a new key (dhcp-N).
lanveil_cap_key() { # SECTION
	local k n
	k="$(lanveil_dhcp_key "$1")"
	if [ -z "$k" ] || { [ "$k" = "$1" ] && lanveil_dhcp_anon "$1"; }; then
		n="$(lanveil_new_key dhcp)"
		[ -z "$k" ] || lanveil_state_refile "$k" "$n" cap move
		k="$n"
	fi
	printf '%s\n' "$k"
}

# A key carried by more than one section (a copied block, option included): every further copy
# gets a key of its own with a copy of what was filed, so each section's own values are undone.
lanveil_cap_split() {
	local s k n seen=""
	for s in $(lanveil_dhcp_sections); do
		k="$(lanveil_dhcp_key "$s")"
		if [ -z "$k" ] || ! lanveil_cap_has "$k"; then
			continue
		elif lanveil_in "$k" "$seen"; then
			n="$(lanveil_new_key dhcp)"
			lanveil_state_refile "$k" "$n" cap copy
			lanveil_uci_dhcp set "dhcp.$s.$LANVEIL_KEY_OPT=$n"
		else
			seen="$seen$k$LANVEIL_NL"
		fi
	done
}

# SECTION carries its KEY while lanveil has signals in it, if it is anonymous or carries one
# already (a named section's key is its name); no option otherwise.
lanveil_cap_mark() { # SECTION KEY
	local cur
	cur="$(lanveil_uci_dhcp get "dhcp.$1.$LANVEIL_KEY_OPT")" || cur=""
	if lanveil_cap_has "$2" && { [ -n "$cur" ] || [ "$2" != "$1" ] || lanveil_dhcp_anon "$1"; }; then
		[ "$cur" = "$2" ] || lanveil_uci_dhcp set "dhcp.$1.$LANVEIL_KEY_OPT=$2"
	elif [ -n "$cur" ]; then
		lanveil_uci_dhcp delete "dhcp.$1.$LANVEIL_KEY_OPT"
	fi
}

# SECTION holds one of the values filed under KEY.
lanveil_cap_holds() { # SECTION KEY
	local v o opts
	opts="$(lanveil_get_list "dhcp.$1.dhcp_option")"
	while IFS= read -r v; do
		[ -n "$v" ] && lanveil_in "$v" "$opts" && return 0
	done <<-EOF
		$(lanveil_state_get "$2" cap_opt)
	EOF
	for o in captive_portal_uri ipv6_only_preferred dhcpv6_raw; do
		v="$(lanveil_state_get "$2" "cap_$o")"
		[ -n "$v" ] || continue
		case "$(lanveil_uci_dhcp get "dhcp.$1.$o")" in *"$v") return 0 ;; esac
	done
	return 1
}

# No section carries KEY any more: deleted, or the owner removed its option lanveil_saved. Its
# state is forgotten and nothing is guessed: what it names is not taken out of other sections (the
# URI is the owner's, who may have set it in a section by hand). A section without signals of
# lanveil's that holds one of its values is named in the log.
lanveil_cap_gone() { # KEY
	local s k
	for s in $(lanveil_dhcp_sections); do
		k="$(lanveil_dhcp_key "$s")"
		[ -n "$k" ] && lanveil_cap_has "$k" && continue
		lanveil_cap_holds "$s" "$1" &&
			lanveil_log warn "dhcp.$s holds LAN signal values that lanveil added to a section it cannot find (its option $LANVEIL_KEY_OPT was removed?); they are left as the owner's, check its dhcp_option, captive_portal_uri, ipv6_only_preferred and dhcpv6_raw"
	done
	lanveil_cap_forget "$1"
}

# lanveil's signals out of every section whose key is not in KEEP (newline separated: the LAN's,
# just wired), and their option lanveil_saved with them; the state of keys no section carries is
# forgotten (lanveil_cap_gone).
lanveil_cap_off() { # KEEP
	local s k keys=""
	for s in $(lanveil_dhcp_sections); do
		k="$(lanveil_dhcp_key "$s")"
		[ -n "$k" ] && keys="$keys$k$LANVEIL_NL"
	done
	for k in $(lanveil_state_sections cap_); do
		lanveil_in "$k" "$keys" || lanveil_cap_gone "$k"
	done
	for s in $(lanveil_dhcp_sections); do
		k="$(lanveil_dhcp_key "$s")"
		[ -n "$k" ] && lanveil_in "$k" "$1" && continue
		lanveil_cap_has "$k" && lanveil_cap_section "$s" "$k" "" "" "" ""
		lanveil_cap_mark "$s" "$k"
	done
}

# A single odhcpd option: lanveil's value DESIRED is the suffix it owns (state
# cap_OPTION under KEY). The owner's value wins, except for dhcpv6_raw where ours is appended
# (unless the owner's already ends with it).
lanveil_cap_single() { # SECTION KEY OPTION DESIRED
	local s="$1" k="$2" o="$3" d="$4" cur ours user new
	cur="$(lanveil_uci_dhcp get "dhcp.$s.$o")" || cur=""
	ours="$(lanveil_state_get "$k" "cap_$o")"
	user="$cur"
	if [ -n "$ours" ]; then
		case "$cur" in *"$ours") user="${cur%"$ours"}" ;; esac
	fi
	if [ -n "$d" ] && [ -n "$user" ]; then
		if [ "$o" != dhcpv6_raw ]; then
			lanveil_log warn "dhcp.$s.$o is set by the owner; lanveil leaves it"
			d=""
		else
			case "$user" in *"$d") d="" ;; esac
		fi
	fi
	new="$user$d"
	if [ "$new" != "$cur" ]; then
		if [ -z "$new" ]; then
			lanveil_uci_dhcp delete "dhcp.$s.$o"
		else
			lanveil_uci_dhcp set "dhcp.$s.$o=$new"
		fi
		LANVEIL_CAP_ODHCPD=1
	fi
	lanveil_state_drop "$k" "cap_$o"
	[ -z "$d" ] || lanveil_state_put "$k" "cap_$o" "$d"
}

# Makes SECTION carry exactly lanveil's OPTS (dnsmasq dhcp_option entries, newline
# separated) and odhcpd values (empty = none), keeping everything of the owner's. What
# lanveil added is filed under KEY (see "Keys").
lanveil_cap_section() { # SECTION KEY OPTS CAPTIVE_PORTAL_URI IPV6_ONLY_PREFERRED DHCPV6_RAW
	local s="$1" k="$2" current added keep codes v now new
	current="$(lanveil_get_list "dhcp.$s.dhcp_option")"
	added="$(lanveil_state_get "$k" cap_opt)"
	keep="" codes="" now=""
	while IFS= read -r v; do
		[ -n "$v" ] || continue
		lanveil_in "$v" "$added" && continue
		keep="$keep$v$LANVEIL_NL"
		codes="$codes$(lanveil_dhcp_option_code "$v")$LANVEIL_NL"
	done <<-EOF
		$current
	EOF
	new="$keep"
	while IFS= read -r v; do
		[ -n "$v" ] || continue
		if lanveil_in "$(lanveil_dhcp_option_code "$v")" "$codes"; then
			lanveil_log warn "dhcp.$s has the owner's dhcp_option ${v%%,*}; lanveil leaves it"
			continue
		fi
		new="$new$v$LANVEIL_NL"
		now="$now$v$LANVEIL_NL"
	done <<-EOF
		$3
	EOF
	new="$(printf '%s' "$new" | sed '/^$/d')"
	if [ "$new" != "$current" ]; then
		lanveil_dhcp_set_list "$s" dhcp_option "$new"
		LANVEIL_CAP_DNSMASQ=1
	fi
	lanveil_state_drop "$k" cap_opt
	while IFS= read -r v; do
		[ -n "$v" ] && lanveil_state_put "$k" cap_opt "$v"
	done <<-EOF
		$now
	EOF
	lanveil_cap_single "$s" "$k" captive_portal_uri "$4"
	lanveil_cap_single "$s" "$k" ipv6_only_preferred "$5"
	lanveil_cap_single "$s" "$k" dhcpv6_raw "$6"
}

# Where DHCPv4 108 (IPv6-only preferred, RFC 8925) must not go: an RFC 8925 client that gets
# it drops IPv4, so the network must give it IPv6, and on OpenWrt that is odhcpd's router
# advertisements (SLAAC, and the M flag for DHCPv6). odhcpd sends them for a dhcp section
# whose 'ra' is server, relay or hybrid; with 'ra' absent (odhcpd's default, README: ra
# disabled), 'disabled' or anything else it sends none there. OpenWrt's default lan has
# ra 'server' (odhcpd's uci-defaults). Prints why SECTION is skipped; false = announce.
lanveil_v6only_skip() { # SECTION MODE
	local ra
	if [ "$2" = none ]; then
		echo "odhcpd is not installed: no router advertisements, no IPv6 for the LAN"
		return 0
	fi
	ra="$(lanveil_uci_dhcp get "dhcp.$1.ra")" || ra=""
	case "$ra" in
		server | relay | hybrid) return 1 ;;
		'') echo "no option ra (odhcpd's default: disabled): no router advertisements, no IPv6 for the LAN" ;;
		disabled) echo "ra 'disabled': no router advertisements, no IPv6 for the LAN" ;;
		*) echo "ra '$ra' is not server, relay or hybrid (odhcpd: disabled): no IPv6 for the LAN" ;;
	esac
	return 0
}

# The status's "how" of a section: its non-empty parts joined with "; ".
lanveil_join_how() { # PART...
	local p out=""
	for p in "$@"; do
		[ -n "$p" ] && out="${out:+$out; }$p"
	done
	echo "${out:-nothing announced}"
}

# Applies the LAN signals to every LAN section (and removes them where they no
# longer belong), then writes the status file. Runs inside lanveil_dnsmasq_wire,
# whose commit and restarts cover it.
lanveil_cap_wire() {
	local iface="" wan="" rest uri src wait mode v4 lan s opts cpu v6p raw how="" ra v4how v6how how108="" opts108 v line lines why k keys=""
	if lanveil_bool relay_wan_portal 1 && [ -f "$LANVEIL_RUN/wan_portal" ]; then
		# The udhcpc hook's record: INTERFACE URI [DNS...] (see lanveil_wan_hook).
		read -r iface wan rest <"$LANVEIL_RUN/wan_portal" || wan=""
	fi
	if [ -n "$wan" ]; then
		lanveil_signals "$wan" || return 0
	else
		lanveil_signals || return 0
	fi
	uri="$LANVEIL_SIG_URI"
	src="$LANVEIL_SIG_SRC"
	[ "$src" = wan ] && src="wan:$iface"
	wait="$LANVEIL_SIG_WAIT"
	mode="$(lanveil_odhcpd_mode)"
	v4=dnsmasq
	[ "$mode" != none ] && [ "$(lanveil_uci_dhcp get dhcp.odhcpd.maindhcp)" = 1 ] && v4=odhcpd
	lan="$(lanveil_cap_sections)"
	opts="" cpu="" v6p="" raw="" ra="" v4how="" v6how=""
	# dnsmasq as the DHCPv4 server carries 114 and 108 exactly as printed.
	[ "$v4" = dnsmasq ] && opts="$LANVEIL_SIG_OPTS"
	if [ -n "$uri" ]; then
		[ "$v4" = dnsmasq ] && v4how="DHCPv4 114: dnsmasq dhcp_option"
		case "$mode" in
			native)
				cpu="$uri"
				[ "$v4" = odhcpd ] && v4how="DHCPv4 114: odhcpd captive_portal_uri"
				v6how="DHCPv6 103: odhcpd captive_portal_uri"
				ra="RA option 37: odhcpd captive_portal_uri"
				;;
			legacy)
				raw="$LANVEIL_SIG_RAW"
				[ "$v4" = odhcpd ] && v4how="DHCPv4 114: not supported (this odhcpd serves DHCPv4 and has no captive_portal_uri)"
				v6how="DHCPv6 103: odhcpd dhcpv6_raw"
				ra="RA option 37: not supported by this odhcpd"
				;;
			none)
				v6how="DHCPv6 103: not sent (odhcpd not installed)"
				ra="RA option 37: not sent (odhcpd not installed)"
				;;
		esac
		how="$v4how; $v6how; $ra"
	fi
	if [ -n "$wait" ]; then
		if [ "$v4" = dnsmasq ]; then
			how108="DHCPv4 108: dnsmasq dhcp_option"
		elif [ "$mode" = native ]; then
			v6p="$wait"
			how108="DHCPv4 108: odhcpd ipv6_only_preferred"
		else
			how108="DHCPv4 108: not supported (this odhcpd serves DHCPv4 and has no ipv6_only_preferred)"
		fi
	fi
	# 108 only where the router serves IPv6 (lanveil_v6only_skip); the rest gets the rest.
	opts108="" lines=""
	while IFS= read -r v; do
		[ -n "$v" ] || continue
		[ "$(lanveil_dhcp_option_code "$v")" = 108 ] || opts108="$opts108$v$LANVEIL_NL"
	done <<-EOF
		$opts
	EOF
	lanveil_cap_split
	for s in $lan; do
		k="$(lanveil_cap_key "$s")"
		keys="$keys$k$LANVEIL_NL"
		line="dhcp section $s: $(lanveil_join_how "$how" "$how108")"
		if [ -n "$wait" ] && { [ "$opts" != "$opts108" ] || [ -n "$v6p" ]; } && why="$(lanveil_v6only_skip "$s" "$mode")"; then
			line="dhcp section $s: $(lanveil_join_how "$how" "DHCPv4 108: not announced ($why: RFC 8925 clients would drop IPv4 and have no internet)")"
			# Logged when it changes (this runs on every wire, and the WAN hook's renewals).
			grep -qxF "$line" "$LANVEIL_RUN/capport" 2>/dev/null ||
				lanveil_log warn "dhcp.$s: IPv6-only preferred (DHCPv4 108) not announced: $why"
			lanveil_cap_section "$s" "$k" "$opts108" "$cpu" "" "$raw"
		else
			lanveil_cap_section "$s" "$k" "$opts" "$cpu" "$v6p" "$raw"
		fi
		lanveil_cap_mark "$s" "$k"
		lines="$lines$line$LANVEIL_NL"
	done
	# Sections that left the LAN (or got 'ignore 1'): nothing of ours in them any more.
	lanveil_cap_off "$keys"
	{
		echo "# LAN signals, written by /etc/init.d/lanveil $(date -u '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null)"
		case "$src" in
			owner) echo "captive portal URI: $uri (option captive_portal_uri)" ;;
			wan:*) echo "captive portal URI: $uri (relayed from DHCP option 114 on ${src#wan:})" ;;
			*) echo "captive portal URI: none" ;;
		esac
		echo "IPv6-only preferred (DHCPv4 108): ${wait:-off}${wait:+ s}"
		case "$mode" in
			native) echo "odhcpd: native captive_portal_uri and ipv6_only_preferred" ;;
			legacy) echo "odhcpd: no native options (older than 25.12); DHCPv6 103 via dhcpv6_raw" ;;
			none) echo "odhcpd: not installed" ;;
		esac
		echo "DHCPv4 server: $v4"
		printf '%s' "$lines"
		[ -n "$lan" ] || echo "dhcp sections: none in zone(s) $(lanveil_opt force_dns_zone lan | lanveil_join)"
		[ "$mode" = native ] || [ -z "$uri" ] || echo "$ra"
	} >"$LANVEIL_RUN/capport.new.$$" && mv "$LANVEIL_RUN/capport.new.$$" "$LANVEIL_RUN/capport"
}

# --- WAN: ask for DHCP option 114 (netifd 'reqopts') -------------------------------
#
# While relay_wan_portal or the daemon's captive_plaintext is on, '114' is added to
# reqopts of the WAN's DHCP interfaces (proto dhcp, not in a capture zone); netifd
# hands it to udhcpc as -O 114. Unlike the dhcp wiring this stays over stop and
# reboot: udhcpc only reads its options when the interface comes up, so undoing it
# on every stop would renew the WAN lease on every stop and boot. It is undone (same
# design: network.orig/network.wired byte for byte, else only lanveil's '114') when
# both options are turned off and on package removal. Saved in /etc/lanveil/network/.
LANVEIL_NET="$LANVEIL_ETC/network"

# The WAN's DHCP interfaces: proto dhcp, not in a capture (LAN) zone.
lanveil_wan_dhcp_ifaces() {
	local nets s
	nets="$(lanveil_capture_networks)"
	for s in $(lanveil_uci_dhcp -X show network | sed -n 's/^network\.\([A-Za-z0-9_]*\)=interface$/\1/p'); do
		[ "$(lanveil_uci_dhcp get "network.$s.proto")" = dhcp ] || continue
		lanveil_in "$s" "$nets" || echo "$s"
	done
}

lanveil_uci_is_list() { # CONFIG SECTION OPTION
	lanveil_uci_dhcp export "$1" | awk -v s="'$2'" -v o="$3" '
		$1 == "config" { in_s = ($3 == s) }
		in_s && $1 == "list" && $2 == o { f = 1 }
		END { exit !f }'
}

# Interfaces whose '114' lanveil added (one per line in $LANVEIL_NET/added).
lanveil_net_added() {
	[ -f "$LANVEIL_NET/added" ] && cat "$LANVEIL_NET/added"
	return 0
}

# Adds (WANT=1) or removes lanveil's 114 in network.IFACE.reqopts, keeping the
# option's type (option 'a b' or list) and the owner's values.
lanveil_net_reqopts() { # IFACE WANT
	local i="$1" cur w new=""
	cur="$(lanveil_uci_dhcp get "network.$i.reqopts")" || cur=""
	if [ "$2" = 1 ]; then
		for w in $cur; do [ "$w" = 114 ] && return 0; done
		if lanveil_uci_is_list network "$i" reqopts; then
			lanveil_uci_dhcp add_list "network.$i.reqopts=114"
		else
			lanveil_uci_dhcp set "network.$i.reqopts=${cur:+$cur }114"
		fi
		echo "$i" >>"$LANVEIL_NET/added"
		return 0
	fi
	lanveil_in "$i" "$(lanveil_net_added)" || return 0
	grep -vx "$i" "$LANVEIL_NET/added" >"$LANVEIL_NET/added.tmp"
	mv "$LANVEIL_NET/added.tmp" "$LANVEIL_NET/added"
	if lanveil_uci_is_list network "$i" reqopts; then
		lanveil_uci_dhcp del_list "network.$i.reqopts=114"
		return 0
	fi
	for w in $cur; do [ "$w" = 114 ] || new="${new:+$new }$w"; done
	[ "$new" = "$cur" ] && return 0
	if [ -z "$new" ]; then
		lanveil_uci_dhcp delete "network.$i.reqopts"
	else
		lanveil_uci_dhcp set "network.$i.reqopts=$new"
	fi
}

# netifd restarts the interfaces whose configuration changed (the WAN renews).
lanveil_reload_network() {
	local init="${IPKG_INSTROOT:-}/etc/init.d/network"
	[ -x "$init" ] && "$init" reload >/dev/null 2>&1
	return 0
}

# Is option 114 wanted on the WAN?
lanveil_net_wanted() {
	lanveil_bool relay_wan_portal 1 && return 0
	case "$(lanveil_uci get lanveil.@lanveil[0].captive_plaintext)" in
		1 | yes | on | true | enabled) return 0 ;;
	esac
	return 1
}

# Called on start/reload. Idempotent: commits and reloads the network only on change.
lanveil_net_wire() {
	local rc
	lanveil_lock
	if lanveil_net_wanted; then
		lanveil_net_wire_locked
	else
		lanveil_net_restore
	fi
	rc=$?
	lanveil_unlock
	return "$rc"
}

lanveil_net_wire_locked() {
	local pristine ifaces i
	[ -f "$LANVEIL_CONFDIR/network" ] || return 0
	mkdir -p "$LANVEIL_NET"
	rm -f "$LANVEIL_RUN/uci/network"
	pristine=0
	if [ ! -f "$LANVEIL_NET/network.wired" ] || cmp -s "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.wired"; then
		pristine=1
	fi
	[ -f "$LANVEIL_NET/network.orig" ] || cp -p "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.orig" || return 1
	ifaces="$(lanveil_wan_dhcp_ifaces)"
	for i in $ifaces; do
		lanveil_net_reqopts "$i" 1
	done
	for i in $(lanveil_net_added); do
		lanveil_in "$i" "$ifaces" || lanveil_net_reqopts "$i" 0
	done
	if [ -n "$(lanveil_uci_dhcp changes network)" ]; then
		lanveil_uci_dhcp commit network || return 1
		[ "$pristine" = 1 ] && cp -p "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.wired"
		lanveil_log info "DHCP option 114 (captive portal) requested on $(echo "$ifaces" | lanveil_join)"
		lanveil_reload_network
	elif [ ! -f "$LANVEIL_NET/network.wired" ]; then
		cp -p "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.wired"
	fi
	return 0
}

# Undoes lanveil_net_wire (caller holds the lock). A no-op when nothing was saved.
lanveil_net_restore() {
	local i changed=0
	[ -f "$LANVEIL_NET/network.orig" ] || return 0
	rm -f "$LANVEIL_RUN/uci/network"
	if cmp -s "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.wired"; then
		if ! cmp -s "$LANVEIL_CONFDIR/network" "$LANVEIL_NET/network.orig"; then
			cp -p "$LANVEIL_NET/network.orig" "$LANVEIL_CONFDIR/.network.lanveil" &&
				mv "$LANVEIL_CONFDIR/.network.lanveil" "$LANVEIL_CONFDIR/network" || return 1
			changed=1
		fi
	else
		for i in $(lanveil_net_added); do
			lanveil_net_reqopts "$i" 0
		done
		if [ -n "$(lanveil_uci_dhcp changes network)" ]; then
			lanveil_uci_dhcp commit network || return 1
			changed=1
		fi
	fi
	rm -f "$LANVEIL_NET/network.orig" "$LANVEIL_NET/network.wired" "$LANVEIL_NET/added"
	rmdir "$LANVEIL_NET" "$LANVEIL_ETC" 2>/dev/null
	if [ "$changed" = 1 ]; then
		lanveil_log info "DHCP option 114 no longer requested on the WAN"
		lanveil_reload_network
	fi
	return 0
}

# --- udhcpc hook (/etc/udhcpc.user.d/lanveil) ------------------------------------
#
# The daemon keeps the WAN's captive portal only in memory, and the same ifup that runs
# the hook also runs wan_up, which restarts the daemon: so the hook records what it told
# the daemon, one line "INTERFACE URI [DNS...]" (the lease's DNS servers) in
# $LANVEIL_WAN_PORTAL. The daemon reads it at every start (--wan-portal-record: also a
# respawn by procd after a crash, which runs no init script), and every daemon that
# starts through the init script (service_started: start, restart, wan_up's restart,
# reload) is told it again (lanveil_wan_portal_replay): a hook that ran between the
# daemon's read and its control socket is not lost. A withdrawal by
# the interface that announced it removes the record. On tmpfs: gone with a reboot, as is
# the daemon's memory. The record is written before the daemon is told, so a replay that
# runs meanwhile reads it again after its call and ends with the hook's latest word.
LANVEIL_WAN_PORTAL="$LANVEIL_RUN/wan_portal"

# One request: lanveil --control SOCKET wan-portal set URI DNS... | clear. Returns 0 told,
# 1 not taken (no answer within 5 s, refused), 2 no socket (the daemon is not running, or
# not yet listening), 3 no control_socket configured.
lanveil_wan_portal_send() { # set URI DNS... | clear
	local sock bin="${IPKG_INSTROOT:-}/usr/sbin/lanveil" to=""
	sock="$(lanveil_uci get lanveil.@lanveil[0].control_socket)" || sock=""
	[ -n "$sock" ] || return 3
	[ -S "${IPKG_INSTROOT:-}$sock" ] || return 2
	command -v timeout >/dev/null 2>&1 && to="timeout 5"
	# shellcheck disable=SC2086  # $to is a command prefix or nothing
	$to "$bin" --control "$sock" wan-portal "$@" >/dev/null 2>&1 && return 0
	return 1
}

# The hook's call. Best effort: a daemon that is down (no socket: nothing to tell, the
# record reaches it when it starts) or does not answer within 5 s is logged only.
lanveil_wan_portal_control() { # set URI DNS... | clear
	lanveil_wan_portal_send "$@"
	case $? in
		1) lanveil_log warn "could not tell the daemon: wan-portal $1 failed" ;;
		3) lanveil_log info "no control_socket configured; the daemon is not told about the WAN's captive portal" ;;
	esac
	return 0
}

# service_started, once the daemon answers: tells it the recorded portal (nothing when none
# is recorded: a new daemon knows no portal). Its control socket may lag: up to 10 tries
# 0.2 s apart, and none started after 5 s (a call can wait 5 s for an answer), then one log
# line; the start goes on. Read again after each call (a hook may run meanwhile): a changed
# record is sent too (a removed one as clear), at most 3 rounds.
lanveil_wan_portal_replay() {
	local sent="" cur round=0 n rc iface uri dns d servers deadline
	deadline=$(($(date +%s) + 5))
	while [ "$round" -lt 3 ]; do
		round=$((round + 1))
		cur=""
		[ -f "$LANVEIL_WAN_PORTAL" ] && { read -r cur <"$LANVEIL_WAN_PORTAL" || cur=""; }
		[ "$cur" = "$sent" ] && return 0
		iface="" uri="" dns="" servers=""
		[ -n "$cur" ] && read -r iface uri dns <<-EOF
			$cur
		EOF
		for d in $dns; do
			case "$d" in *[!0-9.]* | '') ;; *) servers="$servers $d" ;; esac
		done
		n=0
		while :; do
			if [ -n "$uri" ]; then
				# shellcheck disable=SC2086  # one argument per DNS server (digits and dots)
				lanveil_wan_portal_send set "$uri" $servers
			else
				lanveil_wan_portal_send clear
			fi
			rc=$?
			[ "$rc" = 0 ] && break
			[ "$rc" = 3 ] && return 0
			n=$((n + 1))
			if [ "$n" -ge 10 ] || [ "$(date +%s)" -ge "$deadline" ]; then
				lanveil_log warn "could not tell the daemon the WAN's captive portal${iface:+ ($iface)} again after its start: wan-portal $([ -n "$uri" ] && echo set || echo clear) failed; it learns it at the WAN's next DHCP renewal"
				return 0
			fi
			sleep 0.2 2>/dev/null || sleep 1
		done
		[ -n "$uri" ] && lanveil_log info "${iface:-WAN}: captive portal told again to the daemon"
		sent="$cur"
	done
	return 0
}

# Called by /lib/netifd/dhcp.script (through /etc/udhcpc.user.d/lanveil) with the
# udhcpc action and environment: INTERFACE (netifd's name), opt114, dns.
lanveil_wan_hook() { # ACTION
	local uri="" d servers="" i=""
	lanveil_in "${INTERFACE:-}" "$(lanveil_wan_dhcp_ifaces)" || return 0
	case "$1" in
		bound | renew)
			# The daemon's binary decodes and checks the value (lanveil_signals); the
			# value itself is never logged: it comes from an untrusted network.
			if [ -n "${opt114:-}" ] && lanveil_signals "$opt114"; then
				case "$LANVEIL_SIG_WAN" in
					ok) uri="$LANVEIL_SIG_WAN_URI" ;;
					unrestricted) lanveil_log info "$INTERFACE: DHCP option 114 says there is no captive portal" ;;
					*) lanveil_log warn "$INTERFACE: ignoring DHCP option 114 (${#opt114} hex/text chars): ${LANVEIL_SIG_WAN#invalid: }" ;;
				esac
			fi
			;;
		deconfig | leasefail) ;;
		*) return 0 ;;
	esac
	mkdir -p "$LANVEIL_RUN"
	if [ -n "$uri" ]; then
		# udhcpc's $dns: the lease's DNS servers (dotted quads, checked anyway).
		for d in ${dns:-}; do
			case "$d" in *[!0-9.]* | '') ;; *) servers="$servers $d" ;; esac
		done
		# Recorded first (see lanveil_wan_portal_replay), then told.
		# A file of this hook's own: hooks of two WANs (wan, wwan) may run at once.
		printf '%s %s%s\n' "$INTERFACE" "$uri" "$servers" >"$LANVEIL_WAN_PORTAL.new.$$" &&
			mv "$LANVEIL_WAN_PORTAL.new.$$" "$LANVEIL_WAN_PORTAL"
		# shellcheck disable=SC2086  # one argument per DNS server
		lanveil_wan_portal_control set "$uri" $servers
		lanveil_log info "$INTERFACE: captive portal $uri"
	else
		[ -f "$LANVEIL_WAN_PORTAL" ] && { read -r i d <"$LANVEIL_WAN_PORTAL" || i=""; }
		if [ -z "$i" ]; then
			# Nothing recorded: a clear costs nothing and covers a daemon told otherwise.
			lanveil_wan_portal_control clear
		elif [ "$i" = "$INTERFACE" ]; then
			rm -f "$LANVEIL_WAN_PORTAL"
			lanveil_wan_portal_control clear
			lanveil_log info "$INTERFACE: captive portal cleared"
		else
			# Another DHCP WAN (wan and wwan on a travel router) announced the portal the
			# daemon knows; this interface's lease does not withdraw it.
			lanveil_log debug "$INTERFACE: no captive portal in this lease; the one $i announced stays"
		fi
	fi
	# Relay (or stop relaying) to the LAN while lanveil's dhcp wiring is in place.
	if [ -f "$LANVEIL_STATE/dhcp.orig" ] && lanveil_bool dnsmasq 1; then
		lanveil_dnsmasq_wire
	fi
	return 0
}

# --- sysupgrade (/lib/upgrade/lanveil.sh) ----------------------------------------------
#
# sysupgrade keeps /etc/config/dhcp as it is, i.e. wired to lanveil, and kills every
# process without running init stop. An image without lanveil would boot with dnsmasq
# forwarding only to a port nobody listens on: no DNS for the LAN. So the backup also
# gets, in /etc/lanveil/sysupgrade/: the owner's dhcp (what stop would restore, computed
# on a scratch copy; the live file is not touched), the wired file as saved (dhcp.kept),
# lanveil's saved dnsmasq settings (dnsmasq/) and this file (lanveil.sh), plus
# /etc/uci-defaults/99-lanveil-sysupgrade. On the first boot of the new image (uci-defaults
# run before dnsmasq starts) that script puts the owner's dhcp back unless lanveil is
# installed and enabled there (lanveil then wires again when it starts, as after a reboot):
# dhcp.owner when /etc/config/dhcp is still dhcp.kept byte for byte, else (an earlier
# uci-defaults script edited it) lanveil's entries are undone section by section, with the
# same code and saved settings as stop (lanveil_dnsmasq_restore_locked).
LANVEIL_UPGRADE="$LANVEIL_ETC/sysupgrade"
LANVEIL_UPGRADE_DEFAULTS="${IPKG_INSTROOT:-}/etc/uci-defaults/99-lanveil-sysupgrade"

# The owner's dhcp as lanveil_dnsmasq_restore would leave it, written to OUT: the restore
# runs in a child shell on a scratch root (its own IPKG_INSTROOT: no init scripts there,
# so no dnsmasq/odhcpd restart; nothing logged). DHCP and STATE (a copy of $LANVEIL_STATE)
# default to the live files, which are then only read (under the lock).
lanveil_unwired_dhcp() { # OUT [DHCP STATE]
	local tmp rc lib="${IPKG_INSTROOT:-}/usr/share/lanveil/lanveil.sh"
	tmp="$(mktemp -d "${TMPDIR:-/tmp}/lanveil-upgrade.XXXXXX")" || return 1
	mkdir -p "$tmp/etc/config" "$tmp/etc/lanveil"
	if [ $# -ge 3 ]; then
		cp -p "$2" "$tmp/etc/config/dhcp" && cp -pR "$3" "$tmp/etc/lanveil/dnsmasq"
		rc=$?
	else
		lanveil_lock
		cp -p "$LANVEIL_CONFDIR/dhcp" "$tmp/etc/config/dhcp" && cp -pR "$LANVEIL_STATE" "$tmp/etc/lanveil/dnsmasq"
		rc=$?
		lanveil_unlock
	fi
	if [ "$rc" = 0 ]; then
		# shellcheck disable=SC2016  # expanded by the child shell
		IPKG_INSTROOT="$tmp" UCI_CONFIG_DIR="$tmp/etc/config" sh -c \
			'. "$1" && lanveil_log() { :; } && lanveil_dnsmasq_restore_locked' _ "$lib" &&
			cp "$tmp/etc/config/dhcp" "$1"
		rc=$?
	fi
	rm -rf "$tmp"
	return "$rc"
}

# sysupgrade's hook: CONFFILES is its list of files to save (one path a line).
lanveil_sysupgrade_conffiles() { # CONFFILES
	local list="$1" u="${LANVEIL_UPGRADE#"${IPKG_INSTROOT:-}"}" d="${LANVEIL_UPGRADE_DEFAULTS#"${IPKG_INSTROOT:-}"}" rc f
	[ -f "$list" ] || return 0
	# Drop what an earlier run left (sysupgrade -b, -l): listed, but maybe not made again.
	rm -rf "$LANVEIL_UPGRADE" "$LANVEIL_UPGRADE_DEFAULTS"
	grep -v -e "^$u/" -e "^$d\$" "$list" >"$list.lanveil"
	mv "$list.lanveil" "$list"
	lanveil_wired || return 0
	rc=1
	if mkdir -p "$LANVEIL_UPGRADE" "${LANVEIL_UPGRADE_DEFAULTS%/*}" && chmod 0700 "$LANVEIL_UPGRADE"; then
		# One snapshot of the live dhcp and the saved settings (a rewire may run meanwhile).
		lanveil_lock
		cp -p "$LANVEIL_CONFDIR/dhcp" "$LANVEIL_UPGRADE/dhcp.kept" && cp -pR "$LANVEIL_STATE" "$LANVEIL_UPGRADE/dnsmasq"
		rc=$?
		lanveil_unlock
	fi
	if [ "$rc" != 0 ] ||
		! cp -p "${IPKG_INSTROOT:-}/usr/share/lanveil/lanveil.sh" "$LANVEIL_UPGRADE/lanveil.sh" ||
		! lanveil_unwired_dhcp "$LANVEIL_UPGRADE/dhcp.owner" "$LANVEIL_UPGRADE/dhcp.kept" "$LANVEIL_UPGRADE/dnsmasq"; then
		rm -rf "$LANVEIL_UPGRADE"
		lanveil_log err "sysupgrade: could not save the owner's dnsmasq settings; an image without lanveil needs: cp /etc/lanveil/dnsmasq/dhcp.orig /etc/config/dhcp"
		return 0
	fi
	# The paths below say /etc/ only where a path is meant (tests/openwrt/test_init.sh runs
	# this script with every '/etc/' pointed into a scratch root).
	cat >"$LANVEIL_UPGRADE_DEFAULTS" <<-'EOF'
		# Written by lanveil's sysupgrade hook (/lib/upgrade/lanveil.sh) into the configuration
		# backup. The kept /etc/config/dhcp points dnsmasq at lanveil only. If this image runs
		# lanveil, it wires dnsmasq again when it starts; otherwise the owner's dnsmasq settings
		# (as /etc/init.d/lanveil stop would have restored them) are put back.
		su=/etc/lanveil/sysupgrade
		if [ -f "$su/dhcp.owner" ] && ! { [ -x /etc/init.d/lanveil ] && /etc/init.d/lanveil enabled; }; then
			if cmp -s /etc/config/dhcp "$su/dhcp.kept"; then
				cp "$su/dhcp.owner" /etc/config/dhcp
				logger -t lanveil "lanveil is not in this image: dnsmasq settings from before lanveil restored" 2>/dev/null
			elif [ -f "$su/lanveil.sh" ] && [ -f "$su/dnsmasq/dhcp.orig" ]; then
				# An earlier uci-defaults script changed dhcp: undo lanveil's entries section by
				# section, as stop does (its code from the old image, its saved settings; dnsmasq
				# is not running yet: no restart).
				(
					IPKG_INSTROOT="${su%/*/lanveil/sysupgrade}"
					unset UCI_CONFIG_DIR
					. "$su/lanveil.sh"
					LANVEIL_STATE="$su/dnsmasq"
					lanveil_restart_dnsmasq() { :; }
					lanveil_reload_odhcpd() { :; }
					lanveil_dnsmasq_restore_locked
				) && logger -t lanveil "lanveil is not in this image: its dnsmasq settings undone (dhcp was changed since the backup)" 2>/dev/null
			else
				logger -t lanveil -p daemon.err "lanveil is not in this image and dhcp still forwards to it: cp /etc/lanveil/dnsmasq/dhcp.orig /etc/config/dhcp" 2>/dev/null
			fi
			rm -rf /etc/lanveil/dnsmasq
			rm -f /etc/lanveil/leak_guard.nft
		fi
		rm -rf /etc/lanveil/sysupgrade
		rmdir /etc/lanveil 2>/dev/null
		exit 0
	EOF
	{
		echo "$u/dhcp.kept"
		echo "$u/dhcp.owner"
		echo "$u/lanveil.sh"
		for f in "$LANVEIL_UPGRADE"/dnsmasq/*; do
			[ -f "$f" ] && echo "$u/dnsmasq/${f##*/}"
		done
		echo "$d"
	} >>"$list"
	sort -u "$list" >"$list.lanveil" && mv "$list.lanveil" "$list"
	return 0
}
