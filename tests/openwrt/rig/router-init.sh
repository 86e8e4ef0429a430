#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# PID 1 of the router's namespaces (pid, mount, net, uts, ipc), started by
# router.sh through unshare. Runs with the host's root filesystem still visible,
# builds the router's view of the world and execs OpenWrt's procd as PID 1 in
# a chroot of the rig's rootfs:
#   ROOTFS/tmp   fresh tmpfs every boot (/var -> tmp, as on OpenWrt)
#   ROOTFS/proc  this pid namespace's proc; /proc/sys read-only except net/
#                (per network namespace), /proc/kmsg masked (logd would
#                otherwise drain the host's kernel log)
#   ROOTFS/sys   this network namespace's sysfs, read-only
#   ROOTFS/dev   tmpfs: null, zero, random, urandom, tty; console -> a log file
#   ROOTFS/usr/lib/x86_64-linux-gnu  the host's libraries, read-only (for the
#                Debian binaries: dnsmasq, nft, busybox, gawk, flock)
# Everything is mounted inside the private mount namespace: the host sees none
# of it, and it all goes when the namespace's last process exits.
set -euo pipefail

RUN="$1"
ROOTFS="$RUN/rootfs"

hostname OpenWrt
ip link set lo up

mount --make-rprivate /
mount -t tmpfs -o mode=1777,size=64m tmpfs "$ROOTFS/tmp"
mount -t proc proc "$ROOTFS/proc"
mount --bind "$ROOTFS/proc/sys" "$ROOTFS/proc/sys"
mount --bind "$ROOTFS/proc/sys/net" "$ROOTFS/proc/sys/net"
mount -o remount,bind,ro "$ROOTFS/proc/sys"
mount --bind /dev/null "$ROOTFS/proc/kmsg"
mount -t sysfs -o ro sysfs "$ROOTFS/sys"
mount -t tmpfs -o mode=0755,size=512k tmpfs "$ROOTFS/dev"
for d in null zero random urandom tty; do
	touch "$ROOTFS/dev/$d"
	mount --bind "/dev/$d" "$ROOTFS/dev/$d"
done
mkdir -p "$ROOTFS/dev/pts" "$ROOTFS/dev/shm"
touch "$ROOTFS/dev/console"
mount --bind "$RUN/console.log" "$ROOTFS/dev/console"
mkdir -p "$ROOTFS/usr/lib/x86_64-linux-gnu"
mount --bind -o ro /usr/lib/x86_64-linux-gnu "$ROOTFS/usr/lib/x86_64-linux-gnu"
mount -o remount,bind,ro "$ROOTFS/usr/lib/x86_64-linux-gnu"

# What procd as PID 1 expects from OpenWrt's preinit (not run here).
mkdir -p "$ROOTFS/tmp/run" "$ROOTFS/tmp/lock" "$ROOTFS/tmp/state" "$ROOTFS/tmp/resolv.conf.d" \
	"$ROOTFS/tmp/log" "$ROOTFS/tmp/.uci"
: >"$ROOTFS/tmp/resolv.conf.d/resolv.conf.auto"

# router.sh moves the LAN and WAN veths into this namespace, then lets procd start
# (netifd must find them). Bounded.
for _ in $(seq 1 100); do
	[ -e "$RUN/links-ready" ] && break
	sleep 0.1
done

cd "$ROOTFS"
exec chroot "$ROOTFS" /usr/bin/env -i container=1 HOME=/root \
	PATH=/usr/sbin:/usr/bin:/sbin:/bin /sbin/procd
