"""The DNS sender: one captured query to one name server, as a stub resolver would send it.

`dns://IP:PORT` sends over UDP and, when the answer comes back truncated (TC), asks again over
TCP, as resolvers do; `dns+tcp://` always uses TCP; a query captured over TCP and a zone
transfer go over TCP too. The query is the captured wire bytes (EDNS as captured) with a fresh
id, through dnspython's `dns.asyncquery`; the answer's id is set back to the captured one
(wire.py says why). A zone transfer reads messages until the closing SOA, bounded in count
and time. Every fault (timeout, refused, reset, a cut TCP stream, garbage) becomes a
`Failure`; nothing raises out of `send`.
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.query
import dns.rdatatype

from shadowdiff.errors import ConfigError
from shadowdiff.model import Failure, Outcome, Request
from shadowdiff.protocols.dns.wire import (
    PARSE_ERRORS,
    TRANSFER_TYPES,
    answer_response,
    answers,
    query_id,
    question_span,
    with_id,
)

#: Most messages read for one zone transfer (a server that never sends the closing SOA).
MAX_TRANSFER_MESSAGES = 10_000
_RANDOM = random.SystemRandom()


def parse_target(target: str) -> tuple[str, int, bool]:
    """(address, port, tcp only) of `dns://IP:PORT` / `dns+tcp://IP:PORT` (port 53 by default)."""
    parts = urlsplit(target)
    if parts.scheme not in ("dns", "dns+tcp") or not parts.hostname:
        raise ConfigError(f"not a DNS target: {target!r} (write dns://IP:PORT)", key="targets")
    try:
        port = parts.port or 53
    except ValueError as exc:
        raise ConfigError(f"bad port in {target!r}", key="targets") from exc
    if not dns.inet.is_address(parts.hostname):
        raise ConfigError(f"a DNS target is an IP address, not {parts.hostname!r} "
                          "(resolving the name server's name would ask a third one)",
                          key="targets")
    return parts.hostname, port, parts.scheme == "dns+tcp"


def _parsed(wire: bytes) -> dns.message.Message:
    """The query as dnspython's TCP calls want it (the UDP path sends the bytes as they are)."""
    try:
        return dns.message.from_wire(wire)
    except PARSE_ERRORS as exc:
        raise _Fault("invalid", f"not a replayable query: {exc.__class__.__name__}") from exc


class _Fault(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _classify(exc: BaseException) -> tuple[str, str]:
    """Failure kind and detail of what dnspython or the socket raised."""
    if isinstance(exc, _Fault):
        return exc.kind, str(exc)
    if isinstance(exc, dns.exception.Timeout):
        return "timeout", "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", str(exc) or "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset", str(exc) or "connection reset"
    if isinstance(exc, EOFError):
        return "reset", "the server closed the connection mid-answer"
    if isinstance(exc, dns.query.BadResponse):
        return "invalid", "an answer that does not match the query"
    if isinstance(exc, PARSE_ERRORS):
        return "invalid", f"malformed answer ({exc.__class__.__name__})"
    if isinstance(exc, OSError):
        return "error", f"{exc.__class__.__name__}: {exc}"
    return "error", f"{exc.__class__.__name__}: {exc}"


class DnsSender:
    """Sends captured queries to one name server (`dns://` or `dns+tcp://`)."""

    def __init__(self, target: str, options: Any) -> None:
        self.target = target
        self.address, self.port, self.tcp_only = parse_target(target)
        self.timeout = float(getattr(options, "timeout_s", 10.0))
        dns_options = getattr(options, "dns", None)
        self.allow = frozenset(getattr(dns_options, "allow", ()) or ())
        self.backend = dns.asyncbackend.get_backend("asyncio")

    async def send(self, request: Request) -> Outcome:
        """One query, one outcome; never raises (but lets cancellation through)."""
        started = time.monotonic()
        question_end = question_span(request.body)
        if question_end is None:
            return Failure("invalid", "not a replayable query: malformed header or question")
        captured_id = query_id(request.body)
        wire = with_id(request.body, _RANDOM.randrange(0, 0x10000))
        try:
            messages, transport = await self._exchange(wire, question_end, request)
        except Exception as exc:  # noqa: BLE001 - every fault is data (module docstring)
            kind, detail = _classify(exc)
            return Failure(kind, detail, time.monotonic() - started)
        return answer_response(messages, captured_id, time.monotonic() - started, transport)

    async def _exchange(self, wire: bytes, question_end: int,
                        request: Request) -> tuple[list[bytes], str]:
        if request.method.upper() in TRANSFER_TYPES:
            if "axfr" not in self.allow:
                raise _Fault("error", "zone transfers are sent only with --dns-allow axfr")
            return await self._transfer(_parsed(wire)), "tcp"
        if self.tcp_only or request.header("transport") == "tcp":
            return [await self._tcp(_parsed(wire))], "tcp"
        answer = await self._udp(wire, question_end)
        if answer[2] & 0x02:  # TC: truncated, ask again over TCP as a resolver does
            return [await self._tcp(_parsed(wire))], "tcp"
        return [answer], "udp"

    async def _udp(self, wire: bytes, question_end: int) -> bytes:
        """The answer's bytes as received (no parse: lift parses only what differs).

        dnspython's send_udp on its own socket; the answer is read raw and checked the way
        `dns.asyncquery.udp` checks it (id, QR, the question echoed), datagrams from other
        addresses ignored.
        """
        expiration = time.time() + self.timeout  # dnspython's clock
        destination = (self.address, self.port)
        af = dns.inet.af_for_address(self.address)
        maker: Any = self.backend.make_socket  # untyped in dnspython
        async with await maker(af, socket.SOCK_DGRAM) as sock:
            await dns.asyncquery.send_udp(sock, wire, destination, expiration)
            while True:
                remaining = expiration - time.time()
                if remaining <= 0:
                    raise dns.exception.Timeout(timeout=self.timeout)  # type: ignore[no-untyped-call]
                data, source = await sock.recvfrom(65535, remaining)
                if source[0] == self.address and source[1] == self.port:
                    if not answers(wire, question_end, data):
                        raise dns.query.BadResponse()  # type: ignore[no-untyped-call]
                    return bytes(data)

    async def _tcp(self, query: dns.message.Message) -> bytes:
        answer = await dns.asyncquery.tcp(query, self.address, self.timeout, self.port,
                                          backend=self.backend)
        return answer.to_wire(max_size=65535)

    async def _transfer(self, query: dns.message.Message) -> list[bytes]:
        """AXFR/IXFR: every message until the second SOA (or an error rcode), bounded."""
        expiration = time.time() + self.timeout  # dnspython's clock
        af = dns.inet.af_for_address(self.address)
        maker: Any = self.backend.make_socket  # untyped in dnspython
        sock = await maker(af, socket.SOCK_STREAM, 0, None, (self.address, self.port), self.timeout)
        async with sock:
            await dns.asyncquery.send_tcp(sock, query, expiration)
            return await self._read_transfer(sock, query, expiration)

    async def _read_transfer(self, sock: Any, query: dns.message.Message,
                             expiration: float) -> list[bytes]:
        messages: list[bytes] = []
        first_soa: Any = None
        for _ in range(MAX_TRANSFER_MESSAGES):
            # one RR per RRset: the opening and closing SOAs must not merge into one
            answer, _ = await dns.asyncquery.receive_tcp(sock, expiration, one_rr_per_rrset=True)
            if answer.id != query.id:
                raise _Fault("invalid", "a transfer message with another id")
            messages.append(answer.to_wire(max_size=65535))
            if answer.rcode() != 0 or not answer.answer:
                return messages
            soas = [rd for rrset in answer.answer if rrset.rdtype == dns.rdatatype.SOA
                    for rd in rrset]
            if first_soa is None and soas:
                first_soa, soas = soas[0], soas[1:]
                if len(answer.answer) == 1 and not soas:  # IXFR: already up to date
                    return messages
            if first_soa is not None and first_soa in soas:  # the closing SOA
                return messages
        raise _Fault("too_large", f"more than {MAX_TRANSFER_MESSAGES} transfer messages")

    async def close(self) -> None:
        """Nothing pooled: every UDP query has its own socket, every TCP query its connection."""
