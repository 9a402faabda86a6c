"""Capture stage, pcap importer, layer 4: finished HTTP pairs -> numbered `Exchange`s.

`http1.py` fills one `Pending` per request (and its response) and hands it over when
both are settled. Connections finish in any order, but exchange ids must follow request
start: each request takes a ticket when its first byte arrives, and the `Orderer`
releases exchanges in ticket order, numbering them as it goes. A ticket whose bytes
turn out not to be a request is cancelled. A request that waits long for its answer
holds the others back; past `max_held` finished exchanges they are released anyway
(bounded memory beats strict numbering), and the late one takes the next free number.
"""

from __future__ import annotations

import os
from typing import Any

import h11

from shadowdiff.capture.tcp import Counters
from shadowdiff.model import Exchange, Request, Response

# States of each side of a pending exchange.
OPEN, COMPLETE, INCOMPLETE, ABSENT = 0, 1, 2, 3


class Pending:
    """A request being read, and later its response."""

    __slots__ = ("ticket", "start_ts", "start_seq", "head", "body", "body_len", "req_state",
                 "resp_head", "resp_body", "resp_len", "resp_state", "end_ts", "truncated")

    def __init__(self, ticket: int | None, start_ts: float, start_seq: int,
                 head: h11.Request | None) -> None:
        self.ticket = ticket
        self.start_ts = start_ts
        self.start_seq = start_seq
        self.head = head
        self.body: list[bytes | bytearray] = []
        self.body_len = 0
        self.req_state = OPEN
        self.resp_head: Any = None
        self.resp_body: list[bytes | bytearray] = []
        self.resp_len = 0
        self.resp_state = OPEN
        self.end_ts = 0.0
        self.truncated = False

    @classmethod
    def orphan(cls, counters: Counters) -> Pending:
        """A holder for a response whose request the capture does not show."""
        return cls(None, 0.0, 0, None)

    @property
    def method(self) -> bytes:
        return self.head.method if self.head is not None else b"GET"

    def add_request_body(self, data: bytes | bytearray, limit: int) -> None:
        if self.body_len + len(data) > limit:
            self.truncated = True  # the rest is dropped: memory stays bounded
            return
        self.body.append(data)
        self.body_len += len(data)

    def set_response_head(self, head: Any) -> None:
        self.resp_head = head

    def add_response_body(self, data: bytes | bytearray, limit: int) -> None:
        if self.resp_len + len(data) > limit:
            self.truncated = True
            return
        self.resp_body.append(data)
        self.resp_len += len(data)

    def finish_response(self, state: int, ts: float) -> None:
        self.resp_state = state
        self.end_ts = ts


def _headers(head: Any) -> tuple[tuple[str, str], ...]:
    # raw_items keeps the names' original case and order; latin-1 keeps every byte.
    return tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()])


class Orderer:
    """Releases finished exchanges in order of request start, numbered from 0."""

    def __init__(self, path: str, counters: Counters, max_held: int = 10_000) -> None:
        self.name = os.path.basename(path)
        self.counters = counters
        self.max_held = max_held
        self.ready: list[Exchange] = []
        self._issued = 0
        self._next = 0  # the lowest ticket not yet released
        self._held: dict[int, Pending | None] = {}
        self._released_early: set[int] = set()
        self._n = 0

    def issue(self) -> int:
        """A ticket for a message that starts now."""
        self._issued += 1
        return self._issued - 1

    def cancel(self, ticket: int) -> None:
        """The bytes behind `ticket` were not a request."""
        self._held[ticket] = None
        self._advance()

    def done(self, pending: Pending) -> None:
        assert pending.ticket is not None
        self._held[pending.ticket] = pending
        self._advance()

    def _advance(self) -> None:
        held = self._held
        while True:
            t = self._next
            if t in held:
                pending = held.pop(t)
                if pending is not None:
                    self.ready.append(self._build(pending))
            elif t in self._released_early:
                self._released_early.remove(t)
            else:
                break
            self._next = t + 1
        if len(held) > self.max_held:
            self._release_early()

    def _release_early(self) -> None:
        for t in sorted(self._held):
            pending = self._held.pop(t)
            self._released_early.add(t)
            if pending is not None:
                self.ready.append(self._build(pending))

    def flush(self) -> None:
        """End of input: release everything still held, in ticket order."""
        self._release_early()
        self._released_early.clear()

    def _build(self, p: Pending) -> Exchange:
        n, self._n = self._n, self._n + 1
        c = self.counters
        head = p.head
        assert head is not None
        request = Request(protocol="http", method=head.method.decode("ascii"),
                          target=head.target.decode("latin-1"), headers=_headers(head),
                          body=b"".join(p.body))
        marks: list[str] = []
        recorded = None
        if p.resp_state == COMPLETE and not p.truncated:
            rh = p.resp_head
            recorded = Response(status=rh.status_code, headers=_headers(rh),
                                body=b"".join(p.resp_body), elapsed_s=max(0.0, p.end_ts - p.start_ts),
                                reason=rh.reason.decode("latin-1"))
            c.responses += 1
        if p.req_state == INCOMPLETE or p.resp_state == INCOMPLETE or p.truncated:
            marks.append("incomplete")
            c.incomplete += 1
        if p.resp_state == ABSENT:
            marks.append("no_response")
            c.no_response += 1
        c.requests += 1
        return Exchange(id=f"pcap-{n}", request=request, recorded=recorded,
                        source=f"pcap:{self.name}#{n}", seen_at=p.start_ts, marks=tuple(marks))
