#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Builds OpenWrt's userland (pinned commits, tests/openwrt/rig/sources.tsv) for the
# emulated router (tests/openwrt/router.sh). Prints the install tree's path.
#
#   tests/openwrt/rig/build.sh [--force]
#   tests/openwrt/rig/build.sh --fetch-only DIR   fetch + verify the archives into DIR
#
# LANVEIL_OPENWRT_SRC=none forces the download path; LANVEIL_OPENWRT_ARCHIVE_URL
# (default https://codeload.github.com/{repo}/tar.gz/{commit}) and
# LANVEIL_OPENWRT_RAW_URL (default https://raw.githubusercontent.com/{repo}/{commit}/{path})
# name where it downloads from (curl URLs: file:// works, which is how the
# verification is tested without network).
#
# Sources: $LANVEIL_OPENWRT_SRC (a directory of NAME.tar.gz + base/), default
# ../shared/openwrt-src next to the repository's main checkout. Without one, the
# archives are downloaded by commit and verified (see fetch_archive).
# Output: target/openwrt-rig/<hash>/root (a DESTDIR tree with usr/, lib/, etc/),
# where <hash> covers sources.tsv, base.tsv, patches/ and RECIPE below: it is
# rebuilt only when one of them changes. Debian packages it needs are installed
# with apt-get (idempotent); the list is DEBS below.
set -euo pipefail

RIG="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$RIG/../../.." && pwd)"
JOBS="${LANVEIL_RIG_JOBS:-2}"

# Debian packages: build tools + libraries, and the binaries the router runs that
# the rig does not build (dnsmasq, nft; busybox is built from Debian's source,
# see busybox_build; the LAN client uses Debian's busybox udhcpc and dig).
DEBS=(cmake make gcc pkg-config libjson-c-dev libcrypt-dev nftables dnsmasq-base
	bind9-dnsutils busybox util-linux iproute2 ca-certificates curl xz-utils dpkg-dev)

log() { printf 'rig-build: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

default_src() {
	local common
	if [ "${LANVEIL_OPENWRT_SRC:-}" = none ]; then
		printf '\n'
		return
	fi
	if [ -n "${LANVEIL_OPENWRT_SRC:-}" ]; then
		printf '%s\n' "$LANVEIL_OPENWRT_SRC"
		return
	fi
	if [ -d "$ROOT/../shared/openwrt-src" ]; then
		printf '%s\n' "$ROOT/../shared/openwrt-src"
		return
	fi
	# A git worktree: ../shared relative to the main checkout.
	common="$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)"
	if [ -n "$common" ] && [ -d "$(dirname "$common")/../shared/openwrt-src" ]; then
		printf '%s\n' "$(cd "$(dirname "$common")/../shared/openwrt-src" && pwd)"
		return
	fi
	printf '\n'
}

# Bump when a change to this script changes what it builds (flags, components,
# install steps); changes to fetching or logging need no rebuild.
RECIPE=1
# LuCI (issue 14): luci_build below; its recipe is separate so the two issues' bumps do not collide.
RECIPE_LUCI=2

rig_hash() {
	{
		cat "$RIG/sources.tsv" "$RIG/base.tsv"
		printf 'recipe %s\n' "$RECIPE"
		printf 'recipe-luci %s\n' "$RECIPE_LUCI" # LuCI (issue 14)
		cat "$RIG"/../luci/rootfs/etc/init.d/* "$RIG"/../luci/rootfs/etc/config/* 2>/dev/null || true
		for p in "$RIG"/patches/*.patch; do
			[ -e "$p" ] && { printf '%s\n' "$(basename "$p")"; cat "$p"; }
		done
	} | sha256sum | cut -c1-16
}

apt_install() {
	local missing=() d
	for d in "${DEBS[@]}"; do
		dpkg-query -W -f='${Status}\n' "$d" 2>/dev/null | grep -q '^install ok installed' || missing+=("$d")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	[ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		{
			apt-get update -qq >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
		}
}

# netifd needs linux-libc-dev >= 6.9 (ethtool netlink, bridge attributes); bookworm
# has 6.1. Fetch bookworm-backports' package into a private directory through a
# private apt source list (the system's sources stay untouched) and use it with
# -isystem; it is never installed over the system headers.
linux_headers() {
	local dir="$1" lists="$CACHE/apt"
	[ -f "$dir/usr/include/linux/ethtool_netlink.h" ] && return 0
	mkdir -p "$lists/lists/partial" "$lists/archives" "$dir"
	printf 'deb http://deb.debian.org/debian bookworm-backports main\n' >"$lists/sources.list"
	local opts=(-o "Dir::Etc::SourceList=$lists/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$lists/lists" -o "Dir::Cache::Archives=$lists/archives"
		-o APT::Sandbox::User=root)
	log "linux-libc-dev from bookworm-backports (private source list)"
	apt-get "${opts[@]}" update -qq >&2
	(cd "$lists/archives" && apt-get "${opts[@]}" download -qq linux-libc-dev/bookworm-backports >&2)
	local debs=("$lists"/archives/linux-libc-dev_*.deb)
	dpkg -x "${debs[0]}" "$dir"
	[ -f "$dir/usr/include/linux/ethtool_netlink.h" ] || die "linux-libc-dev from backports lacks ethtool_netlink.h"
}

# busybox from Debian's source package, built with defconfig (minus tc, which
# does not build against current kernel headers): Debian's busybox binary has no
# awk math (ipcalc.sh, which dnsmasq's init uses for the DHCP range, needs it)
# and no flock (rc.common's procd_lock). Source via a private deb-src list.
busybox_build() {
	local dest="$1" lists="$CACHE/apt" dir dscs
	[ -x "$dest/bin/busybox" ] && return 0
	mkdir -p "$lists/lists/partial" "$lists/src" "$dest/bin"
	printf 'deb-src http://deb.debian.org/debian bookworm main\n' >"$lists/sources-src.list"
	local opts=(-o "Dir::Etc::SourceList=$lists/sources-src.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$lists/lists-src" -o APT::Sandbox::User=root)
	mkdir -p "$lists/lists-src/partial"
	if ! ls "$lists"/src/busybox_*.dsc >/dev/null 2>&1; then
		log "busybox source from Debian (private deb-src list)"
		apt-get "${opts[@]}" update -qq >&2
		(cd "$lists/src" && apt-get "${opts[@]}" source --download-only -qq busybox >&2)
	fi
	dscs=("$lists"/src/busybox_*.dsc)
	rm -rf "$WORK/busybox"
	dpkg-source -x "${dscs[0]}" "$WORK/busybox" >/dev/null
	dir="$WORK/busybox"
	log "build busybox"
	(
		cd "$dir"
		make defconfig >"$LOGS/busybox.config.log" 2>&1
		sed -i -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' \
			-e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' .config
		make -j"$JOBS" busybox >"$LOGS/busybox.make.log" 2>&1
	) || die "busybox build failed (log: $LOGS/busybox.make.log)"
	cp "$dir/busybox" "$dest/bin/busybox"
}

# content_hash DIR: sha256 over the sorted relative paths, modes and contents of
# the files under DIR. Independent of the archive's compression and top-level
# directory name, so a tarball GitHub generates for the commit can be checked
# against the pinned archive (column 'content sha256' of sources.tsv).
content_hash() {
	(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z |
		xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# fetch_archive NAME REPO COMMIT SHA256 CONTENT_SHA256 DEST_DIR
# Local: $SRC/NAME.tar.gz, its sha256 must match. Download (no $SRC): the
# archive of COMMIT from GitHub; it must match SHA256 byte for byte or, since
# GitHub's archive has another top-level directory and compression, its unpacked
# content must match CONTENT_SHA256. Either way DEST_DIR/NAME holds the tree.
fetch_archive() {
	local name="$1" repo="$2" commit="$3" sum="$4" csum="$5" dest="$6" file got tmp top url
	if [ -n "$SRC" ]; then
		file="$SRC/$name.tar.gz"
		[ -f "$file" ] || die "$file missing"
		got="$(sha256sum "$file" | cut -d' ' -f1)"
		[ "$got" = "$sum" ] || die "$file: sha256 $got, manifest says $sum"
		tar -xzf "$file" -C "$dest"
		[ -d "$dest/$name" ] || die "$file does not unpack to $name/"
		return 0
	fi
	file="$CACHE/dl/$name-$commit.tar.gz"
	mkdir -p "$CACHE/dl"
	if [ ! -f "$file" ]; then
		url="${LANVEIL_OPENWRT_ARCHIVE_URL:-}"
		[ -n "$url" ] || url='https://codeload.github.com/{repo}/tar.gz/{commit}'
		url="${url//\{repo\}/$repo}"
		url="${url//\{commit\}/$commit}"
		log "download $url"
		curl -fsSL --retry 3 -o "$file.part" "$url" ||
			die "download of $repo@$commit failed"
		mv "$file.part" "$file"
	fi
	got="$(sha256sum "$file" | cut -d' ' -f1)"
	tmp="$(mktemp -d "$dest/.unpack.XXXXXX")"
	tar -xzf "$file" -C "$tmp"
	top="$(find "$tmp" -mindepth 1 -maxdepth 1 -type d)"
	[ "$(printf '%s\n' "$top" | wc -l)" = 1 ] || die "$file: expected one top-level directory"
	if [ "$got" != "$sum" ]; then
		got="$(content_hash "$top")"
		[ "$got" = "$csum" ] || {
			rm -f "$file" # not kept: the next run downloads again
			die "$repo@$commit: content sha256 $got, manifest says $csum"
		}
	fi
	mv "$top" "$dest/$name"
	rmdir "$tmp"
}

# The shell runtime files (base.tsv: path, commit, sha256), from $SRC/base or
# downloaded by commit from the openwrt (or, where noted, immortalwrt) repository.
fetch_base() {
	local dest="$1" path commit sum got repo c url
	while IFS=$'\t' read -r path commit sum; do
		mkdir -p "$dest/$(dirname "$path")"
		if [ -n "$SRC" ]; then
			cp "$SRC/base/$path" "$dest/$path"
		else
			repo=openwrt/openwrt
			case "$commit" in *immortalwrt*) repo=immortalwrt/immortalwrt ;; esac
			c="${commit%% *}"
			case "$c" in unknown*)
				log "warning: base/$path has no known commit; cannot download it"
				continue
				;;
			esac
			url="${LANVEIL_OPENWRT_RAW_URL:-}"
			[ -n "$url" ] || url='https://raw.githubusercontent.com/{repo}/{commit}/{path}'
			url="${url//\{repo\}/$repo}"
			url="${url//\{commit\}/$c}"
			url="${url//\{path\}/${path#immortalwrt/}}"
			curl -fsSL --retry 3 -o "$dest/$path" "$url" ||
				die "download of $repo@$c:$path failed"
		fi
		got="$(sha256sum "$dest/$path" | cut -d' ' -f1)"
		[ "$got" = "$sum" ] || die "base/$path: sha256 $got, manifest says $sum"
	done <"$RIG/base.tsv"
}

# cmake_build NAME [cmake args...]: configure, build and install NAME into $STAGE.
# SRCDIR_BUILD=1: build inside the source tree (netifd and jsonpath run generator
# scripts by a path relative to the build directory).
cmake_build() {
	local name="$1" t0 bdir
	shift
	t0=$(date +%s)
	bdir="$WORK/build/$name"
	[ "${SRCDIR_BUILD:-0}" = 1 ] && bdir="$WORK/$name"
	export RIG_CC_PRE="${RIG_CC_PRE:-}"
	log "build $name"
	cmake -S "$WORK/$name" -B "$bdir" -G "Unix Makefiles" \
		-DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_INSTALL_PREFIX=/usr \
		-DCMAKE_INSTALL_LIBDIR=lib \
		-DCMAKE_PREFIX_PATH="$STAGE/usr" \
		-DCMAKE_FIND_ROOT_PATH="$STAGE" \
		-DCMAKE_C_COMPILER="$WORK/cc" \
		-DCMAKE_C_FLAGS="$CFLAGS_RIG" \
		-DCMAKE_EXE_LINKER_FLAGS="-L$STAGE/usr/lib -Wl,-rpath-link,$STAGE/usr/lib" \
		-DCMAKE_SHARED_LINKER_FLAGS="-L$STAGE/usr/lib -Wl,-rpath-link,$STAGE/usr/lib" \
		-DCMAKE_MODULE_LINKER_FLAGS="-L$STAGE/usr/lib" \
		"$@" >"$LOGS/$name.cmake.log" 2>&1 || {
		tail -n 30 "$LOGS/$name.cmake.log" >&2
		die "cmake $name failed (log: $LOGS/$name.cmake.log)"
	}
	make -C "$bdir" -j"$JOBS" >"$LOGS/$name.make.log" 2>&1 || {
		grep -m 20 -B2 -A3 'error' "$LOGS/$name.make.log" >&2 || tail -n 30 "$LOGS/$name.make.log" >&2
		die "make $name failed (log: $LOGS/$name.make.log)"
	}
	make -C "$bdir" install DESTDIR="$STAGE" >"$LOGS/$name.install.log" 2>&1 ||
		die "install $name failed (log: $LOGS/$name.install.log)"
	log "built $name in $(($(date +%s) - t0)) s"
}

fetch_all() { # fetch_all DEST
	local name repo commit _date sum csum
	while IFS=$'\t' read -r name repo commit _date sum csum; do
		[ "$name" = name ] && continue
		fetch_archive "$name" "${repo%% *}" "$commit" "$sum" "${csum:-}" "$1"
	done <"$RIG/sources.tsv"
}

# --- LuCI (issue 14) ---------------------------------------------------------
# lucihttp (ucode binding), luci-base's ucode module core.so (+ version.uc),
# ucode-mod-html, and the files luci.mk installs for luci-base, luci-mod-status,
# luci-mod-system and luci-theme-bootstrap: ucode/ -> /usr/share/ucode/luci,
# htdocs/ -> /www, root/ -> /. uhttpd's config and a procd init for it (the stored
# uhttpd.init predates procd) come from tests/openwrt/luci/rootfs.
luci_build() {
	local m l="$WORK/luci" fpic="-fPIC"
	cmake_build lucihttp -DBUILD_LUA=OFF -DBUILD_UCODE=ON -DBUILD_TESTS=OFF
	log "build luci-base core.so, ucode-mod-html"
	(
		cd "$l/modules/luci-base/src"
		make CC="$WORK/cc" CFLAGS="$CFLAGS_RIG" FPIC="$fpic" LDFLAGS="-L$STAGE/usr/lib" \
			LUCI_VERSION="$(awk -F'\t' '$1=="luci"{print substr($3,1,12)}' "$RIG/sources.tsv")" \
			LUCI_GITBRANCH=master clean compile
		make DESTDIR="$STAGE" install
	) >"$LOGS/luci-base.make.log" 2>&1 || die "luci-base src failed (log: $LOGS/luci-base.make.log)"
	# shellcheck disable=SC2086 # CFLAGS_RIG is a list of flags
	"$WORK/cc" $CFLAGS_RIG $fpic -shared -o "$STAGE/usr/lib/ucode/html.so" \
		"$l/contrib/package/ucode-mod-html/src/html.c" >"$LOGS/ucode-mod-html.log" 2>&1 ||
		die "ucode-mod-html failed (log: $LOGS/ucode-mod-html.log)"
	for m in modules/luci-base modules/luci-mod-status modules/luci-mod-system themes/luci-theme-bootstrap; do
		[ -d "$l/$m" ] || continue
		if [ -d "$l/$m/ucode" ]; then
			mkdir -p "$STAGE/usr/share/ucode/luci"
			cp -pR "$l/$m/ucode/." "$STAGE/usr/share/ucode/luci/"
		fi
		if [ -d "$l/$m/htdocs" ]; then
			mkdir -p "$STAGE/www"
			cp -pR "$l/$m/htdocs/." "$STAGE/www/"
		fi
		if [ -d "$l/$m/root" ]; then cp -pR "$l/$m/root/." "$STAGE/"; fi
	done
	# rpcd's ACL for the null session (session login/access), as OpenWrt's rpcd package installs it.
	install -D -m 0644 "$WORK/rpcd/unauthenticated.json" "$STAGE/usr/share/rpcd/acl.d/unauthenticated.json"
	cp -pR "$RIG/../luci/rootfs/." "$STAGE/"
	chmod 755 "$STAGE/etc/init.d/uhttpd"
	ln -sfn ../bin/uhttpd "$STAGE/usr/sbin/uhttpd" # where OpenWrt's package puts it
}

main() {
	local force=0
	[ "${1:-}" = --force ] && force=1
	SRC="$(default_src)"
	if [ -n "$SRC" ]; then
		[ -d "$SRC" ] || die "LANVEIL_OPENWRT_SRC=$SRC is not a directory"
		SRC="$(cd "$SRC" && pwd)"
	fi
	CACHE="$ROOT/target/openwrt-rig"
	if [ "${1:-}" = --fetch-only ]; then
		[ -n "${2:-}" ] || die "--fetch-only DIR"
		mkdir -p "$2"
		CACHE="$(cd "$2" && pwd)/.cache"
		fetch_all "$2"
		fetch_base "$2/base"
		log "fetched and verified into $2"
		return 0
	fi
	local hash out
	hash="$(rig_hash)"
	out="$CACHE/$hash"
	if [ "$force" = 0 ] && [ -f "$out/.done" ]; then
		printf '%s\n' "$out/root"
		return 0
	fi
	apt_install
	local t0
	t0=$(date +%s)
	# One cache at a time: drop builds of other manifests.
	find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
		-regex '.*/[0-9a-f]{16}' -exec rm -rf {} + 2>/dev/null || true
	mkdir -p "$out"
	WORK="$out/src"
	STAGE="$out/root"
	LOGS="$out/logs"
	mkdir -p "$WORK/build" "$STAGE" "$LOGS"
	log "sources: ${SRC:-download by commit}; output: $out"

	# Archives: name, repo, commit, sha256 (+ content sha256) from sources.tsv.
	local name p
	fetch_all "$WORK"
	fetch_base "$out/base"
	for p in "$RIG"/patches/*.patch; do
		[ -e "$p" ] || continue
		name="$(basename "$p")"
		name="${name%%-[0-9][0-9]-*}"
		log "patch $name < $(basename "$p")"
		patch -d "$WORK/$name" -p1 -s <"$p" || die "patch $(basename "$p") does not apply"
	done

	linux_headers "$CACHE/linux-headers"
	busybox_build "$out/busybox"

	# glibc 2.36 lacks strlcpy/strlcat (2.38 has them); OpenWrt's C assumes musl/newer glibc.
	cat >"$WORK/compat.h" <<-'EOF'
		#ifndef LANVEIL_RIG_COMPAT_H
		#define LANVEIL_RIG_COMPAT_H
		#include <string.h>
		#include <features.h>
		#if !__GLIBC_PREREQ(2, 38)
		static inline size_t strlcpy(char *d, const char *s, size_t n)
		{ size_t l = strlen(s); if (n) { size_t c = l >= n ? n - 1 : l; memcpy(d, s, c); d[c] = 0; } return l; }
		static inline size_t strlcat(char *d, const char *s, size_t n)
		{ size_t l = strnlen(d, n); if (l == n) return n + strlen(s); return l + strlcpy(d + l, s, n - l); }
		#endif
		#endif
	EOF
	# -Wno-error after the projects' own -Werror (gcc 12 warns where their CI's
	# compilers do not): a compiler wrapper appends it to every command line.
	# RIG_CC_PRE: flags for one component, also on the command lines of its own
	# generator scripts (netifd's make_ethtool_modes_h.sh runs "$CC -E").
	# shellcheck disable=SC2016 # expanded by the wrapper
	printf '#!/bin/sh\nexec gcc $RIG_CC_PRE "$@" -Wno-error\n' >"$WORK/cc"
	chmod +x "$WORK/cc"
	# -D_GNU_SOURCE= (empty), as the sources that define it themselves do.
	CFLAGS_RIG="-O2 -g0 -D_GNU_SOURCE= -include $WORK/compat.h -I$STAGE/usr/include"

	cmake_build libubox -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF
	cmake_build ubus -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF
	cmake_build uci -DBUILD_LUA=OFF
	cmake_build libnl-tiny
	cmake_build ucode -DFS_SUPPORT=ON -DUCI_SUPPORT=ON -DUBUS_SUPPORT=ON -DULOOP_SUPPORT=ON \
		-DMATH_SUPPORT=ON -DSTRUCT_SUPPORT=ON -DRTNL_SUPPORT=ON -DNL80211_SUPPORT=ON \
		-DDIGEST_SUPPORT=OFF -DDIGEST_SUPPORT_EXTENDED=OFF -DZLIB_SUPPORT=OFF
	cmake_build udebug
	cmake_build procd -DJAIL_SUPPORT=OFF -DSECCOMP_SUPPORT=OFF -DUTRACE_SUPPORT=OFF
	cmake_build rpcd -DIWINFO_SUPPORT=OFF -DUCODE_SUPPORT=ON
	cmake_build uhttpd -DTLS_SUPPORT=OFF -DLUA_SUPPORT=OFF -DUCODE_SUPPORT=ON
	cmake_build odhcpd -DUBUS=ON
	RIG_CC_PRE="-isystem $CACHE/linux-headers/usr/include -I$STAGE/usr/include/libnl-tiny" \
		SRCDIR_BUILD=1 cmake_build netifd -DDUMMY_MODE=OFF
	SRCDIR_BUILD=1 cmake_build jsonpath
	cmake_build ubox
	# opkg: installs lanveil's ipk offline from the file (no feeds, no signatures).
	cmake_build opkg-lede -DBUILD_TESTS=OFF -DENABLE_USIGN=OFF -DHOST_CPU=x86_64 \
		-DVERSION="$(awk -F'\t' '$1=="opkg-lede"{print substr($3,1,12)}' "$RIG/sources.tsv")"

	# firewall4 is ucode + shell: its root/ is the installed tree.
	cp -a "$WORK/firewall4/root/." "$STAGE/"
	sed -i "s/%%VERSION%%/$(awk -F'\t' '$1=="firewall4"{print substr($3,1,12)}' "$RIG/sources.tsv")/" \
		"$STAGE/usr/share/ucode/fw4.uc" 2>/dev/null || true
	# netifd's shell helpers (proto handlers' library), as the netifd package installs them.
	mkdir -p "$STAGE/lib/netifd" "$STAGE/usr/share/libubox"
	cp -a "$WORK/netifd/scripts/." "$STAGE/lib/netifd/"
	[ -f "$STAGE/usr/share/libubox/jshn.sh" ] || die "libubox did not install jshn.sh"

	luci_build # LuCI (issue 14)

	printf '%s\n' "$hash" >"$out/.done"
	log "done in $(($(date +%s) - t0)) s"
	printf '%s\n' "$out/root"
}

main "$@"
