"""Capture stage, pcap importer, layer 3: two TCP byte streams -> paired HTTP/1.x messages.

`tcp.py` delivers each direction of a connection in order; here a `RequestReader` and a
`ResponseReader` cut those bytes into messages with h11's parser and an `HttpSession`
pairs responses with requests in order. Finished pairs go to the `Orderer` (`order.py`),
which numbers them by request start.

We drive h11's reader layer (`h11._readers`, `h11._receivebuffer`; h11 is pinned below
0.15 in pyproject.toml) rather than `h11.Connection`: the same parsing and validation,
without the per-event state machine that cost ~62 us per exchange against ~34 us here
(measured on a 1 KB response), and without Connection's refusal to look at a pipelined
request before the previous response is sent. Each message still goes through h11's
request/status-line regexes, header validation and body framing rules (Content-Length,
chunked, HEAD, 204/304, read-until-close).

Streams that do not start at a message boundary (connection seen mid-way, after a gap,
after a parse error) are scanned for the next request or status line; the bytes passed
over are counted in `skipped_bytes`, never guessed at.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import h11
from h11._connection import _body_framing
from h11._readers import (
    ChunkedReader,
    ContentLengthReader,
    Http10Reader,
    _decode_header_lines,
    request_line_re,
    status_line_re,
)
from h11._receivebuffer import ReceiveBuffer

from shadowdiff.capture.order import Orderer, Pending
from shadowdiff.capture.tcp import HALF, MASK, Counters

#: Largest header block we wait for (h11.Connection's default is 16 KiB).
MAX_HEAD = 64 * 1024
#: Longest partial line kept while searching for a message start.
_MAX_SCAN_TAIL = 8 * 1024
_REQUEST_START = re.compile(rb"(?m)^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [\x21-\x7e]+ HTTP/1\.[01]\r?$")
_RESPONSE_START = re.compile(rb"(?m)^HTTP/1\.[01] [1-5][0-9][0-9][^\r\n]*\r?$")
# What h11 raises on bad input; its body-framing code also asserts on impossible headers.
_PARSE_ERRORS = (h11.ProtocolError, ValueError, AssertionError)
_BODY_READERS: dict[str, Any] = {"chunked": ChunkedReader, "content-length": ContentLengthReader,
                                 "http/1.0": Http10Reader}


def _read_head(buf: ReceiveBuffer, line_re: re.Pattern[bytes], what: str) -> list[bytearray] | None:
    """The lines of the next header block; leading empty lines are skipped (RFC 9112 2.2)."""
    for _ in range(8):
        lines = buf.maybe_extract_lines()
        if lines is None:
            if len(buf) > MAX_HEAD:
                raise h11.LocalProtocolError(f"{what} head longer than {MAX_HEAD} bytes")
            return None
        if lines:
            if line_re.fullmatch(lines[0]) is None:
                raise h11.LocalProtocolError(f"illegal {what} line")
            return lines
    raise h11.LocalProtocolError("too many empty lines")


def read_request(buf: ReceiveBuffer) -> h11.Request | None:
    """h11's request head parser, tolerant of blank lines between messages."""
    lines = _read_head(buf, request_line_re, "request")
    if lines is None:
        return None
    matches = request_line_re.fullmatch(lines[0]).groupdict()  # type: ignore[union-attr]
    return h11.Request(headers=list(_decode_header_lines(lines[1:])), _parsed=True, **matches)


def read_response(buf: ReceiveBuffer) -> h11.Response | h11.InformationalResponse | None:
    """h11's status line and header parser."""
    lines = _read_head(buf, status_line_re, "status")
    if lines is None:
        return None
    m = status_line_re.fullmatch(lines[0]).groupdict()  # type: ignore[union-attr]
    status = int(m["status_code"])
    cls = h11.InformationalResponse if status < 200 else h11.Response
    return cls(headers=list(_decode_header_lines(lines[1:])), _parsed=True, status_code=status,
               reason=m["reason"] or b"", http_version=m["http_version"] or b"1.1")


class _Reader:
    """Shared machinery of one direction: buffering, resynchronising, gaps."""

    __slots__ = ("session", "counters", "buf", "synced", "scan", "line_start", "body",
                 "end_seq", "ack", "dead", "max_body", "rescan")
    _start: re.Pattern[bytes] = _REQUEST_START

    def __init__(self, session: HttpSession, synced: bool) -> None:
        self.session = session
        self.counters: Counters = session.counters
        self.buf = ReceiveBuffer()
        self.synced = synced
        self.scan = bytearray()
        self.line_start = True  # whether scan[0] may begin a message
        self.body: Any = None
        self.end_seq = 0
        self.ack: int | None = None
        self.dead = False  # after a protocol switch: nothing more here is HTTP/1
        self.max_body = session.max_body
        self.rescan = False

    def feed(self, data: bytes, ts: float, seq: int, ack: int | None) -> None:
        self.end_seq = (seq + len(data)) & MASK
        self.ack = ack
        if self.dead:
            self.counters.skipped_bytes += len(data)
            return
        # A loop, not recursion: each failed parse leaves the rest to rescan (`rescan`).
        while True:
            if not self.synced:
                data = self._resync(data)
                if not data:
                    return
            self.buf += data
            data = b""
            self._pump(ts)
            if not self.rescan:
                return
            self.rescan = False

    def _resync(self, data: bytes) -> bytes:
        """Scan for a message start; return the bytes from there on (b"" if none yet)."""
        scan = self.scan
        if scan and data and self._start.match(data):
            # Messages usually begin at a segment boundary: do not let a partial line
            # left over from before hide this one.
            self.counters.skipped_bytes += len(scan)
            scan.clear()
            self.line_start = True
        scan += data
        m = self._start.search(scan, 0 if self.line_start else 1)
        if m is not None:
            self.counters.skipped_bytes += m.start()
            rest = bytes(scan[m.start():])
            scan.clear()
            self.synced = True
            return rest
        cut = scan.rfind(b"\n") + 1
        if len(scan) - cut > _MAX_SCAN_TAIL:
            cut, self.line_start = len(scan), False
        elif cut:
            self.line_start = True
        self.counters.skipped_bytes += cut
        del scan[:cut]
        return b""

    def _desync(self, ts: float, consumed: int) -> None:
        """The bytes at hand do not parse: drop the message and look for the next one.

        `consumed` is how many bytes the parser took before failing; if any, what is left
        starts after a line and may begin a message, else its first byte is dropped so
        the same failed start is not tried again.
        """
        self._abort(ts)
        leftover = bytes(self.buf)
        self.buf = ReceiveBuffer()
        self.synced = False
        self.scan.clear()
        self.counters.skipped_bytes += consumed
        if leftover and not consumed:
            self.counters.skipped_bytes += 1
            leftover = leftover[1:]
        self.line_start = consumed > 0
        if leftover:
            self.scan += leftover
            self.rescan = True

    def gap(self, ts: float) -> None:
        """Missing bytes: the message in progress is incomplete; resume at a message start."""
        self._abort(ts)
        self.counters.skipped_bytes += len(self.buf) + len(self.scan)
        self.buf = ReceiveBuffer()
        self.scan.clear()
        self.synced, self.line_start = False, True

    def eof(self, ts: float) -> None:
        self._end(ts, clean=True)

    def close(self, ts: float) -> None:
        self._end(ts, clean=False)

    def _end(self, ts: float, clean: bool) -> None:
        self._abort(ts)
        self.counters.skipped_bytes += len(self.buf) + len(self.scan)
        self.buf = ReceiveBuffer()
        self.scan.clear()

    def _pump(self, ts: float) -> None:
        raise NotImplementedError

    def _abort(self, ts: float) -> None:
        raise NotImplementedError


class RequestReader(_Reader):
    """Client -> server bytes: requests."""

    __slots__ = ("cur", "ticket", "start_ts", "start_seq")

    def __init__(self, session: HttpSession, synced: bool) -> None:
        super().__init__(session, synced)
        self.cur: Pending | None = None
        self.ticket: int | None = None
        self.start_ts = 0.0
        self.start_seq = 0

    def _pump(self, ts: float) -> None:
        buf = self.buf
        while buf:
            if self.cur is None and not self._head(ts):
                return
            cur = self.cur
            assert cur is not None
            before = len(buf)
            try:
                ev = self.body(buf)
            except _PARSE_ERRORS:
                self._desync(ts, before - len(buf))
                return
            if ev is None:
                return
            if type(ev) is h11.Data:
                cur.add_request_body(ev.data, self.max_body)
                continue
            self.cur = None
            self.session.request_done(cur, 1)
        if self.cur is not None and type(self.body) is ContentLengthReader:
            # A body that ends exactly at a packet boundary: collect EndOfMessage now.
            ev = self.body(buf)
            if type(ev) is h11.EndOfMessage:
                cur, self.cur = self.cur, None
                self.session.request_done(cur, 1)

    def _head(self, ts: float) -> bool:
        """Parse the next request head; False when more data is needed (or it failed)."""
        if self.ticket is None:
            self.ticket = self.session.orderer.issue()
            self.start_ts = ts
            self.start_seq = (self.end_seq - len(self.buf)) & MASK
        before = len(self.buf)
        try:
            ev = read_request(self.buf)
            if ev is None:
                return False
            kind, args = _body_framing(ev.method, ev)
            self.body = _BODY_READERS[kind](*args)
        except _PARSE_ERRORS:
            self._desync(ts, before - len(self.buf))
            return False
        self.cur = Pending(self.ticket, self.start_ts, self.start_seq, ev)
        self.ticket = None
        self.session.request_head(self.cur)
        return True

    def _abort(self, ts: float) -> None:
        if self.cur is not None:
            cur, self.cur = self.cur, None
            self.session.request_done(cur, 2)
        elif self.ticket is not None:
            self.session.orderer.cancel(self.ticket)
        self.ticket = None


class ResponseReader(_Reader):
    """Server -> client bytes: responses, each paired with the oldest unanswered request."""

    __slots__ = ("cur", "msg_ack", "in_message")
    _start = _RESPONSE_START

    def __init__(self, session: HttpSession, synced: bool) -> None:
        super().__init__(session, synced)
        self.cur: Pending | None = None
        self.msg_ack: int | None = None
        self.in_message = False

    def _pump(self, ts: float) -> None:
        buf = self.buf
        while buf and not self.dead:
            if not self.in_message:
                self.in_message, self.msg_ack = True, self.ack
            if self.cur is None and not self._head(ts):
                return
            cur = self.cur
            assert cur is not None
            before = len(buf)
            try:
                ev = self.body(buf)
            except _PARSE_ERRORS:
                self._desync(ts, before - len(buf))
                return
            if ev is None:
                return
            if type(ev) is h11.Data:
                cur.add_response_body(ev.data, self.max_body)
                continue
            self._done(ts, 1)
        if self.cur is not None and type(self.body) is ContentLengthReader:
            if type(self.body(buf)) is h11.EndOfMessage:
                self._done(ts, 1)

    def _head(self, ts: float) -> bool:
        while True:
            before = len(self.buf)
            try:
                ev = read_response(self.buf)
            except _PARSE_ERRORS:
                self._desync(ts, before - len(self.buf))
                return False
            if ev is None:
                return False
            if type(ev) is not h11.InformationalResponse:
                break
            # 100 Continue and friends: the real answer follows.
            if ev.status_code == 101:  # an answer, after which nothing is HTTP/1
                pending = self.session.take_request(self.msg_ack)
                if pending is not None:
                    pending.set_response_head(ev)
                    self.session.response_done(pending, 1, ts)
                self.session.switched()
                return False
            self.in_message = bool(self.buf)
            if not self.in_message:
                return False
        pending = self.session.take_request(self.msg_ack)
        method = pending.method if pending is not None else b"GET"
        try:
            kind, args = _body_framing(method, ev)
            self.body = _BODY_READERS[kind](*args)
        except _PARSE_ERRORS:
            if pending is not None:  # it answered this request, even if unreadably
                pending.set_response_head(ev)
                self.session.response_done(pending, 2, ts)
            self._desync(ts, max(1, before - len(self.buf)))
            return False
        self.cur = pending if pending is not None else Pending.orphan(self.counters)
        self.cur.set_response_head(ev)
        return True

    def _done(self, ts: float, state: int) -> None:
        cur, self.cur = self.cur, None
        self.in_message = False
        if cur is not None:
            self.session.response_done(cur, state, ts)

    def _end(self, ts: float, clean: bool) -> None:
        if clean and self.cur is not None and type(self.body) is Http10Reader:
            self._done(ts, 1)  # read-until-close body: the FIN ends it
        super()._end(ts, clean)

    def _abort(self, ts: float) -> None:
        if self.cur is not None:
            self._done(ts, 2)
        self.in_message = False

    def _desync(self, ts: float, consumed: int) -> None:
        # What failed to parse may have been an answer: do not shift the pairing.
        super()._desync(ts, consumed)
        self.session.response_lost()

    def gap(self, ts: float) -> None:
        super().gap(ts)
        self.session.response_lost()


class HttpSession:
    """One TCP connection's HTTP exchanges: pairs responses with requests, in order."""

    __slots__ = ("orderer", "counters", "max_body", "unanswered", "client", "server",
                 "messages")

    def __init__(self, orderer: Orderer, counters: Counters, mid_stream: bool,
                 max_body: int = 64 << 20) -> None:
        self.orderer = orderer
        self.counters = counters
        self.max_body = max_body
        self.unanswered: deque[Pending] = deque()
        self.messages = 0
        # A connection seen from its SYN starts at a message boundary; one seen mid-way
        # is scanned for the first request / status line.
        self.client = RequestReader(self, synced=not mid_stream)
        self.server = ResponseReader(self, synced=not mid_stream)

    def request_head(self, pending: Pending) -> None:
        self.messages += 1
        self.unanswered.append(pending)

    def request_done(self, pending: Pending, state: int) -> None:
        pending.req_state = state
        self._settle(pending)

    def take_request(self, ack: int | None) -> Pending | None:
        """The request the response starting now answers, or None for an orphan.

        The server cannot answer a request before receiving its first byte, so a response
        whose packet acknowledges less belongs to a request the capture did not show.
        """
        if not self.unanswered:
            return None
        pending = self.unanswered[0]
        if ack is not None and not 0 < ((ack - pending.start_seq) & MASK) < HALF:
            return None
        return self.unanswered.popleft()

    def response_done(self, pending: Pending, state: int, ts: float) -> None:
        self.messages += 1
        if pending.ticket is None:  # orphan: its request was not captured
            self.counters.orphan_responses += 1
            return
        pending.finish_response(state, ts)
        self._settle(pending)

    def response_lost(self) -> None:
        """Response bytes went missing: any unanswered request may have lost its answer."""
        while self.unanswered:
            pending = self.unanswered.popleft()
            pending.finish_response(2, 0.0)
            self._settle(pending)

    def switched(self) -> None:
        """101 Switching Protocols: the rest of the connection is not HTTP/1."""
        self.client.dead = self.server.dead = True

    def _settle(self, pending: Pending) -> None:
        if pending.req_state and pending.resp_state:
            self.orderer.done(pending)

    def finish(self, ts: float) -> None:
        """The connection ended: requests still unanswered got no response."""
        while self.unanswered:
            pending = self.unanswered.popleft()
            pending.finish_response(3, 0.0)
            self._settle(pending)
        if not self.messages:
            self.counters.non_http_connections += 1
