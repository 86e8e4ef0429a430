#!/bin/sh
# openwrt/packages CI hook (run inside an OpenWrt rootfs after installing the
# package): test.sh PACKAGE VERSION.
case "$1" in
	lanveil)
		version="${2%%-*}"
		lanveil --version | grep -F "$version" || exit 1
		lanveil --check-config /etc/config/lanveil || exit 1
		;;
esac
