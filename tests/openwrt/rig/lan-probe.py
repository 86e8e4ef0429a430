#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""What a LAN client hears from the emulated router's IPv6 daemons (odhcpd), on the wire.

    lan-probe.py ra IFACE       send a Router Solicitation, print each option of the first
                                Router Advertisement as "ra-option TYPE HEX"
    lan-probe.py dhcpv6 IFACE   send a DHCPv6 Information-Request asking (ORO) for options
                                23 (DNS) and 103 (captive portal), print each option of the
                                Reply as "dhcpv6-option CODE HEX"

Run inside the LAN client's network namespace (needs an IPv6 link-local address on IFACE).
Exits 1 when nothing answers within 5 s. Python's socket module only: no DHCP or ND library.
"""
import os
import select
import socket
import struct
import sys
import time


def link_local_ready(iface, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                addr, _idx, _plen, scope, flags, name = line.split()
                # scope 0x20 = link, flags 0x40/0x80 = tentative/dadfailed
                if name == iface and scope == "20" and not int(flags, 16) & 0xC0:
                    return
        time.sleep(0.2)


def ra(iface):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    idx = socket.if_nametoindex(iface)
    s.sendto(struct.pack("!BBHI", 133, 0, 0, 0), ("ff02::2", 0, 0, idx))
    deadline = time.time() + 5
    while time.time() < deadline:
        r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
        if not r:
            break
        pkt, _ = s.recvfrom(65535)
        if len(pkt) < 16 or pkt[0] != 134:
            continue
        off = 16
        while off + 2 <= len(pkt):
            typ, ln = pkt[off], pkt[off + 1] * 8
            if ln == 0:
                break
            print(f"ra-option {typ} {pkt[off + 2 : off + ln].hex()}")
            off += ln
        return 0
    return 1


def dhcpv6(iface):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", 546))
    idx = socket.if_nametoindex(iface)
    xid = os.urandom(3)
    duid = struct.pack("!HH", 3, 1) + bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
    opts = struct.pack("!HH", 1, len(duid)) + duid  # client id (DUID-LL)
    oro = struct.pack("!HH", 23, 103)
    opts += struct.pack("!HH", 6, len(oro)) + oro  # option request
    opts += struct.pack("!HHH", 8, 2, 0)  # elapsed time
    s.sendto(bytes([11]) + xid + opts, ("ff02::1:2", 547, 0, idx))
    deadline = time.time() + 5
    while time.time() < deadline:
        r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
        if not r:
            break
        pkt, _ = s.recvfrom(65535)
        if len(pkt) < 4 or pkt[0] != 7 or pkt[1:4] != xid:
            continue
        off = 4
        while off + 4 <= len(pkt):
            code, ln = struct.unpack("!HH", pkt[off : off + 4])
            print(f"dhcpv6-option {code} {pkt[off + 4 : off + 4 + ln].hex()}")
            off += 4 + ln
        return 0
    return 1


def main():
    what, iface = sys.argv[1], sys.argv[2]
    link_local_ready(iface)
    sys.exit({"ra": ra, "dhcpv6": dhcpv6}[what](iface))


if __name__ == "__main__":
    main()
