"""The HTTP/2 sender: exchanges captured as HTTP/2 replayed over HTTP/2 (the `h2` library).

One TLS connection per target (ALPN `h2`), many streams multiplexed on it: never more than
the server's SETTINGS_MAX_CONCURRENT_STREAMS (a request waits for a free stream), request
bodies sent as the server's flow-control windows allow, received data acknowledged so
the windows reopen and bodies of any size arrive. A GOAWAY or REFUSED_STREAM means the
server did not process the stream: it is sent again on a new connection. The name, SNI,
pinned address and trust settings are the fast sender's (tls.py); failures get its kinds
(timeout, refused, reset, invalid, too_large, tls, error), and a response is shaped like
its: wire-order headers (lower-case, as HTTP/2 has them; lift lowercases 1.1's alike),
the body as received, the reason phrase of the status. No h2c: a plain `http://` target
is HTTP/1.1 (docs/configuration.md, "HTTP/2").
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from shadowdiff.model import Failure, Outcome, Request, Response
from shadowdiff.protocols.http.fast import (MAX_HEAD_BYTES, MAX_HEADERS, Fault, connect_fault,
                                            refuse_unsafe, timeout_fault)
from shadowdiff.protocols.http.message import HOP_BY_HOP
from shadowdiff.protocols.http.tls import TlsSettings, client_context, connect_to

#: ALPN offered by this sender; `http/1.1` too, so a target that lacks h2 still completes
#: the handshake and says so (NotHttp2) rather than failing it.
H2_ALPN = ("h2", "http/1.1")
#: Sending a stream refused unprocessed (GOAWAY, REFUSED_STREAM) at most this many times.
_ATTEMPTS = 3
_DROP = HOP_BY_HOP | {"host"}   # Host becomes :authority


class NotHttp2(Exception):
    """The target chose another protocol than h2 by ALPN (the router falls back to 1.1)."""


class _Refused(Exception):
    """The server refused the stream unprocessed: safe to send again elsewhere."""


class _Stream:
    """One request's state on a connection."""

    __slots__ = ("future", "status", "headers", "body", "pending")

    def __init__(self, future: asyncio.Future[Response], body: bytes) -> None:
        self.future = future
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.pending = memoryview(body) if body else None   # request body not yet sent


class _H2Connection(asyncio.Protocol):
    """One HTTP/2 connection: the h2 state machine fed by an asyncio transport."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        # Outbound headers are built and checked here (H2Sender._headers): h2's own pass
        # over them cost a fifth of the CPU time of a request. Inbound ones it still checks.
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self._flush_soon = False
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.alpn: str | None = None
        self.settled = asyncio.Event()      # the server's first SETTINGS arrived
        self.room = asyncio.Event()         # a stream may open (fewer than its maximum)
        self.lost = asyncio.Event()         # connection_lost ran: the socket is closed
        self.closed = False                 # no new streams: lost, GOAWAY, or closing
        self.why = "connection closed"

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        self.alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
        if self.alpn != "h2":
            return  # the caller closes it: nothing HTTP/2 is said on it
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0,
                                 h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_BYTES})
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.DenialOfServiceError as exc:   # a header list past our SETTINGS
            self._fail_all("too_large", f"response head passes {MAX_HEAD_BYTES} bytes: {exc}")
            self.close()
            return
        except (h2.exceptions.ProtocolError, ValueError) as exc:  # hpack errors are ValueErrors
            self._fail_all("invalid", f"HTTP/2 protocol error: {exc.__class__.__name__}: {exc}")
            self.close()
            return
        for event in events:
            self._on_event(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        self.room.set()  # wake waiters: they see `closed` and go elsewhere
        self.settled.set()
        self._fail_all("reset", f"connection lost: {exc}" if exc else
                       "connection closed before a complete response")

    # -- h2 events -------------------------------------------------------------------
    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._on_headers(event.stream_id, event.headers or [])
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            self._complete(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            code = event.error_code
            self._fail(event.stream_id, _Refused() if code == h2.errors.ErrorCodes.REFUSED_STREAM
                       else Fault("reset", f"the server reset the stream ({_code(code)})"),
                       reset=False)
        elif isinstance(event, h2.events.WindowUpdated):
            self._pump_all()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settled.set()
            self._update_room()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)

    def _on_headers(self, stream_id: int, headers: list[Any]) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        for name, value in headers:
            if name == b":status":
                stream.status = int(value)
            elif not name.startswith(b":"):
                stream.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if len(stream.headers) > MAX_HEADERS:
            self._fail(stream_id, Fault("too_large", f"more than {MAX_HEADERS} response headers"))

    def _on_data(self, event: h2.events.DataReceived) -> None:
        # Acknowledge at once, even data we drop: the windows are the connection's too.
        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.body += event.data or b""
        if len(stream.body) > self.cap:
            self._fail(event.stream_id, Fault("too_large", f"body exceeds cap {self.cap} bytes"))

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.closed = True
        self.why = f"the server sent GOAWAY ({_code(event.error_code)})"
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for stream_id in [s for s in self.streams if s > last]:
            self._fail(stream_id, _Refused(), reset=False)   # never processed: may go again
        if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
            self._fail_all("reset", self.why)
        self.room.set()
        if not self.streams:
            self.close()   # nothing left to finish on it

    # -- the request cycle -------------------------------------------------------------
    def start(self, headers: list[tuple[bytes, bytes]],
              body: bytes) -> tuple[int, asyncio.Future[Response]]:
        """Open a stream for one request (the caller checked there is room). A HEAD's answer
        ends with its headers: h2 knows the method from :method."""
        stream_id = self.h2.get_next_available_stream_id()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        self.streams[stream_id] = _Stream(future, body)
        self._pump(stream_id)
        self._update_room()
        if not self._flush_soon:   # one TLS write for every stream opened in this loop turn
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        return stream_id, future

    def has_room(self) -> bool:
        """Whether one more stream stays within the server's MAX_CONCURRENT_STREAMS. Our own
        count: h2's `open_outbound_streams` walks every stream on each call."""
        return not self.closed and len(self.streams) < self.h2.remote_settings.max_concurrent_streams

    def _update_room(self) -> None:
        if self.has_room():
            self.room.set()
        else:
            self.room.clear()

    def _pump(self, stream_id: int) -> None:
        """Send as much of the request body as the flow-control windows allow."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.pending is None:
            return
        while len(stream.pending):
            size = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size,
                       len(stream.pending))
            if size <= 0:
                return  # WindowUpdated calls again
            self.h2.send_data(stream_id, stream.pending[:size].tobytes())
            stream.pending = stream.pending[size:]
        stream.pending = None
        self.h2.end_stream(stream_id)

    def _pump_all(self) -> None:
        for stream_id in [s for s, st in self.streams.items() if st.pending is not None]:
            try:
                self._pump(stream_id)
            except h2.exceptions.StreamClosedError:
                self._fail(stream_id, Fault("reset", "the server closed the stream mid-body"))

    def _complete(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.pending is not None:
            # answered before the whole request body went: stop sending it (RFC 9113 8.1)
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.H2Error:
                pass  # closed meanwhile
        self._forget(stream_id)
        if stream is None or stream.future.done():
            return
        try:
            reason = HTTPStatus(stream.status).phrase
        except ValueError:
            reason = ""
        stream.future.set_result(Response(stream.status, tuple(stream.headers),
                                          bytes(stream.body), reason=reason))

    def _fail(self, stream_id: int, exc: BaseException, *, reset: bool = True) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.future.done():
            stream.future.set_exception(exc)
        if reset:
            self.cancel(stream_id)
        else:
            self._forget(stream_id)

    def _fail_all(self, kind: str, detail: str) -> None:
        for stream_id in list(self.streams):
            self._fail(stream_id, Fault(kind, detail), reset=False)

    def cancel(self, stream_id: int) -> None:
        """Forget a stream still open (timed out, too large) with RST_STREAM CANCEL; one
        that completed or failed is already forgotten, and nothing is sent for it."""
        if stream_id not in self.streams:
            return
        if not self.lost.is_set():
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.H2Error:
                pass  # closed on both sides meanwhile: nothing to reset
            self._flush()
        self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        self._update_room()
        if self.closed and not self.streams:
            self.close()  # after a GOAWAY, once the streams it let finish have finished

    def _flush(self) -> None:
        self._flush_soon = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """GOAWAY, then close; `lost` is set once the socket really is closed."""
        if self.transport is None or self.transport.is_closing():
            self.closed = True
            return
        if self.alpn == "h2" and not self.lost.is_set():
            try:
                self.h2.close_connection()
            except h2.exceptions.H2Error:
                pass  # the state machine is already closed
            self._flush()
        self.closed = True
        self.transport.close()


def _code(code: Any) -> str:
    return getattr(code, "name", None) or str(code)


class H2Sender:
    """Sends requests to one HTTPS target over one multiplexed HTTP/2 connection."""

    def __init__(self, target: str, options: Any) -> None:
        parts = urlsplit(target)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.options = options
        tls: TlsSettings = getattr(options, "tls", None) or TlsSettings()
        self.server_name = tls.server_name or self.host
        self.address = connect_to(tls, self.host, self.port)
        self._ssl = client_context(tls, alpn=H2_ALPN)
        self._conn: _H2Connection | None = None
        self._connecting: asyncio.Task[_H2Connection] | None = None
        self._old: list[_H2Connection] = []    # closed for new streams, socket maybe not yet
        self.sent_over: Counter[str] = Counter()

    def _headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        """Pseudo-headers first, then the captured headers lower-cased, hop-by-hop ones
        dropped, Host as :authority (the `host_header` option as the fast sender reads it)."""
        mode = self.options.host_header
        captured = request.header("host")
        authority = (captured if mode == "original" and captured else
                     self.netloc if mode in ("original", "target") else mode)
        path = self.prefix + (request.target if request.target.startswith("/") else "/")
        overrides = {name.lower() for name, _ in self.options.headers}
        rest = [(k.lower(), v) for k, v in request.headers
                if k.lower() not in _DROP and k.lower() not in overrides]
        rest += [(k.lower(), v) for k, v in self.options.headers]
        if request.body:
            rest.append(("content-length", str(len(request.body))))
        refuse_unsafe(request.method, path, [("host", authority), *rest])
        pairs = [(":method", request.method), (":scheme", "https"), (":authority", authority),
                 (":path", path), *rest]
        try:
            return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
        except UnicodeEncodeError as exc:
            raise Fault("error", f"request not sent: header is not latin-1: {exc}") from exc

    async def _open(self) -> _H2Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _H2Connection(self.options.max_body_bytes), *self.address, ssl=self._ssl,
                server_hostname=self.server_name)
        except OSError as exc:
            raise connect_fault(exc) from exc
        if conn.alpn != "h2":
            self._retire(conn)
            raise NotHttp2(f"the target chose {conn.alpn or 'no protocol'} by ALPN, not h2")
        return conn

    async def _connection(self) -> _H2Connection:
        """The open connection, or a new one (one handshake however many requests wait)."""
        while True:
            if self._conn is not None and not self._conn.closed:
                conn = self._conn
                await conn.settled.wait()
                if conn.has_room():
                    return conn
                await conn.room.wait()
                continue
            if self._conn is not None:   # GOAWAY: it closes itself once its streams end
                self._park(self._conn)
                self._conn = None
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._open())
                self._connecting.add_done_callback(self._connected)
            await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_H2Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._conn = task.result()

    async def _exchange(self, request: Request) -> Response:
        headers = self._headers(request)
        for _ in range(_ATTEMPTS):
            conn = await self._connection()
            stream_id, future = conn.start(headers, request.body)
            try:
                return await future
            except _Refused:
                continue  # not processed by the server: again (on a new connection after GOAWAY)
            finally:
                conn.cancel(stream_id)
        raise Fault("reset", f"the server refused the stream {_ATTEMPTS} times unprocessed")

    def _retire(self, conn: _H2Connection) -> None:
        conn.close()
        self._park(conn)

    def _park(self, conn: _H2Connection) -> None:
        """Keep `conn` (closing or closed to new streams) until its socket is closed, for
        close() to wait for; those already closed are let go."""
        self._old = [c for c in self._old if not c.lost.is_set()] + [conn]

    async def send(self, request: Request) -> Outcome:
        """One request, one outcome; raises NotHttp2 (before anything is sent) when the target
        does not select h2, for the router (VersionRouter) to send it over HTTP/1.1."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.options.timeout_s):
                resp = await self._exchange(request)
        except TimeoutError:
            fault = timeout_fault(self.options.timeout_s)
            outcome: Outcome = Failure(fault.kind, str(fault), time.perf_counter() - start)
        except Fault as fault:
            outcome = Failure(fault.kind, str(fault), time.perf_counter() - start)
        except (h2.exceptions.H2Error, OSError) as exc:  # e.g. a stream the state refuses
            outcome = Failure("error", f"{exc.__class__.__name__}: {exc}", time.perf_counter() - start)
        else:
            outcome = replace(resp, elapsed_s=time.perf_counter() - start)
        self.sent_over["HTTP/2"] += 1
        return outcome

    async def close(self) -> None:
        """GOAWAY and close; wait (briefly) for each TLS close, or a loop closed right after
        leaks the socket (filterwarnings=error would say so)."""
        if self._connecting is not None:
            self._connecting.cancel()
            try:
                await self._connecting
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
        if self._conn is not None:
            self._old.append(self._conn)
            self._conn = None
        for conn in self._old:
            conn.close()
        waits = [asyncio.ensure_future(c.lost.wait()) for c in self._old if not c.lost.is_set()]
        self._old = []
        if waits:
            _, pending = await asyncio.wait(waits, timeout=1.0)
            for task in pending:
                task.cancel()


class VersionRouter:
    """A target that offers h2: exchanges captured as HTTP/2 go over `http2`, the others
    (and all of them, once the target turns out not to select h2) over `http1`."""

    def __init__(self, http2: H2Sender, http1: Any, h2_offered: bool | None = None) -> None:
        self.http2 = http2
        self.http1 = http1
        self.h2_offered = h2_offered   # None: not known yet, the first h2 handshake tells

    async def send(self, request: Request) -> Outcome:
        """One request, one outcome, over the version it was captured in when it can."""
        if request.http_version == "HTTP/2" and self.h2_offered is not False:
            try:
                return await self.http2.send(request)
            except NotHttp2:
                self.h2_offered = False
        return await self.http1.send(request)  # type: ignore[no-any-return]

    @property
    def sent_over(self) -> Counter[str]:
        """Requests sent per HTTP version (summary `tls.targets.<role>.replayed_over_counts`)."""
        http1: Counter[str] = getattr(self.http1, "sent_over", None) or Counter()
        return self.http2.sent_over + http1

    async def close(self) -> None:
        """Close both pools."""
        await asyncio.gather(self.http2.close(), self.http1.close())
