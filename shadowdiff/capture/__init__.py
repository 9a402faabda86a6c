"""Capture stage entry point: sniff an input file's format by content and stream its exchanges.

    read_exchanges(path) ──> Iterator[Exchange] ──> (filters.apply_filters) ──> replay / CaptureWriter

Importers live one per module (`jsonl`, `har`, `mitm`, `pcap`, `maillog`, `accesslog`) and are imported
only when a file of their format is read, so `import shadowdiff.capture` stays cheap and never
pulls in mitmproxy or scapy.
"""

from __future__ import annotations

import importlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from shadowdiff.errors import CaptureError, PluginError
from shadowdiff.model import Exchange
from shadowdiff.scrub import Redactor

#: Bytes read from the start of a file to recognise its format (after gunzip).
SNIFF_BYTES = 64 * 1024

#: name -> (module, sniff function, read function). The order is the detection order:
#: the most specific signatures first, access logs (the loosest) last.
FORMATS: dict[str, tuple[str, str, str]] = {
    "shadowdiff": ("shadowdiff.capture", "sniff_shadowdiff", "read_shadowdiff"),
    "mitm": ("shadowdiff.capture.mitm", "sniff", "read_mitm"),
    "pcap": ("shadowdiff.capture.pcap.combined", "sniff", "read_pcap_all"),  # + DNS (pcap/combined.py)
    "har": ("shadowdiff.capture.har", "sniff", "read_har"),
    "maillog": ("shadowdiff.capture.maillog", "sniff", "read_maillog"),
    "dnslog": ("shadowdiff.protocols.dns.logs", "sniff", "read_dnslog"),
    "log": ("shadowdiff.capture.accesslog", "sniff", "read_access_log"),
}

Stats = dict[str, Any]
"""Counters an importer adds to as it reads; JSON-serializable, stored in the capture header."""


def sniff_shadowdiff(head: bytes) -> bool:
    """True when the first line is a shadowdiff capture header.

    >>> sniff_shadowdiff(b'{"format": "shadowdiff-capture", "version": 1}\\n')
    True
    """
    import orjson

    first = head.split(b"\n", 1)[0]
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("format") == "shadowdiff-capture"


def read_shadowdiff(path: str | os.PathLike[str], stats: Stats | None = None) -> Iterator[Exchange]:
    """Stream a shadowdiff capture (see `jsonl.read_capture`), counting exchanges in `stats`."""
    from shadowdiff.capture.jsonl import read_capture

    stats = {} if stats is None else stats
    stats.setdefault("exchanges", 0)
    for ex in read_capture(path):
        stats["exchanges"] += 1
        yield ex


def read_head(path: str | os.PathLike[str], size: int = SNIFF_BYTES) -> bytes:
    """The first `size` bytes of a file, gunzipped when it starts with the gzip magic.

    A truncated or corrupt gzip stream yields what could be decompressed: the reader reports
    the damage later, with its position.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(size)
            if not raw.startswith(b"\x1f\x8b"):
                return raw
            raw += f.read(4 * size)  # compressed input: read more to fill `size` output bytes
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, size)
    except zlib.error as exc:
        raise CaptureError(f"corrupt gzip data: {exc}", source=str(path),
                           position="byte 0") from exc


def _load(name: str, which: int) -> Callable[..., Any]:
    module_name, *functions = FORMATS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise PluginError(f"the {name!r} importer ({module_name}) is not available") from exc
        raise
    fn: Callable[..., Any] = getattr(module, functions[which])
    return fn


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format name (a key of FORMATS) of a file, judged by its content, not its name.

    >>> detect_format("captures/demo.jsonl.gz")  # doctest: +SKIP
    'shadowdiff'
    """
    head = read_head(path)
    if not head.strip():
        raise CaptureError("empty file: nothing to import", source=str(path))
    for name in FORMATS:
        try:
            sniff = _load(name, 0)
        except (PluginError, ImportError):
            continue  # an importer that cannot load cannot claim the file either
        if sniff(head):
            return name
    raise CaptureError("unknown capture format: not a shadowdiff capture, HAR, mitmproxy flow "
                       "file, pcap, mail log, DNS query log or access log (name one with --format "
                       "to see why)",
                       source=str(path), position="byte 0")


def read_exchanges(path: str | os.PathLike[str], fmt: str | None = None,
                   stats: Stats | None = None, *, secrets: Redactor | None = None,
                   **options: Any) -> Iterator[Exchange]:
    """Stream the exchanges of any supported capture file; `fmt` skips detection.

    Secrets are redacted as they come (shadowdiff.scrub): by `secrets`, or by the default
    policy when it is None; `scrub.KEEP_SECRETS` keeps them. The readers themselves (the
    compiled pcap hot path among them) never see the policy.
    `options` go to the format's reader as keywords (e.g. `ports=` for pcap).

    >>> for ex in read_exchanges("traffic.har"): ...  # doctest: +SKIP
    """
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise CaptureError(f"unknown format {name!r} (known: {', '.join(FORMATS)})",
                           source=str(path))
    reader = _load(name, 1)
    result: Iterator[Exchange] = reader(path, stats=stats, **options)
    redactor = Redactor() if secrets is None else secrets
    if redactor.keep:
        return result
    return map(redactor.exchange, result)


__all__ = ["FORMATS", "SNIFF_BYTES", "Stats", "detect_format", "read_exchanges",
           "read_head", "read_shadowdiff", "sniff_shadowdiff"]
