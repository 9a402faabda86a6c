"""The HTTP plugin object: the `Protocol` contract wired to endpoint naming
(`endpoints.py`), message decoding and lifting (`message.py`) and the senders (`fast.py`
by default, `aiohttp_sender.py`, and `h2_sender.py` for exchanges captured as HTTP/2), which
are imported only when a target opens.
"""

from __future__ import annotations

from typing import Any

from shadowdiff.model import Request, Response
from shadowdiff.protocols.base import Sender, Tree
from shadowdiff.protocols.http.endpoints import http_endpoint
from shadowdiff.protocols.http.message import MAX_DECODED_BYTES, header_dict, lift_body


class HttpProtocol:
    """The HTTP plugin object registered as `http`."""

    name = "http"
    schemes = ("http", "https")

    def __init__(self, max_decoded_bytes: int = MAX_DECODED_BYTES) -> None:
        self.max_decoded_bytes = max_decoded_bytes

    def configure(self, options: Any) -> tuple[HttpProtocol, dict[str, Any]]:
        """This plugin decoding bodies up to the run's `max_body_bytes` (no rules added)."""
        return HttpProtocol(getattr(options, "max_body_bytes", MAX_DECODED_BYTES)), {}

    def endpoint_key(self, request: Request) -> str:
        """`GET /users/{id}`."""
        return http_endpoint(request.method, request.target)

    def lift(self, response: Response) -> Tree:
        """{"status": int, "header": {name: value}, "body": parsed}."""
        headers = header_dict(response.headers)
        body = lift_body(response.body, headers.get("content-type", ""),
                         headers.get("content-encoding"), self.max_decoded_bytes)
        return {"status": response.status, "header": headers, "body": body}

    def connection_facts(self, target: str, options: Any) -> dict[str, Any] | None:
        """An HTTPS target's certificate and handshake (certs.py), and the HTTP version the
        replay plans to speak to it (the run reports what it really spoke); None for plain
        HTTP."""
        if not target.lower().startswith("https://"):
            return None
        from shadowdiff.protocols.http.certs import probe
        from shadowdiff.protocols.http.tls import TlsSettings
        facts = probe(target, getattr(options, "tls", None) or TlsSettings(),
                      getattr(options, "timeout_s", 10.0))
        h2 = facts.get("alpn") == "h2" and getattr(options, "http2", "auto") != "off"
        facts["replayed_over"] = "HTTP/2" if h2 else "HTTP/1.1"
        return facts

    def open_sender(self, target: str, options: Any) -> Sender:
        """A keep-alive pool to `target`: `fast` (default) or `aiohttp` (the `client` option);
        for an HTTPS target that offers h2 (`alpn`, learned by the pre-run probe, or by the
        first HTTP/2 handshake when not probed), also an HTTP/2 connection for the exchanges
        captured as HTTP/2 (h2_sender.py), unless `http2` is "off"."""
        if getattr(options, "client", "fast") == "aiohttp":
            from shadowdiff.protocols.http.aiohttp_sender import AiohttpSender
            http1: Sender = AiohttpSender(target, options)
        else:
            from shadowdiff.protocols.http.fast import FastSender
            http1 = FastSender(target, options)
        alpn = getattr(options, "alpn", None)   # None: not probed
        if (not target.lower().startswith("https://") or getattr(options, "http2", "auto") == "off"
                or alpn not in (None, "h2")):
            return http1
        from shadowdiff.protocols.http.h2_sender import H2Sender, VersionRouter
        return VersionRouter(H2Sender(target, options), http1, True if alpn == "h2" else None)


PROTOCOL = HttpProtocol()
