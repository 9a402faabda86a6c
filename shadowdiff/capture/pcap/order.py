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
from collections.abc import Iterator

from shadowdiff.capture.pcap.tcp import Counters
from shadowdiff.model import Exchange, Request, Response

# States of each side of a pending exchange.
OPEN, COMPLETE, INCOMPLETE, ABSENT = 0, 1, 2, 3


class Pending:
    """A request being read, and later its response, as llhttp reports them (latin-1 text)."""

    __slots__ = ("ticket", "start_ts", "start_seq", "method", "target", "headers", "body",
                 "body_len", "req_state", "status", "reason", "resp_headers", "resp_body",
                 "resp_len", "resp_state", "end_ts", "truncated")

    def __init__(self, ticket: int | None, start_ts: float, start_seq: int) -> None:
        self.ticket = ticket
        """The request's place in the order; None for a response whose request is unseen."""
        self.start_ts = start_ts
        self.start_seq = start_seq
        self.method = ""  # set once the head is parsed: "" means the head is incomplete
        self.target = ""
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | list[bytes] = b""
        self.body_len = 0
        self.req_state = OPEN
        self.status = 0
        self.reason = ""
        self.resp_headers: list[tuple[str, str]] = []
        self.resp_body: bytes | list[bytes] = b""
        self.resp_len = 0
        self.resp_state = OPEN
        self.end_ts = 0.0
        self.truncated = False

    # Most bodies arrive in one piece: keep that piece itself, make a list when more come.
    def add_request_body(self, data: bytes, limit: int) -> None:
        if self.body_len + len(data) > limit:
            self.truncated = True  # the rest is dropped: memory stays bounded
            return
        self.body_len += len(data)
        self.body = _append(self.body, data)

    def add_response_body(self, data: bytes, limit: int) -> None:
        if self.resp_len + len(data) > limit:
            self.truncated = True
            return
        self.resp_len += len(data)
        self.resp_body = _append(self.resp_body, data)


def _append(body: bytes | list[bytes], data: bytes) -> bytes | list[bytes]:
    if type(body) is list:
        body.append(data)
        return body
    return [body, data] if body else data  # type: ignore[list-item]


def _recorded(p: Pending) -> Response:
    """The response as captured; its elapsed time never negative (a clock step in between)."""
    elapsed = p.end_ts - p.start_ts
    return Response(p.status, tuple(p.resp_headers), _joined(p.resp_body),
                    elapsed if elapsed > 0.0 else 0.0, p.reason)


def _joined(body: bytes | list[bytes]) -> bytes:
    return b"".join(body) if type(body) is list else body  # type: ignore[return-value]


class Orderer:
    """Releases finished exchanges in order of request start, numbered from 0."""

    def __init__(self, path: str, counters: Counters, max_held: int = 10_000) -> None:
        self.name = os.path.basename(path)
        self._source = f"pcap:{self.name}#"  # each exchange's source is this and its number
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
        """Both sides of `pending` are settled: release it, and any it held back, in order."""
        t = pending.ticket
        assert t is not None
        if t == self._next:  # the usual case: nothing started before it is still open
            self.ready.append(self._build(pending))
            self._next = t + 1
            if not self._held and not self._released_early:
                return
        else:
            self._held[t] = pending
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
        # Runs once per captured exchange (~100k a second): the number is formatted once,
        # and the complete case leaves the last fields (count 1, nothing observed, no
        # marks) to Exchange's defaults.
        n = self._n
        self._n = n + 1
        num = str(n)
        c = self.counters
        c.requests += 1
        # llhttp keeps the header names' original case and order.
        request = Request("http", p.method, p.target, tuple(p.headers), _joined(p.body))
        if p.resp_state == COMPLETE and p.req_state == COMPLETE and not p.truncated:
            c.responses += 1
            return Exchange("pcap-" + num, request, _recorded(p), self._source + num,
                            p.start_ts)
        partial, marks = self._partial(p)
        return Exchange("pcap-" + num, request, partial, self._source + num, p.start_ts, 1, (),
                        marks)

    def _partial(self, p: Pending) -> tuple[Response | None, tuple[str, ...]]:
        """The recorded response (if whole) and the marks of an exchange that is not."""
        c = self.counters
        marks: list[str] = []
        recorded = None
        if p.resp_state == COMPLETE and not p.truncated:
            recorded = _recorded(p)
            c.responses += 1
        if p.req_state == INCOMPLETE or p.resp_state == INCOMPLETE or p.truncated:
            marks.append("incomplete")
            c.incomplete += 1
        if p.resp_state == ABSENT:
            marks.append("no_response")
            c.no_response += 1
        return recorded, tuple(marks)


def drain(ready: list[Exchange]) -> Iterator[Exchange]:
    """Everything in `ready`, emptying it first (the consumer may add to it meanwhile)."""
    while ready:
        batch = ready[:]
        ready.clear()
        yield from batch
