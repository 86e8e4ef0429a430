"""A small DNS-over-QUIC (RFC 9250) server on aioquic, for lanveil's interop tests (tests/tests/doq.rs).

It answers deterministic data from the question alone, and reports what it receives as JSON lines on
stdout, so the test can prove from the server's side what lanveil sends:

  {"event": "listening", "port": P}
  {"event": "ticket_offered"}                      a ClientHello offered a PSK (resumption attempt)
  {"event": "handshake", "alpn": "doq", "resumed": false, "early_data": false}
  {"event": "query", "stream": S, "len": N, "id": I, "padding": true, "fin": true, "name": "a.example."}
  {"event": "closed", "error_code": C, "reason": "..."}
  {"event": "stop_sending", "stream": S, "error_code": C}   the client stopped reading stream S

Answers (first label of the question name):
  nx       NXDOMAIN
  servfail SERVFAIL
  big-N    TXT records of about N octets in 255-octet strings (whatever the type)
  cancel   the stream is reset with DOQ_REQUEST_CANCELLED (0x3)
  badid    the answer carries DNS ID 0x1234 (a protocol error for the client)
  delay-N  the normal answer after N ms
  ttl1     the normal answer with TTL 1 (for serve-stale)
  close    the normal answer, then the server closes the connection (DOQ_NO_ERROR), as one going away
  else     A 192.0.2.(length of the name mod 256), any other type NODATA
The server issues session tickets (allowing 0-RTT), so that a client that resumes or sends early data
is seen doing it.

Usage: aioquic_server.py CERT KEY [PORT [IDLE_SECONDS]]
"""

import asyncio
import json
import struct
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    StopSendingReceived,
    StreamDataReceived,
)

DOQ_REQUEST_CANCELLED = 0x3
DOQ_PROTOCOL_ERROR = 0x2


def report(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def read_name(msg, pos):
    labels = []
    while True:
        n = msg[pos]
        if n == 0:
            return ".".join(labels) + ".", pos + 1
        if n & 0xC0:
            raise ValueError("compressed question")
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n


def opt_options(msg, qend):
    """The option codes of the query's OPT record (the only additional record lanveil sends)."""
    (_, _, _, _, _, arcount) = struct.unpack("!HHHHHH", msg[:12])
    pos = qend
    codes = []
    for _ in range(arcount):
        if msg[pos] != 0:
            return codes
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos + 1 : pos + 11])
        rdata = msg[pos + 11 : pos + 11 + rdlen]
        pos += 11 + rdlen
        if rtype == 41:
            i = 0
            while i + 4 <= len(rdata):
                code, olen = struct.unpack("!HH", rdata[i : i + 4])
                codes.append(code)
                i += 4 + olen
    return codes


def answer(query, name, qtype, qend):
    label = name.split(".")[0]
    ttl = 1 if label == "ttl1" else 300
    flags = 0x8000 | (struct.unpack("!H", query[2:4])[0] & 0x0110) | 0x0080
    rcode = 0
    records = []
    if label == "nx":
        rcode = 3
    elif label == "servfail":
        rcode = 2
    elif label.startswith("big-"):
        size = int(label[4:])
        chunks = []
        while size > 0:
            n = min(255, size)
            chunks.append(bytes([n]) + b"t" * n)
            size -= n + 1
        for c in chunks:
            records.append(struct.pack("!HHHIH", 0xC00C, 16, 1, 300, len(c)) + c)
    elif qtype == 1:
        records.append(
            struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + bytes([192, 0, 2, len(name) % 256])
        )
    msg_id = 0x1234 if label == "badid" else 0
    header = struct.pack("!HHHHHH", msg_id, flags | rcode, 1, len(records), 0, 0)
    return header + query[12:qend] + b"".join(records)


class DoqServer(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers = {}

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            report(
                event="handshake",
                alpn=event.alpn_protocol,
                resumed=event.session_resumed,
                early_data=event.early_data_accepted,
            )
        elif isinstance(event, ConnectionTerminated):
            report(event="closed", error_code=event.error_code, reason=event.reason_phrase)
        elif isinstance(event, StopSendingReceived):
            report(event="stop_sending", stream=event.stream_id, error_code=event.error_code)
        elif isinstance(event, StreamDataReceived):
            buf = self.buffers.setdefault(event.stream_id, bytearray())
            buf += event.data
            if event.end_stream:
                del self.buffers[event.stream_id]
                asyncio.ensure_future(self.handle(event.stream_id, bytes(buf)))

    async def handle(self, sid, data):
        if len(data) < 2 or struct.unpack("!H", data[:2])[0] != len(data) - 2:
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="bad framing")
            self.transmit()
            return
        query = data[2:]
        name, pos = read_name(query, 12)
        qtype = struct.unpack("!H", query[pos : pos + 2])[0]
        qend = pos + 4
        codes = opt_options(query, qend)
        report(
            event="query",
            stream=sid,
            len=len(query),
            id=struct.unpack("!H", query[:2])[0],
            padding=12 in codes,
            keepalive=11 in codes,
            fin=True,
            name=name,
        )
        label = name.split(".")[0]
        if label == "cancel":
            self._quic.reset_stream(sid, DOQ_REQUEST_CANCELLED)
            self.transmit()
            return
        if label.startswith("delay-"):
            await asyncio.sleep(int(label[6:]) / 1000)
        msg = answer(query, name, qtype, qend)
        self._quic.send_stream_data(sid, struct.pack("!H", len(msg)) + msg, end_stream=True)
        self.transmit()
        if label == "close":
            await asyncio.sleep(0.05)
            self._quic.close(error_code=0, reason_phrase="going away")
            self.transmit()


async def main():
    cert, key = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    idle = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    config = QuicConfiguration(is_client=False, alpn_protocols=["doq"], idle_timeout=idle)
    config.load_cert_chain(cert, key)
    tickets = {}

    def fetch(label):
        report(event="ticket_offered")
        return tickets.pop(label, None)

    def store(ticket):
        tickets[ticket.ticket] = ticket

    server = await serve(
        "127.0.0.1",
        port,
        configuration=config,
        create_protocol=DoqServer,
        session_ticket_fetcher=fetch,
        session_ticket_handler=store,
    )
    report(event="listening", port=server._transport.get_extra_info("sockname")[1])
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
