#!/bin/bash
# The feed Makefile (static checks: no SDK here) and the off-SDK ipk: structure,
# control fields per profile, file modes, ELF arch, and bit-for-bit reproducibility.
# Usage: test_package.sh PROFILE... (each must have been built: cargo board build PROFILE)
# shellcheck source-path=SCRIPTDIR disable=SC2016  # literal $(...) of Makefiles
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
MK="$PKG/Makefile"
T="$WORK/package"
rm -rf "$T"
mkdir -p "$T"

mkvar() { sed -n "s/^[[:space:]]*$1:=//p" "$MK" | head -n 1; }

# --- Makefile ------------------------------------------------------------------
check mk-includes-rust-package-mk grep -q '^include $(TOPDIR)/feeds/packages/lang/rust/rust-package.mk$' "$MK"
check mk-includes-package-mk grep -q '^include $(INCLUDE_DIR)/package.mk$' "$MK"
check mk-build-depends-rust-host [ "$(mkvar PKG_BUILD_DEPENDS)" = rust/host ]
check mk-cargo-lock-honoured [ "$(mkvar RUST_PKG_LOCKED)" = 1 ]
check mk-builds-firmware grep -q 'call Build/Compile/Cargo,firmware' "$MK"
check mk-depends-rust-arch sh -c "sed -n 's/^[[:space:]]*DEPENDS:=//p' '$MK' | grep -q '^\$(RUST_ARCH_DEPENDS)'"
# The daemon verifies upstream certificates against OpenWrt's CA bundle (/etc/ssl/certs/ca-certificates.crt).
check mk-depends-ca-bundle sh -c "sed -n 's/^[[:space:]]*DEPENDS:=//p' '$MK' | tr ' ' '\n' | grep -qx '+ca-bundle'"
check mk-version-is-workspace-version [ "$(mkvar PKG_VERSION)" = "$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml")" ]
check mk-userid [ "$(mkvar USERID)" = "lanveil=5453:lanveil=5453" ]
check cargo-lock-present [ -f "$REPO/Cargo.lock" ]
# The SDK build carries the same extra features as the board profile of that ARCH (DoQ where it fits).
mk_features() { printf 'ARCH:=%s\n%s\nall:\n\t@echo $(RUST_PKG_FEATURES)\n' "$1" "$(grep '^RUST_PKG_FEATURES:=' "$MK")" | make -s -f -; }
for prof in "$REPO"/board/boards/*.toml; do
	name=$(basename "$prof" .toml)
	owrt_arch=${name%%_*}
	[ "$name" = x86_64 ] && owrt_arch=x86_64
	want=$(sed -n 's/^features = \["\(.*\)"\]$/\1/p' "$prof")
	check "mk-features-match-board-$name" [ "$(mk_features "$owrt_arch")" = "$want" ]
done
for v in PKG_NAME PKG_RELEASE PKG_LICENSE PKG_MAINTAINER SECTION CATEGORY TITLE URL; do
	check "mk-has-$v" [ -n "$(mkvar "$v")" ]
done

# Package/lanveil/install and layout.txt describe the same files and modes.
awk '/^define Package\/lanveil\/install/{f=1;next} /^endef/{f=0} f' "$MK" |
	sed -n 's/^[[:space:]]*\$(INSTALL_\(BIN\|DATA\|CONF\)) \([^ ]*\) \$(1)\(.*\)$/\1 \2 \3/p' |
	while read -r kind src dest; do
		case "$kind" in BIN) mode=0755 ;; DATA) mode=0644 ;; CONF) mode=0600 ;; esac
		case "$src" in '$(PKG_INSTALL_DIR)/bin/lanveil') src=@binary ;; ./*) src="${src#./}" ;; esac
		echo "$src $dest $mode"
	done | sort >"$T/mk-layout"
grep -v '^#' "$PKG/layout.txt" | awk 'NF { print $1, $2, $3 }' | sort >"$T/layout"
check mk-install-matches-layout diff -u "$T/layout" "$T/mk-layout"
check layout-sources-exist sh -c "cd '$PKG' && for f in \$(awk '!/^#/ && NF && \$1 != \"@binary\" { print \$1 }' layout.txt); do [ -f \"\$f\" ] || { echo missing \$f; exit 1; }; done"
awk '/^define Package\/lanveil\/conffiles/{f=1;next} /^endef/{f=0} f' "$MK" | sort >"$T/mk-conffiles"
# Conffiles are files the package installs (opkg copies each one without recursing before
# an upgrade: a directory aborts it); the runtime state in /etc/lanveil/ is kept over
# sysupgrade by keep.d, which lists the conffiles too.
check mk-conffiles-no-directory sh -c "! grep -q '/\$' '$T/mk-conffiles'"
check mk-conffiles-are-installed-conffiles diff -u <(awk '$4 == "conffile" { print $2 }' "$PKG/layout.txt" | sort) "$T/mk-conffiles"
check keep-d-lists-conffiles-and-state diff -u <(sort "$T/mk-conffiles" - <<<"/etc/lanveil/") <(sort "$PKG/files/lanveil.keep")
check layout-conffile-is-config [ "$(awk '$4 == "conffile" { print $2 }' "$PKG/layout.txt")" = /etc/config/lanveil ]
check test-sh-executable [ -x "$PKG/test.sh" ]
for s in postinst prerm; do
	awk "/^define Package\/lanveil\/$s\$/{f=1;next} /^endef/{f=0} f" "$MK" | sed 's/\$\$/$/g' >"$T/$s-pkg.mk"
	check "mk-$s-parses" busybox ash -n "$T/$s-pkg.mk"
done

# --- ipk, per profile -----------------------------------------------------------------
[ $# -gt 0 ] || fail ipk-profiles "no PROFILE given"
for profile in "$@"; do
	eval "$(cd "$REPO" && cargo board show "$profile")" || { fail "ipk-$profile" "unknown profile"; continue; }
	if [ ! -f "$BINARY" ]; then
		fail "ipk-$profile-binary" "$BINARY missing; run cargo board build $profile"
		continue
	fi
	if ! out="$(cd "$REPO" && cargo board ipk "$profile" 2>&1)"; then
		fail "ipk-$profile-builds" "$out"
		continue
	fi
	ipk="${out#ipk: }"
	pass "ipk-$profile-builds"
	d="$T/$profile"
	mkdir -p "$d/outer" "$d/control" "$d/data"
	check "ipk-$profile-name" [ "$(basename "$ipk")" = "lanveil_$(mkvar PKG_VERSION)-r$(mkvar PKG_RELEASE)_$ARCH.ipk" ]
	check "ipk-$profile-outer-is-gzip-tar-not-ar" [ "$(tar -tzf "$ipk" | tr '\n' ' ')" = "./debian-binary ./data.tar.gz ./control.tar.gz " ]
	check "ipk-$profile-gzip-no-name-no-mtime" [ "$(od -An -tx1 -N8 "$ipk" | tr -d ' \n')" = 1f8b080000000000 ]
	tar -xzf "$ipk" -C "$d/outer"
	check "ipk-$profile-debian-binary" [ "$(cat "$d/outer/debian-binary")" = 2.0 ]
	tar -xzf "$d/outer/control.tar.gz" -C "$d/control"
	tar -xzf "$d/outer/data.tar.gz" -C "$d/data"
	field() { sed -n "s/^$1: //p" "$d/control/control"; }
	check "ipk-$profile-control-package" [ "$(field Package)" = lanveil ]
	check "ipk-$profile-control-version" [ "$(field Version)" = "$(mkvar PKG_VERSION)-r$(mkvar PKG_RELEASE)" ]
	check "ipk-$profile-control-architecture" [ "$(field Architecture)" = "$ARCH" ]
	check "ipk-$profile-control-depends" [ "$(field Depends)" = "libc, kmod-nft-nat, kmod-nft-fib, ca-bundle" ]
	check "ipk-$profile-control-require-user" [ "$(field Require-User)" = "lanveil=5453:lanveil=5453" ]
	check "ipk-$profile-control-installed-size" [ "$(field Installed-Size)" = "$(gzip -dc "$d/outer/data.tar.gz" | wc -c)" ]
	for f in Source License Section Maintainer URL SourceDateEpoch Description; do
		check "ipk-$profile-control-has-$f" [ -n "$(field "$f")" ]
	done
	check "ipk-$profile-control-field-order" [ "$(cut -d: -f1 "$d/control/control" | grep -v '^ ' | tr '\n' ' ')" = "Package Version Depends Source SourceName License LicenseFiles Section Require-User SourceDateEpoch URL Maintainer Architecture Installed-Size Description " ]
	check "ipk-$profile-conffiles" [ "$(cat "$d/control/conffiles")" = /etc/config/lanveil ]
	check "ipk-$profile-scripts-executable" [ -x "$d/control/postinst" ] && [ -x "$d/control/prerm" ] && [ -x "$d/control/prerm-pkg" ] && [ -x "$d/control/postinst-pkg" ]
	check "ipk-$profile-prerm-pkg-is-makefile-body" cmp "$d/control/prerm-pkg" "$T/prerm-pkg.mk"
	check "ipk-$profile-postinst-calls-default" grep -q 'default_postinst \$0 \$@' "$d/control/postinst"
	check "ipk-$profile-prerm-calls-default" grep -q 'default_prerm \$0 \$@' "$d/control/prerm"
	tar -tvzf "$d/outer/data.tar.gz" | awk '{ print $1, $2, $6 }' >"$d/data-list"
	check "ipk-$profile-data-owner-root" sh -c "! awk '\$2 != \"0/0\"' '$d/data-list' | grep ."
	check "ipk-$profile-data-modes" sh -c "grep -q '^-rwxr-xr-x 0/0 ./usr/sbin/lanveil$' '$d/data-list' && grep -q '^-rwxr-xr-x 0/0 ./etc/init.d/lanveil$' '$d/data-list' && grep -q '^-rw-r--r-- 0/0 ./etc/config/lanveil$' '$d/data-list' && grep -q '^-rw-r--r-- 0/0 ./lib/upgrade/keep.d/lanveil$' '$d/data-list'"
	check "ipk-$profile-data-files-match-sources" sh -c "cmp '$d/data/etc/init.d/lanveil' '$PKG/files/lanveil.init' && cmp '$d/data/etc/config/lanveil' '$PKG/files/lanveil.config' && cmp '$d/data/usr/sbin/lanveil' '$BINARY'"
	case "$TRIPLE" in
		aarch64-*) want='ARM aarch64' ;;
		armv7-*) want='ARM, EABI5' ;;
		mipsel-*) want='LSB executable, MIPS, MIPS32 rel2' ;;
		x86_64-*) want='x86-64' ;;
	esac
	check "ipk-$profile-binary-arch" sh -c "file -b '$d/data/usr/sbin/lanveil' | grep -q '$want'"
	check "ipk-$profile-binary-static" sh -c "file -b '$d/data/usr/sbin/lanveil' | grep -q 'statically linked'"
	# Reproducible: rebuild after touching every input; same bytes.
	sum1="$(sha256sum "$ipk" | cut -d' ' -f1)"
	touch "$PKG"/files/* "$PKG/Makefile" "$BINARY"
	(cd "$REPO" && cargo board ipk "$profile" >/dev/null 2>&1)
	check "ipk-$profile-reproducible" [ "$sum1" = "$(sha256sum "$ipk" | cut -d' ' -f1)" ]
	echo "# $ipk sha256 $sum1 ($(stat -c %s "$ipk") bytes)"
done

finish
