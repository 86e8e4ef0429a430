# Test double of OpenWrt's /lib/functions/procd.sh: builds the same JSON with
# the real jshn.sh and appends what would be sent to ubus to $PROCD_LOG, one
# line per call: `service set {json}` / `service delete {json}`.
# shellcheck shell=busybox disable=SC1091,SC3043
# shellcheck source=/dev/null
. "$JSHN_SH"

_procd_seq=0

# The service's lock, as procd.sh has it: fd 1000 on /var/lock/procd_SERVICE.lock, taken
# when procd.sh is sourced (its _procd_wrapper calls procd_lock), so every init-script
# command holds it for its whole life; stop and reload take it again (a no-op then).
procd_lock() {
	local basescript service_name
	# shellcheck disable=SC2154  # initscript: set by rc.common, which sources this file
	basescript="$(readlink "$initscript")"
	service_name="$(basename "${basescript:-$initscript}")"
	if ! flock -n 1000 >/dev/null 2>&1; then
		# shellcheck disable=SC3023  # busybox ash has them, as procd.sh uses
		exec 1000>"$IPKG_INSTROOT/var/lock/procd_${service_name}.lock"
		flock 1000 || logger "warning: procd flock for $service_name failed"
	fi
}

procd_open_service() {
	json_init
	json_add_string name "$1"
	[ -n "$2" ] && json_add_string script "$2"
	json_add_object instances
}

procd_close_service() {
	json_close_object
	json_add_array triggers
	service_triggers
	json_close_array
	echo "service set $(json_dump)" >>"$PROCD_LOG"
}

procd_open_instance() {
	_procd_seq=$((_procd_seq + 1))
	json_add_object "${1:-instance$_procd_seq}"
}

procd_close_instance() { json_close_object; }

_procd_param() { # TYPE VALUES...
	local type="$1" kv
	shift
	case "$type" in
		env | data | limits)
			json_add_object "$type"
			for kv in "$@"; do json_add_string "${kv%%=*}" "${kv#*=}"; done
			json_close_object
			;;
		command | netdev | file | respawn | watch | watchdog)
			if [ "$type" = respawn ] && [ $# -eq 0 ]; then
				set -- 3600 5 5
			fi
			json_add_array "$type"
			for kv in "$@"; do json_add_string "" "$kv"; done
			json_close_array
			;;
		nice | term_timeout) json_add_int "$type" "$1" ;;
		reload_signal) json_add_int "$type" "$(kill -l "$1")" ;;
		pidfile | user | group | seccomp | capabilities | facility | extroot | overlaydir | tmpoverlaysize)
			json_add_string "$type" "$1"
			;;
		stdout | stderr | no_new_privs) json_add_boolean "$type" "$1" ;;
		*)
			echo "procd double: unknown parameter $type" >&2
			return 1
			;;
	esac
}

procd_set_param() { _procd_param "$@"; }
procd_append_param() { _procd_param "$@"; }

procd_add_jail() {
	local name="$1" f
	shift
	json_add_object jail
	json_add_string name "$name"
	for f in "$@"; do json_add_boolean "$f" 1; done
	json_close_object
}

procd_add_jail_mount() {
	local p
	json_add_object jail_mount
	for p in "$@"; do json_add_string "$p" 0; done
	json_close_object
}

procd_add_reload_trigger() {
	local p
	for p in "$@"; do
		json_add_array ""
		json_add_string "" config.change
		json_add_array ""
		json_add_string "" if
		json_add_array ""
		json_add_string "" eq
		json_add_string "" package
		json_add_string "" "$p"
		json_close_array
		json_add_array ""
		json_add_string "" run_script
		json_add_string "" "/etc/init.d/$name"
		json_add_string "" reload
		json_close_array
		json_close_array
		json_add_int "" 1000
		json_close_array
	done
}

procd_add_config_trigger() { # EVENT PACKAGE SCRIPT ARGS...
	local event="$1" pkg="$2" a
	shift 2
	json_add_array ""
	json_add_string "" "$event"
	json_add_array ""
	json_add_string "" if
	json_add_array ""
	json_add_string "" eq
	json_add_string "" package
	json_add_string "" "$pkg"
	json_close_array
	json_add_array ""
	json_add_string "" run_script
	for a in "$@"; do json_add_string "" "$a"; done
	json_close_array
	json_close_array
	json_add_int "" 1000
	json_close_array
}

procd_add_interface_trigger() { # EVENT IFACE SCRIPT ARGS...
	local event="$1" iface="$2" a
	shift 2
	json_add_array ""
	json_add_string "" "$event"
	json_add_array ""
	json_add_string "" if
	json_add_array ""
	json_add_string "" eq
	json_add_string "" interface
	json_add_string "" "$iface"
	json_close_array
	json_add_array ""
	json_add_string "" run_script
	for a in "$@"; do json_add_string "" "$a"; done
	json_close_array
	json_close_array
	json_add_int "" 1000
	json_close_array
}

procd_set_config_changed() { echo "event config.change {\"package\":\"$1\"}" >>"$PROCD_LOG"; }

procd_kill() {
	json_init
	json_add_string name "$1"
	[ -n "$2" ] && json_add_string instance "$2"
	echo "service delete $(json_dump)" >>"$PROCD_LOG"
}

procd_lock
