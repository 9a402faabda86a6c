"""DNS over TCP in a capture: per-connection reassembly and 2-byte message framing.

DNS TCP connections are short and carry a few small messages (or one zone transfer), so a
direction is a byte buffer filled in sequence order, with out-of-order segments held until
the hole fills (a bounded number: a lost segment is a gap that ends the stream's parsing).
The client's messages are queries, the server's are answers matched to a query by id; a
zone transfer's many answer messages are gathered until the connection ends.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from shadowdiff.protocols.dns.wire import TRANSFER_TYPES, query_id

_FIN, _SYN, _RST = 0x01, 0x02, 0x04
_MAX_HELD = 64  # out-of-order segments kept before calling the hole a gap
_MAX_BUFFER = 1 << 20  # a "message" this long is not DNS: stop following the stream
_LENGTH = struct.Struct("!H")


class _Capture(Protocol):
    """What the flows report to (pcap.DnsCapture)."""

    pending: dict[tuple[Any, ...], tuple[str, Any, float]]
    reasons: Any

    def query(self, wire: bytes, ts: float, flow: tuple[Any, ...], transport: str,
              strict: bool = False) -> str | None: ...

    def answer(self, key: tuple[Any, ...], messages: list[bytes], ts: float,
               transport: str) -> None: ...


class _Direction:
    __slots__ = ("next", "buf", "held", "dead", "closed")

    def __init__(self) -> None:
        self.next: int | None = None
        self.buf = bytearray()
        self.held: dict[int, bytes] = {}
        self.dead = False  # a gap or junk: nothing more is parsed
        self.closed = False

    def feed(self, seq: int, flags: int, payload: bytes) -> None:
        if self.next is None or flags & _SYN:
            self.next = (seq + 1) & 0xFFFFFFFF if flags & _SYN else seq
        if not payload or self.dead:
            return
        ahead = (seq - self.next) & 0xFFFFFFFF
        if ahead == 0:
            self._take(payload)
        elif ahead >= 1 << 31:  # starts before `next`: a retransmission, maybe with new bytes
            behind = (self.next - seq) & 0xFFFFFFFF
            if behind < len(payload):
                self._take(payload[behind:])
        elif len(self.held) < _MAX_HELD:
            self.held[seq] = payload
        else:
            self.dead = True
        while self.next in self.held:
            self._take(self.held.pop(self.next))

    def _take(self, data: bytes) -> None:
        assert self.next is not None
        self.buf += data
        self.next = (self.next + len(data)) & 0xFFFFFFFF
        if len(self.buf) > _MAX_BUFFER:
            self.dead = True

    def messages(self) -> list[bytes]:
        out: list[bytes] = []
        while not self.dead and len(self.buf) >= 2:
            size = _LENGTH.unpack_from(self.buf)[0]
            if len(self.buf) < 2 + size:
                break
            out.append(bytes(self.buf[2:2 + size]))
            del self.buf[:2 + size]
        return out


class _Connection:
    __slots__ = ("client", "server", "transfers", "last_ts")

    def __init__(self) -> None:
        self.client, self.server = _Direction(), _Direction()
        self.transfers: dict[int, list[bytes]] = {}  # id -> answer messages so far
        self.last_ts = 0.0


class TcpFlows:
    """The DNS TCP connections of one capture, keyed by (client, port, server, port)."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture
        self.conns: dict[tuple[Any, ...], _Connection] = {}

    def side_of(self, p: Any) -> bool | None:
        """True for a client segment of a followed connection, False for a server one, else None."""
        if (p.src, p.sport, p.dst, p.dport) in self.conns:
            return True
        if (p.dst, p.dport, p.src, p.sport) in self.conns:
            return False
        return None

    def segment(self, p: Any, ts: float, client: bool) -> None:
        """One TCP segment of a DNS connection (`client`: sent by the client)."""
        flow = (p.src, p.sport, p.dst, p.dport) if client else (p.dst, p.dport, p.src, p.sport)
        conn = self.conns.get(flow)
        if conn is None:
            conn = self.conns[flow] = _Connection()
        conn.last_ts = ts
        side = conn.client if client else conn.server
        side.feed(p.seq, p.flags, p.payload)
        for wire in side.messages():
            if client:
                ex_id = self.capture.query(wire, ts, flow, "tcp")
                if ex_id is not None and self.capture.pending[(*flow, query_id(wire))][1].method \
                        in TRANSFER_TYPES:
                    conn.transfers[query_id(wire)] = []
            else:
                self._answer(flow, conn, wire, ts)
        if p.flags & (_FIN | _RST):
            side.closed = True
            if p.flags & _RST or (conn.client.closed and conn.server.closed):
                self.close(flow)

    def _answer(self, flow: tuple[Any, ...], conn: _Connection, wire: bytes, ts: float) -> None:
        qid = query_id(wire)
        key = (*flow, qid)
        if key not in self.capture.pending:
            self.capture.reasons["tcp answer without its query"] += 1
        elif qid in conn.transfers:
            conn.transfers[qid].append(wire)  # a zone transfer: more may follow
        else:
            self.capture.answer(key, [wire], ts, "tcp")

    def close(self, flow: tuple[Any, ...]) -> None:
        """The connection ended: finish its transfers, count what was cut mid-message."""
        conn = self.conns.pop(flow)
        for qid, messages in conn.transfers.items():
            if messages and (*flow, qid) in self.capture.pending:
                self.capture.answer((*flow, qid), messages, conn.last_ts, "tcp")
        for side, what in ((conn.client, "query"), (conn.server, "answer")):
            if side.dead:
                self.capture.reasons[f"tcp stream with a gap (lost {what} bytes)"] += 1
            elif side.buf:
                self.capture.reasons[f"tcp stream cut mid-{what}"] += 1

    def close_all(self) -> None:
        """End of capture: every connection still open ends here."""
        for flow in list(self.conns):
            self.close(flow)
