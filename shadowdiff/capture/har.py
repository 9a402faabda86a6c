"""Capture stage, HAR 1.2 importer: browser and proxy exports -> Exchange.

    file.har(.gz) ──> read_har() ──> Iterator[Exchange] ──> filters / CaptureWriter / replay

A HAR is one JSON document, so the whole file is parsed at once (with orjson) before the first
exchange comes out: memory grows with the file. HARs are browser-session sized, so that is
acceptable here; huge captures should come as pcap, flows or the capture format.

Entry N (0-based, its index in `log.entries`) becomes id `har-N`, source `har:{name}#N`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson

from shadowdiff.files import open_maybe_gzip
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange, Headers, Request, Response, http_version

# HAR writers put the "log" object first (and alone) at the top level.
_HAR_START = re.compile(rb'\A\{\s*"log"\s*:\s*\{')


def sniff(head: bytes) -> bool:
    """True when `head` (the first bytes, gunzipped) starts a HAR document.

    >>> sniff(b'{"log": {"version": "1.2", "entries": []}}')
    True
    """
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not _HAR_START.match(text):
        return False  # e.g. Docker's JSON logs start with {"log": "<a string>"}
    return any(k in text for k in (b'"entries"', b'"creator"', b'"version"'))


class _Entry:
    """Field access on one entry that turns a missing or mistyped field into a CaptureError."""

    def __init__(self, src: str, index: int) -> None:
        self.src = src
        self.index = index

    def fail(self, field: str, problem: str) -> CaptureError:
        return CaptureError(f"{problem}: log.entries[{self.index}].{field}", source=self.src,
                            position=f"entry {self.index}")

    def get(self, obj: dict[str, Any], field: str, kind: type | tuple[type, ...],
            required: bool = True, default: Any = None) -> Any:
        """obj[last part of field], checked for type; `field` is the dotted path for messages."""
        key = field.rsplit(".", 1)[-1]
        if key not in obj or obj[key] is None:
            if required:
                raise self.fail(field, "missing field")
            return default
        value = obj[key]
        # bool is an int subclass, and no HAR number field means true/false
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.fail(field, f"wrong type {type(value).__name__}")
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def read_har(path: str | os.PathLike[str], stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """Stream the exchanges of a HAR 1.2 file (plain or gzip).

    >>> for ex in read_har("checkout.har"): print(ex.request.method, ex.request.target)  # doctest: +SKIP
    """
    src = str(path)
    stats = {} if stats is None else stats
    for key in ("entries", "exchanges", "no_response", "body_missing"):
        stats.setdefault(key, 0)
    entries = _load_entries(src)
    name = Path(src).name
    for index, entry in enumerate(entries):
        stats["entries"] += 1
        ex = _exchange(entry, _Entry(src, index), name)
        stats["exchanges"] += 1
        stats["no_response"] += "no_response" in ex.marks
        stats["body_missing"] += any(m.endswith("body_missing") for m in ex.marks)
        yield ex


LOG_KEY = b'"log"'


def _load_entries(src: str) -> list[Any]:
    try:
        with open_maybe_gzip(src) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise CaptureError(f"cannot read ({exc.__class__.__name__}: {exc}); the file is "
                           "truncated or corrupt", source=src) from exc
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CaptureError(f"not valid JSON: {exc.msg}", source=src,
                           position=f"line {exc.lineno}") from exc
    log = doc.get("log") if isinstance(doc, dict) else None
    if not isinstance(log, dict):
        raise CaptureError("not a HAR file: missing field log", source=src,
                           position=f"line {_line_of(data, b'{')}")
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise CaptureError("not a HAR file: missing field log.entries (a list)", source=src,
                           position=f"line {_line_of(data, LOG_KEY)}")
    return entries


def _line_of(data: bytes, needle: bytes) -> int:
    """The line where `needle` first occurs (1 if nowhere): where the object that lacks a
    field begins, so the error says where to look."""
    at = data.find(needle)
    return data.count(b"\n", 0, at) + 1 if at >= 0 else 1


def _exchange(entry: Any, e: _Entry, name: str) -> Exchange:
    if not isinstance(entry, dict):
        raise CaptureError(f"log.entries[{e.index}] is not an object", source=e.src,
                           position=f"entry {e.index}")
    marks: list[str] = []
    request = _request(e.get(entry, "request", dict), e, marks)
    recorded = _response(entry, e, marks)
    error = entry["response"].get("_error") if isinstance(entry.get("response"), dict) else None
    if isinstance(error, str) and error:
        marks.append(f"error:{error}")  # custom field written by Chrome and mitmproxy
    started = e.get(entry, "startedDateTime", str, required=False)
    seen_at = _parse_time(started, e) if started else 0.0
    return Exchange(id=f"har-{e.index}", request=request, recorded=recorded,
                    source=f"har:{name}#{e.index}", seen_at=seen_at, marks=tuple(marks))


def _parse_time(value: str, e: _Entry) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise e.fail("startedDateTime", f"not an ISO 8601 date ({value!r})") from exc


def _headers(obj: dict[str, Any], field: str, e: _Entry) -> tuple[Headers, str | None]:
    """Ordered pairs without HTTP/2 pseudo-headers, plus the `:authority` value if any."""
    out: list[tuple[str, str]] = []
    authority = None
    for i, item in enumerate(e.get(obj, f"{field}.headers", list, required=False, default=[])):
        where = f"{field}.headers[{i}]"
        if not isinstance(item, dict):
            raise e.fail(where, "not an object")
        hname = e.get(item, f"{where}.name", str)
        value = e.get(item, f"{where}.value", str, required=False, default="")
        if hname.startswith(":"):
            if hname == ":authority":
                authority = value
            continue  # pseudo-headers are HTTP/2 framing, not headers a server sees
        out.append((hname, value))
    return tuple(out), authority


def _split_url(url: str) -> tuple[str, str]:
    """(authority, target) of an absolute URL; the fragment never reaches a server."""
    url = url.split("#", 1)[0]
    scheme_sep = url.find("://")
    if scheme_sep < 0:
        return "", url if url.startswith("/") else "/" + url
    rest = url[scheme_sep + 3:]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    authority = authority.rsplit("@", 1)[-1]  # drop user:password@
    if not target.startswith("/"):
        target = "/" + target
    return authority, target


def _request(req: dict[str, Any], e: _Entry, marks: list[str]) -> Request:
    method = e.get(req, "request.method", str)
    url = e.get(req, "request.url", str)
    headers, authority = _headers(req, "request", e)
    url_authority, target = _split_url(url)
    if not any(k.lower() == "host" for k, _ in headers) and (authority or url_authority):
        # Replay needs the original Host; HTTP/2 HARs carry it only as :authority or the URL.
        headers = (("Host", authority or url_authority),) + headers
    body = _request_body(req, e, marks)
    version = req.get("httpVersion")  # informative in HAR: a tool's odd value is HTTP/1.1
    return Request(protocol="http", method=method.upper(), target=target, headers=headers,
                   body=body,
                   http_version=http_version(version if isinstance(version, str) else None))


def _request_body(req: dict[str, Any], e: _Entry, marks: list[str]) -> bytes:
    post = e.get(req, "request.postData", dict, required=False)
    if post is None:
        if e.get(req, "request.bodySize", (int, float), required=False, default=0) > 0:
            marks.append("request_body_missing")
        return b""
    text = e.get(post, "request.postData.text", str, required=False)
    if text is not None:
        encoding = e.get(post, "request.postData.encoding", str, required=False, default="")
        return _decode_text(text, encoding, "request.postData", e)
    params = e.get(post, "request.postData.params", list, required=False)
    if params:
        # The spec lets writers give form posts as params only; rebuild the urlencoded body.
        pairs = [(str(p.get("name", "")), str(p.get("value", ""))) for p in params
                 if isinstance(p, dict)]
        return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()
    marks.append("request_body_missing")
    return b""


def _decode_text(text: str, encoding: str, field: str, e: _Entry) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise e.fail(f"{field}.text", "invalid base64") from exc
    # HAR text is Unicode; surrogates (from lone \ud800 escapes) cannot be real body bytes
    return text.encode("utf-8", errors="replace")


def _response(entry: dict[str, Any], e: _Entry, marks: list[str]) -> Response | None:
    resp = e.get(entry, "response", dict, required=False)
    status = e.get(resp, "response.status", int) if resp is not None else 0
    if resp is None or status == 0:
        # Browsers write status 0 for blocked, aborted or failed requests.
        marks.append("no_response")
        return None
    headers, _ = _headers(resp, "response", e)
    content = e.get(resp, "response.content", dict, required=False, default={})
    text = e.get(content, "response.content.text", str, required=False)
    if text is None:
        body = b""
        if content.get("size", -1) != 0:
            marks.append("body_missing")
    else:
        encoding = e.get(content, "response.content.encoding", str, required=False, default="")
        body = _decode_text(text, encoding, "response.content", e)
        if any(k.lower() == "content-encoding" for k, _ in headers):
            # HAR holds the decoded body: keeping the header would make lift decode it twice.
            headers = tuple(h for h in headers if h[0].lower() != "content-encoding")
            marks.append("content_decoded")
    elapsed = e.get(entry, "time", (int, float), required=False, default=0.0)
    reason = e.get(resp, "response.statusText", str, required=False, default="")
    return Response(status=status, headers=headers, body=body,
                    elapsed_s=max(float(elapsed), 0.0) / 1000.0, reason=reason)


__all__ = ["read_har", "sniff"]
