"""DNS in pcap files: queries over UDP and TCP -> one exchange each, with the captured answer.

    pcap.frame_batches (file layer) ──> _Packet (link, IP, UDP/TCP here) ──> DnsCapture ──> Exchange

The HTTP/SMTP importer (capture/pcap.py and its compiled layers) only follows TCP, so DNS
takes its own pass over the same file records, with a small decoder of its own rather than
a change to the compiled hot path. A datagram is DNS when one side's port is a DNS port (53
or `dns_ports`), or, on any other port, when it parses strictly as a one-question query (its
answer is then matched by addresses, ports and id). DNS over TCP is followed on the DNS
ports, and on any other port when the client's first data is a framed query: each direction is reassembled in sequence order and cut into its 2-byte-framed
messages; every answer message with a query's id belongs to that query (AXFR spans many).

What is not a replayable query is counted by reason in `dns_skip_reasons` (malformed,
truncated header, a TCP stream cut mid-message, an answer without its query), never fatal.
A query whose answer the capture lacks (or cut) is kept without a recorded answer.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any, NamedTuple

from shadowdiff.capture.pcap.packet import DECODERS, decode_ethernet, decode_null, decode_raw, decode_sll, decode_sll2
from shadowdiff.model import Exchange, Request
from shadowdiff.capture.pcap.dnsflow import TcpFlows
from shadowdiff.protocols.dns.wire import BadQuery, answer_response, parse_query, query_id, query_request

DNS_PORTS = frozenset({53})
#: Capture seconds after which a UDP query is given up as unanswered (resolvers retry by then).
UDP_ANSWER_WAIT_S = 5.0
_LINK: dict[Any, str] = {decode_ethernet: "ethernet", decode_null: "null", decode_raw: "raw",
         decode_sll: "sll", decode_sll2: "sll2"}
_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_TCP = struct.Struct("!HHIIBB")


class Packet(NamedTuple):
    """A UDP datagram or TCP segment: addresses, ports, payload (and TCP's seq and flags)."""

    tcp: bool
    src: bytes
    sport: int
    dst: bytes
    dport: int
    payload: bytes
    seq: int = 0
    flags: int = 0


def _ip_offset(link: str, data: bytes) -> int | None:
    if link == "raw":
        return 0
    if link == "null":
        return 4
    if link in ("sll", "sll2"):
        return 16 if link == "sll" else 20
    off, etype = 14, (data[12] << 8 | data[13]) if len(data) >= 14 else 0
    while etype in _VLAN and len(data) >= off + 4:
        etype, off = data[off + 2] << 8 | data[off + 3], off + 4
    return off if etype in (0x0800, 0x86DD) else None


def decode(link: str, data: bytes) -> Packet | None:
    """The UDP or TCP packet inside one frame, or None (not IP, a fragment, cut short)."""
    off = _ip_offset(link, data)
    if off is None or len(data) < off + 20:
        return None
    version = data[off] >> 4
    if version == 4:
        vihl, _, total, _, frag, _, proto, _, src, dst = _IPV4.unpack_from(data, off)
        if frag & 0x3FFF:
            return None  # fragments: a DNS answer that needs them is retried over TCP anyway
        start, end = off + (vihl & 0x0F) * 4, min(len(data), off + total) if total else len(data)
    elif version == 6 and len(data) >= off + 40:
        _, length, proto, _, src, dst = _IPV6.unpack_from(data, off)
        start, end = off + 40, min(len(data), off + 40 + length)
    else:
        return None
    return _transport(proto, src, dst, data, start, end)


def _transport(proto: int, src: bytes, dst: bytes, data: bytes, start: int,
               end: int) -> Packet | None:
    if proto == 17 and end - start >= 8:
        sport, dport = _PORTS.unpack_from(data, start)
        return Packet(False, src, sport, dst, dport, data[start + 8:end])
    if proto == 6 and end - start >= 20:
        sport, dport, seq, _, doff, flags = _TCP.unpack_from(data, start)
        return Packet(True, src, sport, dst, dport, data[start + (doff >> 4) * 4:end], seq, flags)
    return None


def _looks_like_query(payload: bytes) -> bool:
    # Cheap header checks before dnspython: QR=0, opcode QUERY, one question, no answers.
    return (len(payload) >= 17 and not payload[2] & 0xF8 and payload[4:8] == b"\x00\x01\x00\x00")


class DnsCapture:
    """Pairs queries with answers across a capture; `ready` holds finished exchanges."""

    def __init__(self, src: str, ports: Collection[int]) -> None:
        self.source = f"pcap:{os.path.basename(src)}"
        self.ports = frozenset(ports)
        self.ready: list[Exchange] = []
        self.pending: dict[tuple[Any, ...], tuple[str, Request, float]] = {}
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.flows = TcpFlows(self)
        self._n = 0

    def packet(self, p: Packet, ts: float) -> None:
        """One decoded packet."""
        if p.tcp:
            if p.dport in self.ports or p.sport in self.ports:
                self.flows.segment(p, ts, client=p.dport in self.ports)
            else:
                self._tcp_elsewhere(p, ts)
            return
        if len(p.payload) >= 3 and p.payload[2] & 0x80 and self._udp_answer(p, ts):
            return  # QR set and its query seen: an answer
        if p.dport in self.ports or _looks_like_query(p.payload):
            self.query(p.payload, ts, (p.src, p.sport, p.dst, p.dport), "udp",
                       strict=p.dport not in self.ports)

    def _tcp_elsewhere(self, p: Packet, ts: float) -> None:
        """TCP off the DNS ports: a connection whose client opens with a framed query is DNS."""
        side = self.flows.side_of(p)
        if side is not None:
            self.flows.segment(p, ts, client=side)
        elif len(p.payload) >= 19 and _looks_like_query(p.payload[2:]):
            size = p.payload[0] << 8 | p.payload[1]
            try:
                parse_query(p.payload[2:2 + size])
            except BadQuery:
                return  # other traffic that happens to look alike
            self.flows.segment(p, ts, client=True)

    def query(self, wire: bytes, ts: float, flow: tuple[Any, ...], transport: str,
              strict: bool = False) -> str | None:
        """Register one query; returns its exchange id (None when skipped and counted)."""
        try:
            request = query_request(wire, transport)
        except BadQuery as exc:
            if not strict:  # on a non-DNS port a non-query is just other traffic
                self.reasons[f"{transport} query {exc}".split(" (")[0]] += 1
            return None
        self._n += 1
        ex_id = f"dns-{self._n}"
        self.counts["dns_queries"] += 1
        key = (*flow, query_id(wire))
        if key in self.pending:  # a retry with the same id: the first is given up
            self._finish(key, "no_response")
        self.pending[key] = (ex_id, request, ts)
        return ex_id

    def _udp_answer(self, p: Packet, ts: float) -> bool:
        key = (p.dst, p.dport, p.src, p.sport, query_id(p.payload))
        if key in self.pending:
            self.answer(key, [p.payload], ts, "udp")
            return True
        if p.sport in self.ports and p.dport not in self.ports:
            self.reasons["udp answer without its query"] += 1
            return True
        return False  # sent to a DNS port: judged (and counted) as a query

    def answer(self, key: tuple[Any, ...], messages: list[bytes], ts: float, transport: str) -> None:
        """The answer messages of the pending query `key`: the exchange is done."""
        ex_id, request, started = self.pending.pop(key)
        self.counts["dns_answers"] += 1
        recorded = answer_response(messages, key[-1], max(0.0, ts - started), transport)
        self.ready.append(Exchange(ex_id, request, recorded, f"{self.source}#{ex_id}", started))

    def _finish(self, key: tuple[Any, ...], mark: str) -> None:
        ex_id, request, started = self.pending.pop(key)
        self.counts["dns_unanswered"] += 1
        self.ready.append(Exchange(ex_id, request, None, f"{self.source}#{ex_id}", started,
                                   marks=(mark,)))

    def expire(self, now: float) -> None:
        """Give up UDP queries unanswered for UDP_ANSWER_WAIT_S capture seconds."""
        for key, (_, request, started) in list(self.pending.items()):
            if request.header("transport") == "udp" and now - started > UDP_ANSWER_WAIT_S:
                self._finish(key, "no_response")

    def close(self) -> None:
        """End of capture: open TCP streams end, every pending query is unanswered."""
        self.flows.close_all()
        for key in list(self.pending):
            self._finish(key, "no_response")

    def stats(self) -> dict[str, Any]:
        """The `dns_*` counts (empty when the capture held no DNS)."""
        out: dict[str, Any] = dict(self.counts)
        if self.reasons:
            out["dns_skipped"] = sum(self.reasons.values())
            out["dns_skip_reasons"] = dict(self.reasons)
        return out


def read_dns_pcap(path: str | os.PathLike[str], *, ports: Collection[int] | None = None,
                  stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """Stream the DNS exchanges of a pcap/pcapng file (module docstring); `stats` gets `dns_*`."""
    from shadowdiff.capture.pcap.frames import frame_batches
    from shadowdiff.capture.pcap.tcp import Counters

    src = str(path)
    capture = DnsCapture(src, DNS_PORTS | set(ports or ()))
    links = {fn: _LINK[fn] for fn in DECODERS.values()}
    batches = frame_batches(src, Counters())
    last_ts = 0.0
    try:
        for decoder, frames in batches:
            link = links[decoder]
            for data, ts in frames:
                p = decode(link, data)
                if p is not None:
                    capture.packet(p, ts)
            last_ts = frames[-1][1] if frames else last_ts
            capture.expire(last_ts)
            yield from _drain(capture.ready)
        capture.close()
        yield from _drain(capture.ready)
    finally:
        batches.close()  # explicitly: compiled generators do not close when dropped
        if stats is not None:
            stats.update(capture.stats())


def _drain(ready: list[Exchange]) -> Iterator[Exchange]:
    batch = sorted(ready, key=lambda ex: int(ex.id.rsplit("-", 1)[1]))
    ready.clear()
    yield from batch
