"""Capture stage, pcap importer: which protocol each TCP connection speaks, HTTP or SMTP.

    tcp.py TcpTable ──> connection factory (here) ──> HttpSession (http1.py)
                                                  └─> SmtpSession (smtp.py)

One pcap taken on a host often holds web and mail traffic together, and the user should
not have to split it first: `read_pcap` yields both, each exchange tagged with its
protocol, and `run` replays those its targets speak. The decision is per connection:

- a server port of 25 or 587 (the SMTP ports) is SMTP, whatever it carries, so a non-SMTP
  stream there is counted in `non_smtp_connections` rather than parsed as HTTP;
- otherwise the first bytes decide. SMTP servers speak first with a greeting reply
  (`220`, or `421`/`554` refusing service); an HTTP client speaks first. A connection whose
  server speaks first with a greeting is SMTP, any other is HTTP (as it always was);
- a connection seen mid-stream (no SYN) cannot be told by who spoke first: it is SMTP on
  the SMTP ports and HTTP elsewhere.

Until the decision, a `Dispatcher` records what tcp.py delivers (a handful of bytes at
most: four from the server, or the client's first segment), then hands the connection to
the chosen session, replays the record and steps aside (`TcpConnection.rebind`), so no
packet after the first pays for the dispatch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shadowdiff.capture.pcap.http1 import HttpSession
from shadowdiff.capture.pcap.order import Orderer
from shadowdiff.capture.pcap.smtp import SmtpImporter, SmtpSession
from shadowdiff.capture.pcap.tcp import Counters, Session, TcpConnection
from shadowdiff.protocols.smtp.session import DEFAULT_PORTS

#: Server ports whose connections are SMTP without looking at the content.
SMTP_PORTS = frozenset(DEFAULT_PORTS)
#: What an SMTP server's first bytes look like (RFC 5321 4.3.1: 220, or 421/554 refusing).
_GREETING = re.compile(rb"(?:220|421|554)[ -]")
_PROBE_BYTES = 4


class _Probe:
    """One direction's sink while the connection's protocol is unknown: records, asks."""

    __slots__ = ("owner", "from_client")

    def __init__(self, owner: Dispatcher, from_client: bool) -> None:
        self.owner, self.from_client = owner, from_client

    def feed(self, data: bytes, ts: float, seq: int, ack: int | None) -> None:
        self.owner.event(self.from_client, "feed", (data, ts, seq, ack))

    def gap(self, ts: float) -> None:
        self.owner.event(self.from_client, "gap", (ts,))

    def eof(self, ts: float) -> None:
        self.owner.event(self.from_client, "eof", (ts,))

    def close(self, ts: float) -> None:
        self.owner.event(self.from_client, "close", (ts,))


class Dispatcher:
    """tcp.py's session for a connection whose protocol its first bytes will tell."""

    __slots__ = ("choose", "client", "conn", "events", "mid_stream", "server", "server_head",
                 "session")

    def __init__(self, choose: Callable[[str, bool], Session], mid_stream: bool) -> None:
        self.choose = choose
        self.mid_stream = mid_stream
        self.client, self.server = _Probe(self, True), _Probe(self, False)
        self.conn: TcpConnection | None = None
        self.events: list[tuple[bool, str, tuple[Any, ...]]] = []
        self.server_head = b""
        self.session: Session | None = None

    def bind(self, conn: TcpConnection, server_port: int) -> None:
        """The connection whose sinks are replaced once the protocol is known.

        The port alone decides on the SMTP ports, and for a connection seen mid-stream
        (who spoke first is unknown then).
        """
        self.conn = conn
        if server_port in SMTP_PORTS or self.mid_stream:
            self._decide("smtp" if server_port in SMTP_PORTS else "http")

    def event(self, from_client: bool, name: str, args: tuple[Any, ...]) -> None:
        """Record one delivery; decide when enough is known."""
        self.events.append((from_client, name, args))
        if name == "feed" and not from_client:
            self.server_head += args[0][:_PROBE_BYTES]
            if len(self.server_head) < _PROBE_BYTES and self.server_head.isdigit():
                return  # a reply code cut across segments: wait for its fourth byte
        self._decide()

    def _decide(self, kind: str | None = None) -> None:
        if kind is None:
            kind = "smtp" if _GREETING.match(self.server_head) else "http"
        session = self.session = self.choose(kind, self.mid_stream)
        if self.conn is not None:
            self.conn.rebind(session)
        events, self.events = self.events, []
        for from_client, name, args in events:
            getattr(session.client if from_client else session.server, name)(*args)

    def finish(self, ts: float) -> None:
        """The connection ended: decide now if nothing did (no data at all), then finish."""
        if self.session is None:
            self._decide()
        assert self.session is not None
        self.session.finish(ts)


def connection_factory(orderer: Orderer, counters: Counters,
                       smtp: SmtpImporter) -> Callable[[bool], Session]:
    """The `new_session` for tcp.py's table: a Dispatcher per connection."""
    def choose(kind: str, mid_stream: bool) -> Session:
        if kind == "smtp":
            return SmtpSession(smtp, mid_stream)
        return HttpSession(orderer, counters, mid_stream)

    return lambda mid_stream: Dispatcher(choose, mid_stream)
