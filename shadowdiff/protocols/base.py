"""The protocol plugin contract: everything after `lift` is protocol-neutral.

A protocol module provides a `Protocol` object: how to name a request's endpoint, how to
open a `Sender` to one target, and how to lift a response into a plain tree (see
docs/ARCHITECTURE.md, "The lifted tree"). Built-ins and third parties register through
the `shadowdiff.protocols` entry-point group; it is scanned lazily, once.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Protocol as TypingProtocol, runtime_checkable
from urllib.parse import urlsplit

from shadowdiff.errors import PluginError
from shadowdiff.model import Outcome, Request, Response

Tree = dict[str, Any]

_BUILTIN = {"http": "shadowdiff.protocols.http.plugin:PROTOCOL",
            "smtp": "shadowdiff.protocols.smtp.plugin:PROTOCOL",
            "dns": "shadowdiff.protocols.dns.plugin:PROTOCOL"}


@runtime_checkable
class Sender(TypingProtocol):
    """A connection pool to one target. The seam a faster client can replace."""

    async def send(self, request: Request) -> Outcome:
        """Send one request; every fault becomes a `Failure`, never an exception."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class Protocol(TypingProtocol):
    """What a protocol plugin provides."""

    name: str
    schemes: tuple[str, ...]

    def endpoint_key(self, request: Request) -> str:
        """The endpoint template a request belongs to, e.g. `GET /users/{id}`."""

    def lift(self, response: Response) -> Tree:
        """A comparable plain tree: {"status": .., "header": {..}, "body": ..}."""

    def open_sender(self, target: str, options: Any) -> Sender:
        """A sender for the target URL, configured by ReplayConfig-like `options`."""


@lru_cache(maxsize=None)
def _registry() -> dict[str, str]:
    found = dict(_BUILTIN)
    for ep in entry_points(group="shadowdiff.protocols"):
        found.setdefault(ep.name, ep.value)
    return found


@lru_cache(maxsize=None)
def get_protocol(name: str) -> Protocol:
    """The plugin named `name` (`http`, ...)."""
    spec = _registry().get(name)
    if spec is None:
        raise PluginError(f"no protocol plugin named {name!r} (known: {', '.join(sorted(_registry()))})")
    module_name, _, attr = spec.partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        plugin = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"protocol plugin {name!r} ({spec}) failed to load: {exc}") from exc
    if not isinstance(plugin, Protocol):
        raise PluginError(f"protocol plugin {name!r} ({spec}) does not provide the contract")
    return plugin


def protocol_for_url(url: str) -> Protocol:
    """The plugin whose schemes include the URL's scheme."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme or "://" not in url:
        raise PluginError(f"target {url!r} has no scheme; write e.g. http://{url}")
    for name in _registry():
        plugin = get_protocol(name)
        if scheme in plugin.schemes:
            return plugin
    raise PluginError(f"no protocol plugin handles {scheme}:// (target {url!r})")
