"""Capture stage, collector: an HTTP sink for proxies that already mirror (nginx, Envoy).

    client ──> nginx / Envoy ──> old ──> client
                   └─ mirror (response discarded) ──> Collector ──> CaptureWriter ──> run

The proxy copies each request here and throws our answer away, so the collector answers
204 as soon as it has read the request: a slow sink would hold up nginx's keep-alive
connection to the client (nginx finishes the main request only after its mirror
subrequests). Each request becomes an exchange with no recorded response (`no_response`);
`shadowdiff run` then replays it to old and new. docs/mirroring.md has the proxy settings.

Envoy appends `-shadow` to the host of mirrored requests, before the port
(`api.test:8080` -> `api.test-shadow:8080`); the collector strips it back unless told not to.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.errors import ShadowdiffError
from shadowdiff.model import Exchange, Headers, Request
from shadowdiff.scrub import RedactConfig, Redactor

#: Counters written to the capture header's `stats` and printed at exit.
STAT_KEYS: tuple[str, ...] = ("requests", "body_bytes", "bodies_too_large", "shadow_host_stripped",
                               "unauthorized")
_SHADOW = "-shadow"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class CollectorSettings:
    """What `shadowdiff collect` was asked to do."""

    output: str
    """Capture file to write (`.jsonl` or `.jsonl.gz`)."""
    max_body_bytes: int = 10 * 1024 * 1024
    """A larger request body is not read on (413, the connection closed) and not kept: the
    exchange is recorded with the mark `request_body_missing`."""
    strip_shadow_suffix: bool = True
    """Undo Envoy's `-shadow` Host suffix."""
    source: str = "collect"
    """The capture's `source` and the prefix of each exchange's source."""
    redact: RedactConfig = field(default_factory=RedactConfig)
    """Capture-time redaction (`[redact]`; `keep_secrets` keeps everything)."""
    token: str | None = None
    """When set, only requests whose `token_header` carries it are recorded (others: 401)."""
    token_header: str = "X-Shadowdiff-Token"
    """The header the proxy adds with the shared token; it is not recorded."""


def strip_shadow(host: str) -> str | None:
    """The Host without Envoy's `-shadow` suffix, or None when it has none.

    >>> strip_shadow("api.test-shadow:8080"), strip_shadow("api.test-shadow"), strip_shadow("api.test")
    ('api.test:8080', 'api.test', None)
    """
    base, port = _split_port(host)
    if not base.endswith(_SHADOW) or base == _SHADOW:
        return None
    return base[: -len(_SHADOW)] + port


def _split_port(host: str) -> tuple[str, str]:
    """`name:8080` -> (`name`, `:8080`); `[::1]:8080` -> (`[::1]`, `:8080`); else (host, ``)."""
    name, colon, port = host.rpartition(":")
    # A bare IPv6 address has colons but no port; a bracketed one keeps its port after `]`.
    if colon and port.isdigit() and (":" not in name or "]" in name):
        return name, f":{port}"
    return host, ""


def _text(raw: bytes) -> str:
    # Header bytes are usually ASCII; latin-1 keeps any other byte, one character each.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Collector:
    """Records every request it receives into a capture file; answers 204.

    >>> collector = Collector(CollectorSettings(output="mirror.jsonl"))   # doctest: +SKIP
    >>> await collector.serve("127.0.0.1", 9000, stop_event)              # doctest: +SKIP
    """

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._writer: CaptureWriter | None = None

    async def handle(self, request: web.Request) -> web.Response:
        """The one handler: read the whole request, record it, answer 204."""
        seen_at = time.time()
        if not self._authorized(request):
            self.stats["unauthorized"] += 1
            return web.Response(status=401, headers={"Connection": "close"})
        body, complete = await self._read_body(request)
        marks = ("no_response",) if complete else ("no_response", "request_body_missing")
        self._record(Request(protocol="http", method=request.method, target=request.raw_path,
                             headers=self._headers(request.raw_headers), body=body),
                     seen_at, marks)
        if not complete:  # the rest of the body is not read: this connection cannot go on
            return web.Response(status=413, headers={"Connection": "close"})
        return web.Response(status=204)

    def _authorized(self, request: web.Request) -> bool:
        if self.settings.token is None:
            return True
        given = request.headers.get(self.settings.token_header, "")
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self.settings.token.encode("utf-8", "surrogateescape"))

    async def _read_body(self, request: web.Request) -> tuple[bytes, bool]:
        cap = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            self.stats["bodies_too_large"] += 1  # refused unread: a declared size is enough
            return b"", False
        parts: list[bytes] = []
        size = 0
        while chunk := await request.content.read(_CHUNK):
            size += len(chunk)
            if size > cap:  # an endless chunked body stops here, not at the client's whim
                self.stats["body_bytes"] += size
                self.stats["bodies_too_large"] += 1
                return b"", False
            parts.append(chunk)
        self.stats["body_bytes"] += size
        return b"".join(parts), True

    def _headers(self, raw: Any) -> Headers:
        headers = tuple((_text(k), _text(v)) for k, v in raw)
        if self.settings.token is not None:  # the proxy's token, not the client's header
            token = self.settings.token_header.lower()
            headers = tuple((k, v) for k, v in headers if k.lower() != token)
        if not self.settings.strip_shadow_suffix:
            return headers
        out = []
        for name, value in headers:
            stripped = strip_shadow(value) if name.lower() == "host" else None
            if stripped is not None:
                self.stats["shadow_host_stripped"] += 1
                value = stripped
            out.append((name, value))
        return tuple(out)

    def _record(self, request: Request, seen_at: float, marks: tuple[str, ...]) -> None:
        if self._writer is None:
            return
        self.stats["requests"] += 1
        n = self.stats["requests"]
        self._writer.write(Exchange(id=f"collect-{n}", request=request,
                                    source=f"{self.settings.source}#{n}", seen_at=seen_at,
                                    marks=marks))

    async def serve(self, host: str, port: int, stop: asyncio.Event,
                    on_ready: Callable[[str, int], None] | None = None) -> dict[str, int]:
        """Listen until `stop` is set, then flush the capture file; returns the stats."""
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ShadowdiffError(f"collector cannot listen on {host}:{port}: {exc}") from exc
        self._writer = CaptureWriter(self.settings.output, source=self.settings.source,
                                     redactor=Redactor(self.settings.redact))
        try:
            if on_ready is not None:
                bound = runner.addresses[0]
                on_ready(str(bound[0]), int(bound[1]))
            await stop.wait()
        finally:
            await runner.cleanup()  # requests in progress finish (or are cut) before the flush
            self._writer.stats.update(self.stats)
            self._writer.close()
        return dict(self.stats)


async def run_collector(host: str, port: int, settings: CollectorSettings, *,
                        on_ready: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Serve until SIGINT or SIGTERM, then flush the capture file; returns the stats.

    >>> asyncio.run(run_collector("127.0.0.1", 9000, CollectorSettings("mirror.jsonl")))  # doctest: +SKIP
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await Collector(settings).serve(host, port, stop, on_ready)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def describe(stats: dict[str, Any]) -> str:
    """`requests 41, body_bytes 2048, ...`: every counter, in STAT_KEYS order."""
    return ", ".join(f"{k} {stats.get(k, 0)}" for k in STAT_KEYS)


__all__ = ["Collector", "CollectorSettings", "STAT_KEYS", "describe", "run_collector", "strip_shadow"]
