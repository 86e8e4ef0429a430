#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""A DNS-over-TLS upstream that records what it receives (the emulated router's ISP side).

Terminates TLS (Python's ssl module: OpenSSL) on ADDR:853 with the test certificate, and for every
DNS message a client sends (RFC 7858 framing: 2-byte length + message) appends one line to LOG:

    query len=<message length> pad=<length of the EDNS padding option's data, or -> hex=<message>

then forwards the message unchanged to a plain DNS-over-TCP resolver (unbound in the ISP namespace)
and relays its answer. The log is what the upstream really received after TLS, so a test can show
that lanveil's queries arrive padded (RFC 7830 option 12, RFC 8467 128-octet blocks).

    dot-recorder.py ADDR PORT CERT KEY FORWARD_ADDR FORWARD_PORT LOG
"""
import socket
import ssl
import struct
import sys
import threading


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def padding_len(msg):
    """Length of the EDNS(0) padding option's data (option code 12), or None without one."""
    try:
        qd, an, ns, ar = struct.unpack("!4H", msg[4:12])
        off = 12
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        for i in range(an + ns + ar):
            off = skip_name(msg, off)
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off : off + 10])
            off += 10
            rdata = msg[off : off + rdlen]
            off += rdlen
            if rtype == 41 and i >= an + ns:
                o = 0
                while o + 4 <= len(rdata):
                    code, olen = struct.unpack("!HH", rdata[o : o + 4])
                    if code == 12:
                        return olen
                    o += 4 + olen
    except (IndexError, struct.error):
        return None
    return None


def serve(raw, ctx, fwd, log, lock):
    conn = raw
    try:
        raw.settimeout(30)
        conn = ctx.wrap_socket(raw, server_side=True)
        while True:
            hdr = read_exact(conn, 2)
            if hdr is None:
                return
            msg = read_exact(conn, struct.unpack("!H", hdr)[0])
            if msg is None:
                return
            pad = padding_len(msg)
            with lock, open(log, "a", encoding="ascii") as f:
                f.write(f"query len={len(msg)} pad={'-' if pad is None else pad} hex={msg.hex()}\n")
            with socket.create_connection(fwd, timeout=5) as up:
                up.sendall(hdr + msg)
                rhdr = read_exact(up, 2)
                if rhdr is None:
                    return
                answer = read_exact(up, struct.unpack("!H", rhdr)[0])
                if answer is None:
                    return
            conn.sendall(rhdr + answer)
    except (OSError, ssl.SSLError):
        return
    finally:
        conn.close()


def main():
    addr, port, cert, key, faddr, fport, log = sys.argv[1:8]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lock = threading.Lock()
    with socket.create_server((addr, int(port))) as srv:
        open(log, "a", encoding="ascii").close()
        while True:
            raw, _ = srv.accept()
            threading.Thread(target=serve, args=(raw, ctx, (faddr, int(fport)), log, lock), daemon=True).start()


if __name__ == "__main__":
    main()
