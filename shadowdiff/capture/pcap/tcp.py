"""Capture stage, pcap importer, layer 2: TCP segments -> two ordered byte streams.

`pcap.py` hands each decoded `Segment` to a `TcpTable`, which finds (or opens) its
connection and puts the payload in order per direction from sequence numbers: segments
that arrive early wait, retransmitted or overlapping bytes are trimmed, and data the
capture never saw becomes an explicit `gap` for the HTTP layer (`http1.py`), which marks
the affected message incomplete instead of guessing.

A hole is declared missing (not merely late) when the peer acknowledges bytes past it:
the receiver got them, the capture did not. Memory stays bounded: early data per
direction is capped, and connections with no packet for `idle_s` seconds of capture
time are flushed, so a pcap far larger than memory streams through.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Protocol

from shadowdiff.capture.pcap.packet import ACK, FIN, PSH, RST, SYN, Segment

MASK = 0xFFFFFFFF
HALF = 0x80000000
# Flags that take the slow path: anything but ACK and PSH (URG, ECE, CWR are rare enough).
_RARE = 0xFF & ~(ACK | PSH)


#: The importer's counts, in the order the capture header lists them.
COUNTS: tuple[str, ...] = (
    "packets", "skipped_packets", "truncated_packets", "truncated_bytes", "connections",
    "non_http_connections", "requests", "responses", "incomplete", "no_response",
    "orphan_responses", "skipped_bytes", "gaps", "retransmitted_bytes")


class Counters:
    """The importer's running counts; `as_dict()` is what lands in the capture header.

    Spelt out attribute by attribute (not set in a loop over COUNTS) so that mypyc, which
    compiles this module (setup.py), knows each one.
    """

    __slots__ = COUNTS

    def __init__(self) -> None:
        self.packets = self.skipped_packets = self.truncated_packets = 0
        self.truncated_bytes = self.connections = self.non_http_connections = 0
        self.requests = self.responses = self.incomplete = self.no_response = 0
        self.orphan_responses = self.skipped_bytes = self.gaps = self.retransmitted_bytes = 0

    def as_dict(self) -> dict[str, int]:
        """Plain counts, by name."""
        return {name: getattr(self, name) for name in COUNTS}


class StreamSink(Protocol):
    """What one direction's ordered bytes are delivered to (an HTTP reader)."""

    def feed(self, data: bytes, ts: float, seq: int, ack: int | None) -> None:
        """In-order bytes starting at sequence number `seq`; `ack` of their packet."""

    def gap(self, ts: float) -> None:
        """Bytes are missing here: the capture lost them."""

    def eof(self, ts: float) -> None:
        """The sender's FIN, reached with every byte before it delivered."""

    def close(self, ts: float) -> None:
        """The stream ends without a clean FIN (RST, idle flush, end of capture)."""


class Session(Protocol):
    """One connection's consumer: a sink per direction, and a final call."""

    # Read-only to the table (properties), so any sink type satisfies them.
    @property
    def client(self) -> StreamSink: ...

    @property
    def server(self) -> StreamSink: ...

    def finish(self, ts: float) -> None:
        """Both directions have ended; resolve whatever is still open."""


SessionFactory = Callable[[bool], Session]
"""Called with `mid_stream` (True when the connection's start was not captured)."""


class HalfStream:
    """Reassembly of one direction of a connection."""

    __slots__ = ("sink", "next_seq", "pending", "pending_bytes", "fin_seq", "done",
                 "counters", "max_pending")

    def __init__(self, sink: StreamSink, counters: Counters, max_pending: int) -> None:
        self.sink = sink
        self.next_seq: int | None = None
        # seq -> (payload, ts, ack): data that arrived before the bytes preceding it.
        self.pending: dict[int, tuple[bytes, float, int | None]] = {}
        self.pending_bytes = 0
        self.fin_seq: int | None = None
        self.done = False
        self.counters = counters
        self.max_pending = max_pending

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) & MASK

    def data(self, seq: int, payload: bytes, ts: float, ack: int | None) -> None:
        """A segment's payload (possibly cut short by the snaplen)."""
        if self.done:
            return
        nxt = self.next_seq
        if nxt is None:
            nxt = self.next_seq = seq
        rel = (seq - nxt) & MASK
        if rel == 0:
            self._deliver(payload, ts, nxt, ack)
        elif rel >= HALF:  # starts before what we have: retransmission or overlap
            back = MASK + 1 - rel
            if back >= len(payload):
                self.counters.retransmitted_bytes += len(payload)
                return
            self.counters.retransmitted_bytes += back
            self._deliver(payload[back:], ts, nxt, ack)
        else:
            self._hold(seq, payload, ts, ack)

    def _deliver(self, payload: bytes, ts: float, seq: int, ack: int | None) -> None:
        self.next_seq = (seq + len(payload)) & MASK
        self.sink.feed(payload, ts, seq, ack)
        if self.pending:
            self._drain(ts)
        if self.fin_seq is not None and self.next_seq == self.fin_seq:
            self._finish_clean(ts)

    def _hold(self, seq: int, payload: bytes, ts: float, ack: int | None) -> None:
        old = self.pending.get(seq)
        if old is not None:
            if len(old[0]) >= len(payload):
                self.counters.retransmitted_bytes += len(payload)
                return
            self.pending_bytes -= len(old[0])
        self.pending[seq] = (payload, ts, ack)
        self.pending_bytes += len(payload)
        if self.pending_bytes > self.max_pending:
            # Waiting any longer for the hole costs unbounded memory: give it up.
            self._skip_gap(ts)

    def _earliest(self) -> int:
        nxt = self.next_seq or 0
        return min(self.pending, key=lambda s: (s - nxt) & MASK)

    def _drain(self, ts: float) -> None:
        while self.pending and not self.done:
            nxt = self.next_seq or 0
            seq = self._earliest()
            rel = (seq - nxt) & MASK
            if 0 < rel < HALF:
                return  # still a hole before it
            payload, _, ack = self.pending.pop(seq)
            self.pending_bytes -= len(payload)
            back = 0 if rel == 0 else MASK + 1 - rel
            if back >= len(payload):
                self.counters.retransmitted_bytes += len(payload)
                continue
            self.counters.retransmitted_bytes += back
            payload = payload[back:]
            self.next_seq = (nxt + len(payload)) & MASK
            self.sink.feed(payload, ts, nxt, ack)

    def _skip_gap(self, ts: float) -> None:
        """Jump over missing bytes to the earliest held segment."""
        if not self.pending:
            return
        self.counters.gaps += 1
        self.sink.gap(ts)
        self.next_seq = self._earliest()
        self._drain(ts)
        if self.fin_seq is not None and self.next_seq == self.fin_seq:
            self._finish_clean(ts)

    def peer_ack(self, ack: int, ts: float) -> None:
        """The other side acknowledged up to `ack`: a hole before it was lost by the capture."""
        if self.pending and self.next_seq is not None and not self.done:
            rel = (ack - self.next_seq) & MASK
            if 0 < rel < HALF:
                self._skip_gap(ts)

    def fin(self, seq_end: int, ts: float) -> None:
        if self.fin_seq is None:
            self.fin_seq = seq_end
        if not self.done and self.next_seq == self.fin_seq:
            self._finish_clean(ts)

    def _finish_clean(self, ts: float) -> None:
        self.done = True
        self.pending.clear()
        self.sink.eof(ts)

    def close(self, ts: float) -> None:
        """End of what the capture holds for this direction."""
        while self.pending and not self.done:
            self._skip_gap(ts)
        if self.done:
            return
        self.done = True
        if self.fin_seq is not None and self.next_seq == self.fin_seq:
            self.sink.eof(ts)
        else:
            self.sink.close(ts)


class TcpConnection:
    """Both directions of one connection, plus its consumer."""

    __slots__ = ("keys", "client", "server", "session", "last_ts", "client_isn")

    def __init__(self, keys: tuple[tuple, tuple], session: Session, counters: Counters,
                 max_pending: int, ts: float) -> None:
        self.keys = keys
        self.session = session
        self.client = HalfStream(session.client, counters, max_pending)
        self.server = HalfStream(session.server, counters, max_pending)
        self.last_ts = ts
        self.client_isn: int | None = None

    @property
    def ended(self) -> bool:
        return self.client.done and self.server.done

    def rebind(self, session: Session) -> None:
        """Hand both directions to another consumer (once content told the protocol)."""
        self.session = session
        self.client.sink, self.server.sink = session.client, session.server


class TcpTable:
    """All open connections of a capture; routes each segment to its direction.

    >>> table = TcpTable(new_session, Counters())  # doctest: +SKIP
    >>> table.segment(seg, ts); table.close_all(last_ts)  # doctest: +SKIP
    """

    def __init__(self, new_session: SessionFactory, counters: Counters, *,
                 ports: Collection[int] | None = None, idle_s: float = 300.0,
                 max_pending: int = 4 << 20) -> None:
        self.new_session = new_session
        self.counters = counters
        self.ports = frozenset(ports) if ports else None
        self.idle_s = idle_s
        self.max_pending = max_pending
        # key (src, sport, dst, dport) -> (connection, sent by the client?)
        self.conns: dict[tuple, tuple[TcpConnection, bool]] = {}
        self._lru: OrderedDict[TcpConnection, None] = OrderedDict()
        # Keys of connections that ended, so stray ACKs after the close open nothing new.
        self._closed: dict[tuple, float] = {}
        self._next_sweep = 0.0

    def segment(self, seg: Segment, ts: float) -> bool:
        """Process one segment; False when it belongs to no connection we follow."""
        src, sport, dst, dport, seq, ack, flags, payload, _ = seg
        entry = self.conns.get((src, sport, dst, dport))
        if entry is None or flags & _RARE:
            return self._segment(seg, ts, entry)
        # The common case, inlined (it runs per packet): ACK, maybe PSH, and in-order data.
        conn, from_client = entry
        conn.last_ts = ts
        self._lru.move_to_end(conn)
        half, other = (conn.client, conn.server) if from_client else (conn.server, conn.client)
        if flags & ACK and other.pending:
            other.peer_ack(ack, ts)
        if payload:
            if seq == half.next_seq and not half.done and not half.pending:
                half.next_seq = (seq + len(payload)) & MASK
                half.sink.feed(payload, ts, seq, ack if flags & ACK else None)
                if half.fin_seq is not None and half.next_seq == half.fin_seq:
                    half._finish_clean(ts)
            else:
                half.data(seq, payload, ts, ack if flags & ACK else None)
        if ts >= self._next_sweep:
            self._sweep(ts)
        return True

    def _segment(self, seg: Segment, ts: float, entry: tuple[TcpConnection, bool] | None) -> bool:
        """`segment` for the rarer packets: a connection's first, SYN, FIN, RST."""
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        flags = seg.flags
        if entry is not None and flags & SYN and not flags & ACK:
            conn = entry[0]
            if conn.client_isn != seg.seq:  # the 4-tuple is reused by a new connection
                self._end(conn, ts)
                entry = None
        if entry is None:
            entry = self._open(seg, key, ts)
            if entry is None:
                return key in self._closed
        conn, from_client = entry
        conn.last_ts = ts
        self._lru.move_to_end(conn)
        self._apply(conn, from_client, seg, ts)
        if conn.ended:
            self._end(conn, ts)
        if ts >= self._next_sweep:
            self._sweep(ts)
        return True

    def _apply(self, conn: TcpConnection, from_client: bool, seg: Segment, ts: float) -> None:
        half, other = (conn.client, conn.server) if from_client else (conn.server, conn.client)
        flags = seg.flags
        if flags & SYN:
            half.syn(seg.seq)
            if from_client:
                conn.client_isn = seg.seq
            elif flags & ACK and other.next_seq is None:
                other.next_seq = seg.ack  # SYN missed, SYN-ACK seen: the client starts here
        if flags & ACK:
            other.peer_ack(seg.ack, ts)
        if seg.payload:
            seq = (seg.seq + 1) & MASK if flags & SYN else seg.seq
            half.data(seq, seg.payload, ts, seg.ack if flags & ACK else None)
        if flags & FIN:
            syn = 1 if flags & SYN else 0
            half.fin((seg.seq + syn + seg.wire_len) & MASK, ts)
        if flags & RST:
            conn.client.close(ts)
            conn.server.close(ts)

    def _open(self, seg: Segment, key: tuple, ts: float) -> tuple[TcpConnection, bool] | None:
        flags = seg.flags
        if flags & RST or not (flags & SYN or seg.payload):
            return None  # a stray ACK/FIN/RST opens nothing
        if self.ports is not None and seg.sport not in self.ports and seg.dport not in self.ports:
            return None
        if key in self._closed and not flags & SYN:
            return None  # late retransmission on a connection already finished
        self._closed.pop(key, None)
        from_client = self._sender_is_client(seg)
        mid_stream = not flags & SYN
        rev = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = TcpConnection((key, rev), self.new_session(mid_stream), self.counters,
                             self.max_pending, ts)
        bind = getattr(conn.session, "bind", None)
        if bind is not None:  # a consumer that picks the protocol (dispatch.py)
            bind(conn, seg.dport if from_client else seg.sport)
        self.conns[key] = (conn, from_client)
        self.conns[rev] = (conn, not from_client)
        self._lru[conn] = None
        self.counters.connections += 1
        return conn, from_client

    def _sender_is_client(self, seg: Segment) -> bool:
        if seg.flags & SYN:
            return not seg.flags & ACK
        if self.ports is not None:
            return seg.dport in self.ports
        # Seen mid-way with no hint: servers listen on the lower (well-known) port.
        return seg.dport < seg.sport or (seg.dport == seg.sport)

    def _end(self, conn: TcpConnection, ts: float) -> None:
        conn.client.close(ts)
        conn.server.close(ts)
        conn.session.finish(ts)
        for key in conn.keys:
            self.conns.pop(key, None)
            self._closed.pop(key, None)  # re-insert at the end: the dict stays in close order
            self._closed[key] = ts
        self._lru.pop(conn, None)

    def _sweep(self, ts: float) -> None:
        """Flush connections idle for `idle_s` of capture time; forget old closed keys."""
        self._next_sweep = ts + 1.0
        limit = ts - self.idle_s
        while self._lru:
            conn = next(iter(self._lru))
            if conn.last_ts > limit:
                break
            self._end(conn, ts)
        linger = ts - min(self.idle_s, 60.0)
        while self._closed:
            key, closed_at = next(iter(self._closed.items()))
            if closed_at > linger:
                break
            del self._closed[key]

    def close_all(self, ts: float) -> None:
        """End of capture: every open connection ends where the capture does."""
        for conn in list(self._lru):
            self._end(conn, ts)
