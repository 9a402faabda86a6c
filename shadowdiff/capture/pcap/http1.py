"""Capture stage, pcap importer, layer 3: two TCP byte streams -> paired HTTP/1.x messages.

`tcp.py` delivers each direction of a connection in order; here a `RequestReader` and a
`ResponseReader` cut those bytes into messages with llhttp (the C parser of Node.js, via
httptools) and an `HttpSession` pairs responses with requests in order. Finished pairs go
to the `Orderer` (`order.py`), which numbers them by request start.

Why llhttp: h11's reader layer cost ~34 us per exchange, most of the importer's time;
llhttp parses a message in a few microseconds and does the same validation and body
framing (Content-Length, chunked, 204/304, 1xx, read-until-close).

llhttp streams and never says at which byte a message ended, and a response to HEAD must
be cut short at its head (a HEAD answer may announce a Content-Length it does not send).
So requests, and responses while a HEAD (or CONNECT) answer is due, are fed in pieces cut
after every CRLFCRLF: every head and every chunked body ends at a piece end, so a HEAD
answer is ended exactly there, and after a parse error the stream is scanned again from
just after the failed message's start (where the previous one ended). A callback that
raises is a bug, re-raised as such, never mistaken for bad input.

Streams that do not start at a message boundary (connection seen mid-way, after a gap,
after a parse error) are scanned for the next request or status line; the bytes passed
over are counted in `skipped_bytes`, never guessed at.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import deque
from typing import ClassVar, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
    HttpResponseParser,
)

from shadowdiff.capture.pcap.order import ABSENT, COMPLETE, INCOMPLETE, Orderer, Pending, _append
from shadowdiff.capture.pcap.tcp import HALF, MASK, Counters

#: Largest header block we wait for (h11.Connection's default is 16 KiB).
MAX_HEAD = 64 * 1024
#: Longest partial line kept while searching for a message start.
_MAX_SCAN_TAIL = 8 * 1024
_REQUEST_START = re.compile(rb"(?m)^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [\x21-\x7e]+ HTTP/1\.[01]\r?$")
_RESPONSE_START = re.compile(rb"(?m)^HTTP/1\.[01] [1-5][0-9][0-9][^\r\n]*\r?$")
_HEAD_END = b"\r\n\r\n"
_CR, _LF = 13, 10
_OWS = b" \t"
#: Requests whose answer is cut at its head, whatever its framing headers say.
_NO_BODY_ANSWER = frozenset({"HEAD", "CONNECT"})


def _decoded(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Header pairs as text. llhttp keeps trailing whitespace in values; RFC 9112 says it is
    not part of them. latin-1 keeps every byte, one character each."""
    return [(n.decode("latin-1"), v.rstrip(_OWS).decode("latin-1")) for n, v in raw]


def _framed_by_close(headers: list[tuple[str, str]]) -> bool:
    """Whether a response body runs to the end of the connection (no length, not chunked)."""
    for name, value in headers:
        low = name.lower()
        if low == "content-length":
            return False
        if low == "transfer-encoding" and value.lower().rstrip().endswith("chunked"):
            return False
    return True


class _Reader(ABC):
    """Shared machinery of one direction: feeding llhttp, resynchronising, gaps.

    Positions are offsets in the direction's byte stream (`base` is where the next
    delivery starts); `seq_base` turns one back into a TCP sequence number.
    """

    __slots__ = ("session", "counters", "parser", "synced", "scan", "scan_pos", "line_start",
                 "dead", "max_body", "ack", "ts", "base", "seq_base", "piece_start",
                 "piece_end", "msg_start", "head_open", "hdrs", "tail", "reset")
    _start: ClassVar[re.Pattern[bytes]] = _REQUEST_START

    def __init__(self, session: HttpSession, synced: bool) -> None:
        self.session = session
        self.counters: Counters = session.counters
        self.parser = self._new_parser() if synced else None
        self.synced = synced
        self.scan = bytearray()
        self.scan_pos = 0
        self.line_start = True  # whether scan[0] may begin a message
        self.dead = False  # after a protocol switch: nothing more here is HTTP/1
        self.max_body = session.max_body
        self.ack: int | None = None
        self.ts = 0.0
        self.base = self.seq_base = self.piece_start = self.piece_end = self.msg_start = 0
        self.head_open = False  # a message has begun and its head is not complete yet
        self.hdrs: list[tuple[bytes, bytes]] = []
        self.tail = b""  # the last 3 bytes of the previous delivery (a CRLFCRLF may span it)
        self.reset = False  # the parser must be replaced at the end of this piece

    @abstractmethod
    def _new_parser(self) -> HttpRequestParser | HttpResponseParser:
        """A fresh llhttp parser for this direction."""

    def feed(self, data: bytes, ts: float, seq: int, ack: int | None) -> None:
        """In-order bytes of this direction, starting at sequence number `seq`."""
        pos = self.base
        self.base = pos + len(data)
        self.seq_base = (seq - pos) & MASK
        self.ack, self.ts = ack, ts
        if self.dead:
            self.counters.skipped_bytes += len(data)
            return
        # A loop, not recursion: a parse error hands back the rest to scan again.
        while data:
            if not self.synced:
                data, pos = self._resync(data, pos)
                if not data:
                    break
            data, pos = self._parse(data, pos)
        if self.head_open and self.base - self.msg_start > MAX_HEAD:
            self._desync_all()  # a head that never ends: do not buffer it forever

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp keeps trailing whitespace in values; RFC 9112 says it is not part of them.
        # Decoded here (latin-1 keeps every byte): cheaper than a second pass later.
        self.hdrs.append((name, value))  # decoded once per head, in _decoded: cheaper per call

    def _cut(self, data: bytes, i: int) -> int:
        """Where the piece starting at data[i] ends: after the next CRLFCRLF, or at the end."""
        if i == 0 and data[0] in (_CR, _LF) and self.tail:  # CRLFCRLF split by a delivery
            k = (self.tail + data[:3]).find(_HEAD_END)
            if k >= 0:
                return k + 4 - len(self.tail)
        k = data.find(_HEAD_END, i)
        return k + 4 if k >= 0 else len(data)

    def _parse(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """Feed llhttp piece by piece; returns what to scan again after an error (or b"")."""
        n, i = len(data), 0
        feed = self.parser.feed_data  # type: ignore[union-attr]
        while i < n:
            j = self._cut(data, i)
            self.piece_start, self.piece_end = pos + i, pos + j
            try:
                feed(data if j - i == n else memoryview(data)[i:j])
            except HttpParserUpgrade as exc:
                # Upgrade or CONNECT: a 101 (or 2xx to CONNECT) has made the session dead;
                # otherwise parsing goes on after the message, as llhttp allows.
                j = i + int(exc.args[0])
            except HttpParserCallbackError as exc:
                raise exc.__context__ or exc  # a bug of ours, not bad input: do not hide it
            except HttpParserError:
                return self._failed(data, pos)
            if self.dead:
                self.counters.skipped_bytes += n - j
                return b"", 0
            if self.reset:
                self.reset = False
                self.parser = self._new_parser()
                feed = self.parser.feed_data
            i = j
        self.tail = data[-3:]
        return b"", 0

    def _failed(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """The bytes at hand do not parse: drop the message and scan from just after its start.

        llhttp cannot say where in the piece it failed, but the failed message began at
        `msg_start` (where the last one ended): the scan resumes one byte later, so the
        same failed start is not tried again.
        """
        self._abort()
        self.head_open = False
        start = self.msg_start + 1
        if start > self.piece_end:  # the last message ended inside this piece
            start = self.piece_end
        resume = max(start, pos)
        self.counters.skipped_bytes += resume - self.msg_start
        self._lost()
        self.synced, self.parser = False, None
        self.scan.clear()
        rest = data[resume - pos:]
        before = data[resume - pos - 1] if resume > pos else self.tail[-1] if self.tail else _LF
        self.line_start = before == _LF
        self.msg_start = resume
        return rest, resume

    def _resync(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """Scan for a message start; the bytes from there on and their position (b"" if none)."""
        scan = self.scan
        if scan and self._start.match(data):
            # Messages usually begin at a segment boundary: do not let a partial line
            # left over from before hide this one.
            self.counters.skipped_bytes += len(scan)
            scan.clear()
            self.line_start = True
        if not scan:
            self.scan_pos = pos
        scan += data
        m = self._start.search(scan, 0 if self.line_start else 1)
        if m is not None:
            self.counters.skipped_bytes += m.start()
            at = self.scan_pos + m.start()
            rest = bytes(scan[m.start():])
            scan.clear()
            self.synced, self.parser = True, self._new_parser()
            self.msg_start, self.tail, self.head_open = at, b"", False
            return rest, at
        cut = scan.rfind(b"\n") + 1
        if len(scan) - cut > _MAX_SCAN_TAIL:
            cut, self.line_start = len(scan), False
        elif cut:
            self.line_start = True
        self.counters.skipped_bytes += cut
        self.scan_pos += cut
        del scan[:cut]
        return b"", 0

    def _desync_all(self) -> None:
        """Give up on the message in progress and wait for the next message start."""
        self._drop(self.base - self.msg_start if self.head_open else 0)
        self.msg_start = self.base
        self._lost()

    def _drop(self, skipped: int) -> None:
        self._abort()
        self.counters.skipped_bytes += skipped + len(self.scan)
        self.scan.clear()
        self.head_open = False
        self.synced, self.parser, self.line_start, self.tail = False, None, True, b""

    def gap(self, ts: float) -> None:
        """Missing bytes: the message in progress is incomplete; resume at a message start."""
        self.ts = ts
        self._desync_all()

    def eof(self, ts: float) -> None:
        """The sender's FIN: a message still open ends here (read-until-close) or is cut."""
        self.ts = ts
        self._end(clean=True)

    def close(self, ts: float) -> None:
        """The stream ends without a FIN: a message still open is incomplete."""
        self.ts = ts
        self._end(clean=False)

    def _end(self, clean: bool) -> None:
        self._drop(self.base - self.msg_start if self.head_open else 0)

    @abstractmethod
    def _abort(self) -> None:
        """End the message in flight as incomplete: its bytes can no longer be trusted."""

    def _lost(self) -> None:
        """Bytes of this direction went missing or could not be read."""


class RequestReader(_Reader):
    """Client -> server bytes: requests."""

    __slots__ = ("cur", "url")

    def __init__(self, session: HttpSession, synced: bool) -> None:
        self.cur: Pending | None = None
        self.url = b""
        super().__init__(session, synced)

    def _new_parser(self) -> HttpRequestParser:
        parser = HttpRequestParser(self)
        # A passive reader takes what follows `Connection: close` too; the peer decides.
        parser.set_dangerous_leniencies(lenient_keep_alive=True)
        return parser

    # -- llhttp callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        # The ticket is taken at the first byte, so ids follow request start.
        self.cur = Pending(self.session.orderer.issue(), self.ts,
                           (self.seq_base + self.piece_start) & MASK)
        self.url, self.hdrs, self.head_open = b"", [], True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        cur = self.cur
        assert cur is not None and self.parser is not None
        cur.method = cast(HttpRequestParser, self.parser).get_method().decode("ascii")
        cur.target, cur.headers = self.url.decode("latin-1"), _decoded(self.hdrs)
        self.hdrs, self.head_open = [], False  # trailers, if any, go to a list nobody reads
        self.session.request_head(cur)

    def on_body(self, body: bytes) -> None:
        self.cur.add_request_body(body, self.max_body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        cur, self.cur = self.cur, None
        self.msg_start = self.piece_end
        if cur is not None:
            self.session.request_done(cur, COMPLETE)

    # -- ends ----------------------------------------------------------------------------
    def _abort(self) -> None:
        cur, self.cur = self.cur, None
        if cur is None:
            return
        if cur.method:
            self.session.request_done(cur, INCOMPLETE)
        else:
            self.session.orderer.cancel(cur.ticket)  # type: ignore[arg-type]


class ResponseReader(_Reader):
    """Server -> client bytes: responses, each paired with the oldest unanswered request."""

    __slots__ = ("cur", "msg_ack", "reason")
    _start = _RESPONSE_START

    def __init__(self, session: HttpSession, synced: bool) -> None:
        self.cur: Pending | None = None
        self.msg_ack: int | None = None
        self.reason = b""
        super().__init__(session, synced)

    def _new_parser(self) -> HttpResponseParser:
        parser = HttpResponseParser(self)
        parser.set_dangerous_leniencies(lenient_keep_alive=True)
        return parser

    def _cut(self, data: bytes, i: int) -> int:
        # Only an answer to HEAD (or CONNECT) must stop at its head: cut only when one is due.
        return super()._cut(data, i) if self.session.heads else len(data)

    # -- llhttp callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.msg_ack, self.reason, self.hdrs, self.head_open = self.ack, b"", [], True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_headers_complete(self) -> None:
        self.head_open = False
        status = cast(HttpResponseParser, self.parser).get_status_code()
        if status < 200 and status != 101:
            return  # 100 Continue and friends: the real answer follows
        session = self.session
        pending = session.take_request(self.msg_ack)
        cur = self.cur = pending if pending is not None else Pending(None, 0.0, 0)
        cur.status, cur.reason, cur.resp_headers = (status, self.reason.decode("latin-1"),
                                                    _decoded(self.hdrs))
        self.hdrs = []
        if status == 101 or (cur.method == "CONNECT" and status < 300):
            self._done(COMPLETE)  # an answer, after which nothing here is HTTP/1
            session.switched()
        elif cur.method == "HEAD":
            # No body follows, whatever Content-Length says: end here, and let a fresh
            # parser take the next piece (this one would wait for the announced body).
            self._done(COMPLETE)
            self.msg_start, self.reset = self.piece_end, True

    def on_body(self, body: bytes) -> None:
        cur = self.cur
        if cur is None:
            return
        size = cur.resp_len + len(body)
        if size > self.max_body:
            cur.truncated = True  # the rest is dropped: memory stays bounded
        elif cur.resp_len:
            cur.resp_len, cur.resp_body = size, _append(cur.resp_body, body)
        else:
            cur.resp_len, cur.resp_body = size, body  # usually the one and only piece

    def on_message_complete(self) -> None:
        self.msg_start = self.piece_end
        if self.cur is not None:
            self._done(COMPLETE)

    # -- ends ----------------------------------------------------------------------------
    def _done(self, state: int) -> None:
        cur, self.cur = self.cur, None
        if cur is not None:
            self.session.response_done(cur, state, self.ts)

    def _end(self, clean: bool) -> None:
        cur = self.cur
        if clean and cur is not None and _framed_by_close(cur.resp_headers):
            self._done(COMPLETE)  # read-until-close body: the FIN ends it
        super()._end(clean)

    def _abort(self) -> None:
        if self.cur is not None:
            self._done(INCOMPLETE)

    def _lost(self) -> None:
        # What went missing may have been an answer: do not shift the pairing.
        self.session.response_lost()


class HttpSession:
    """One TCP connection's HTTP exchanges: pairs responses with requests, in order."""

    __slots__ = ("orderer", "counters", "max_body", "unanswered", "client", "server",
                 "messages", "heads")

    def __init__(self, orderer: Orderer, counters: Counters, mid_stream: bool,
                 max_body: int = 64 << 20) -> None:
        self.orderer = orderer
        self.counters = counters
        self.max_body = max_body
        self.unanswered: deque[Pending] = deque()
        self.messages = 0
        self.heads = 0  # unanswered requests whose answer has no body: HEAD, CONNECT
        # A connection seen from its SYN starts at a message boundary; one seen mid-way
        # is scanned for the first request / status line.
        self.client = RequestReader(self, synced=not mid_stream)
        self.server = ResponseReader(self, synced=not mid_stream)

    def request_head(self, pending: Pending) -> None:
        self.messages += 1
        self.unanswered.append(pending)
        if pending.method in _NO_BODY_ANSWER:
            self.heads += 1

    def request_done(self, pending: Pending, state: int) -> None:
        pending.req_state = state
        if pending.resp_state:
            self.orderer.done(pending)

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
        if pending.method in _NO_BODY_ANSWER:
            self.heads -= 1
        return self.unanswered.popleft()

    def response_done(self, pending: Pending, state: int, ts: float) -> None:
        self.messages += 1
        if pending.ticket is None:  # orphan: its request was not captured
            self.counters.orphan_responses += 1
            return
        pending.resp_state, pending.end_ts = state, ts
        if pending.req_state:
            self.orderer.done(pending)

    def response_lost(self) -> None:
        """Response bytes went missing: any unanswered request may have lost its answer."""
        self._fail_unanswered(INCOMPLETE)

    def switched(self) -> None:
        """101 Switching Protocols (or a CONNECT tunnel): the rest is not HTTP/1."""
        self.client.dead = self.server.dead = True

    def _fail_unanswered(self, state: int) -> None:
        self.heads = 0
        while self.unanswered:
            pending = self.unanswered.popleft()
            pending.resp_state = state
            if pending.req_state:
                self.orderer.done(pending)

    def finish(self, ts: float) -> None:
        """The connection ended: requests still unanswered got no response."""
        self._fail_unanswered(ABSENT)
        if not self.messages:
            self.counters.non_http_connections += 1
