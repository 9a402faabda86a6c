"""A small authoritative name server on dnspython, for `shadowdiff demo --dns` and the tests.

It serves one zone over UDP and TCP on one loopback port, the way an authoritative server
does: answers with AA, CNAME chasing inside the zone, NODATA and NXDOMAIN with the SOA in
AUTHORITY, REFUSED outside the zone, truncation (TC) when an answer does not fit the
client's UDP size, and AXFR over TCP when allowed. `Behaviour` holds the knobs on which two
real servers differ (NS and glue in AUTHORITY/ADDITIONAL, ANY per RFC 8482, AXFR refused,
record order, an NSID), so the demo's OLD and NEW can differ on purpose.
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

_LENGTH = struct.Struct("!H")


@dataclass(frozen=True)
class Behaviour:
    """How one server answers, beyond the zone's content."""

    ns_in_authority: bool = False
    """Add the zone's NS RRset to AUTHORITY (and the servers' addresses to ADDITIONAL)."""
    any_minimal: bool = False
    """Answer ANY with one HINFO record (RFC 8482) instead of every RRset."""
    axfr: bool = True
    """Serve zone transfers (else REFUSED)."""
    shuffle: bool = False
    """Rotate the records of every RRset on each answer (as Unbound and dnsmasq do)."""
    nsid: bytes = b""
    """An NSID option in EDNS answers (a per-server value: volatile)."""
    ttl_delta: int = 0
    """Added to every TTL (a different default TTL)."""
    overrides: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """(name, type) -> records that replace the zone's (a record moved in the migration);
    an empty tuple removes the RRset."""


class ZoneServer:
    """Answers queries for one zone (pure: `answer(wire, tcp) -> [wire, ...]`)."""

    def __init__(self, zone_text: str, origin: str, behaviour: Behaviour) -> None:
        self.zone = dns.zone.from_text(zone_text, origin, relativize=False)
        zone_origin = self.zone.origin
        assert zone_origin is not None  # from_text with an origin always has one
        self.origin: dns.name.Name = zone_origin
        self.behaviour = behaviour
        self.queries = 0

    def answer(self, wire: bytes, tcp: bool) -> list[bytes]:
        """The answer messages to one query (empty when it is not worth answering)."""
        self.queries += 1
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - garbage gets no answer, as real servers do
            return []
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.behaviour.nsid and query.edns >= 0:
            response.use_edns(0, options=[dns.edns.GenericOption(dns.edns.NSID, self.behaviour.nsid)])
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return [response.to_wire()]
        q = query.question[0]
        if not q.name.is_subdomain(self.origin):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
        elif q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._transfer(response, tcp)
        else:
            self._lookup(response, q.name, q.rdtype)
        return [self._fit(response, query, tcp)]

    def _lookup(self, response: dns.message.Message, name: dns.name.Name, rdtype: Any) -> None:
        for _ in range(8):  # CNAME chain inside the zone, bounded
            node = self.zone.get_node(name)
            if node is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                _append(response.authority, self._rrset(self.origin, dns.rdatatype.SOA))
                return
            if rdtype == dns.rdatatype.ANY:
                self._any(response, name, node)
                return
            found = self._rrset(name, rdtype)
            if found is not None:
                response.answer.append(found)
                self._referral(response)
                return
            cname = self._rrset(name, dns.rdatatype.CNAME)
            if cname is None:
                _append(response.authority, self._rrset(self.origin, dns.rdatatype.SOA))
                return  # NODATA
            response.answer.append(cname)
            name = cname[0].target
        response.set_rcode(dns.rcode.SERVFAIL)

    def _any(self, response: dns.message.Message, name: dns.name.Name, node: Any) -> None:
        if self.behaviour.any_minimal:
            rrset = dns.rrset.from_text(name, 3789, "IN", "HINFO", '"RFC8482" ""')
            response.answer.append(rrset)
            return
        for rdataset in node:
            _append(response.answer, self._rrset(name, rdataset.rdtype, rdataset.covers))

    def _referral(self, response: dns.message.Message) -> None:
        if not self.behaviour.ns_in_authority:
            return
        ns = self._rrset(self.origin, dns.rdatatype.NS)
        if ns is None:
            return
        response.authority.append(ns)
        for rd in ns:
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue = self._rrset(rd.target, rdtype) if rd.target.is_subdomain(self.origin) else None
                if glue is not None:
                    response.additional.append(glue)

    def _rrset(self, name: dns.name.Name, rdtype: Any, covers: Any = 0) -> dns.rrset.RRset | None:
        override = self.behaviour.overrides.get((name.to_text().lower(), dns.rdatatype.to_text(rdtype)))
        if override == ():
            return None  # the record was removed in the migration
        if override is not None:
            return dns.rrset.from_text(name, 300 + self.behaviour.ttl_delta, "IN",
                                       dns.rdatatype.to_text(rdtype), *override)
        rdataset = self.zone.get_rdataset(name, rdtype, covers)
        if rdataset is None:
            return None
        rdatas = list(rdataset)
        if self.behaviour.shuffle:
            random.shuffle(rdatas)
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype, covers)
        for rd in rdatas:
            rrset.add(rd, rdataset.ttl + self.behaviour.ttl_delta)
        return rrset

    def _fit(self, response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        limit = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _transfer(self, response: dns.message.Message, tcp: bool) -> list[bytes]:
        if not tcp or not self.behaviour.axfr:
            response.set_rcode(dns.rcode.REFUSED)
            return [response.to_wire()]
        soa = self._rrset(self.origin, dns.rdatatype.SOA)
        rrsets = [soa] + [self._rrset(name, rds.rdtype, rds.covers)
                          for name, node in sorted(self.zone.nodes.items())
                          for rds in node if rds.rdtype != dns.rdatatype.SOA] + [soa]
        response.answer = [r for r in rrsets if r is not None]
        return [response.to_wire(max_size=65535)]


def _append(section: list[Any], rrset: dns.rrset.RRset | None) -> None:
    if rrset is not None:
        section.append(rrset)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ZoneServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for wire in self.server.answer(data, tcp=False):
            assert self.transport is not None
            self.transport.sendto(wire, addr)


async def _tcp_client(server: ZoneServer, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            size = _LENGTH.unpack(await reader.readexactly(2))[0]
            for wire in server.answer(await reader.readexactly(size), tcp=True):
                writer.write(_LENGTH.pack(len(wire)) + wire)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _bind(server: ZoneServer, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any, int]:
    """UDP and TCP listeners on one free port of 127.0.0.1."""
    # The kernel picks a free UDP port; its TCP twin may be taken: then try another.
    for attempt in range(20):
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server),
                                                     local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(lambda r, w: _tcp_client(server, r, w),
                                             "127.0.0.1", port)
        except OSError:
            udp.close()
            await asyncio.sleep(0)  # let the transport finish closing
            if attempt == 19:
                raise
            continue
        return udp, tcp, port
    raise OSError("no free UDP/TCP port pair")  # not reached: the last attempt raises


@contextmanager
def serving(zone_text: str, origin: str, behaviour: Behaviour = Behaviour()) -> Iterator[tuple[ZoneServer, int]]:
    """Serve the zone on 127.0.0.1 (UDP and TCP, one free port) in a thread: (server, port)."""
    server = ZoneServer(zone_text, origin, behaviour)
    loop = asyncio.new_event_loop()
    started: dict[str, object] = {}
    ready = threading.Event()

    async def start() -> None:
        udp, tcp, port = await _bind(server, loop)
        started.update(udp=udp, tcp=tcp, port=port)

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except OSError as exc:  # no port pair free in 20 tries: the caller hears of it
            started["error"] = exc
        ready.set()
        if "error" not in started:
            loop.run_forever()
            # Let the closed transports finish closing (their callbacks need the loop).
            loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()

    thread = threading.Thread(target=main, name="dns-demo-server", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in started:
        raise started["error"]  # type: ignore[misc]
    try:
        yield server, int(started["port"])  # type: ignore[call-overload]
    finally:
        def stop() -> None:
            started["udp"].close()  # type: ignore[attr-defined]
            started["tcp"].close()  # type: ignore[attr-defined]
            loop.stop()
        loop.call_soon_threadsafe(stop)
        thread.join(10)
