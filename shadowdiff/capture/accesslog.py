"""Capture stage, access-log importer: each logged GET/HEAD becomes a replayable Exchange.

    access.log(.gz) ──> read_access_log() ──> Iterator[Exchange] ──> filters / CaptureWriter

For users who have nothing but logs. Logs carry no bodies and no request headers beyond a
few fields, so only GET and HEAD are replayable; other methods are counted as skipped. Reads
line by line (streaming, gzip-aware). Malformed lines are counted, with the first one quoted
in `stats`, and never stop the import. (`shadowdiff.rank.usage` is the fast aggregate reader of
the same logs; this one builds a full Exchange per line.)

Formats: NCSA common and combined (nginx, Apache), and JSON lines with either a `request`
line or method and path/URI fields (nginx `escape=json`, Caddy's nested `request` object).
Line N (1-based) becomes id `log-N`, source `log:{name}#N`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from shadowdiff.files import READ_ERRORS, open_maybe_gzip, truncated
from shadowdiff.model import Exchange, Request

REPLAYABLE = frozenset({"GET", "HEAD"})


def _quoted(name: str) -> str:
    """A double-quoted log field whose content may hold backslash escapes (Apache `\\"`)."""
    return rf'"(?P<{name}>(?:[^"\\]|\\.)*)"'


# host ident user [time] "request" status size ["referer" "user-agent"] [anything else]
_CLF = re.compile(
    rf'(?P<remote>\S+) \S+ (?:\S+|"[^"]*") \[(?P<time>[^\]]+)\] {_quoted("request")} '
    rf'(?P<status>\d{{3}}|-) (?P<size>\d+|-)(?: {_quoted("referer")} {_quoted("ua")})?'
)
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*\Z")


class _Malformed(ValueError):
    """A line that cannot become an exchange; its message goes into stats."""


def sniff(head: bytes) -> bool:
    """True when the first complete line of `head` is a common/combined or JSON access log line.

    >>> sniff(b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\\n')
    True
    """
    for raw in head.split(b"\n")[:5]:
        line = raw.strip()
        if not line:
            continue
        text = line.decode("utf-8", errors="replace")
        if text.startswith("{"):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                return False
            return isinstance(obj, dict) and _json_request(obj) is not None
        return _CLF.match(text) is not None
    return False


def read_access_log(path: str | os.PathLike[str],
                    stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """Stream the replayable requests of an access log (plain or gzip) as exchanges.

    >>> for ex in read_access_log("access.log.gz"): print(ex.request.target)  # doctest: +SKIP
    """
    src = str(path)
    stats = {} if stats is None else stats
    for key in ("lines", "exchanges", "skipped", "malformed"):
        stats.setdefault(key, 0)
    skipped_methods: dict[str, int] = stats.setdefault("skipped_methods", {})
    name = Path(src).name
    lineno = 0
    try:
        with open_maybe_gzip(path) as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                stats["lines"] += 1
                try:
                    ex = _exchange(raw, lineno, name)
                except _Malformed as exc:
                    stats["malformed"] += 1
                    stats.setdefault("malformed_example", f"line {lineno}: {exc}")
                    continue
                if ex.request.method not in REPLAYABLE:
                    stats["skipped"] += 1
                    method = ex.request.method[:20]
                    skipped_methods[method] = skipped_methods.get(method, 0) + 1
                    continue
                stats["exchanges"] += 1
                yield ex
    except READ_ERRORS as exc:
        raise truncated(exc, src, lineno + 1) from exc


def _exchange(raw: bytes, lineno: int, name: str) -> Exchange:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = raw.decode("latin-1").strip()  # some clients send raw bytes; logs keep them
    fields = _parse_json(text) if text.startswith("{") else _parse_clf(text)
    method, target, host = _request_line(fields)
    headers = [("Host", host)] if host else []
    for header, key in (("User-Agent", "ua"), ("Referer", "referer")):
        value = fields.get(key)
        if value and value != "-":
            headers.append((header, value))
    return Exchange(id=f"log-{lineno}",
                    request=Request(protocol="http", method=method, target=target,
                                    headers=tuple(headers)),
                    source=f"log:{name}#{lineno}", seen_at=_timestamp(fields.get("time")))


def _unescape(value: str) -> str:
    """Undo nginx `\\xHH` and Apache `\\"` escapes."""
    if "\\" not in value:
        return value
    out = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), value)
    try:
        # \xHH escapes stand for bytes: re-read them as UTF-8 when they form valid UTF-8
        return out.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return out


def _parse_clf(text: str) -> dict[str, Any]:
    m = _CLF.match(text)
    if m is None:
        raise _Malformed(f"not a common/combined log line: {text[:120]!r}")
    fields: dict[str, Any] = {"request": _unescape(m.group("request")), "time": m.group("time")}
    if m.group("ua") is not None:
        fields["ua"] = _unescape(m.group("ua"))
        fields["referer"] = _unescape(m.group("referer"))
    return fields


# JSON log keys, in order of preference, for each thing we need.
_JSON_KEYS = {
    "method": ("method", "request_method", "http_method", "verb"),
    "target": ("request_uri", "target", "uri", "path", "url"),
    "query": ("query", "args", "query_string"),
    "host": ("host", "http_host", "server_name", "vhost"),
    "ua": ("user_agent", "http_user_agent", "userAgent", "ua"),
    "referer": ("referer", "http_referer", "referrer"),
    "time": ("time_iso8601", "time_local", "timestamp", "@timestamp", "time", "ts", "msec"),
}


def _pick(obj: dict[str, Any], what: str) -> Any:
    for key in _JSON_KEYS[what]:
        value = obj.get(key)
        if value not in (None, "", "-"):
            return value
    return None


def _json_request(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of one JSON log object, or None when it names no request."""
    inner = obj.get("request")
    if isinstance(inner, dict):  # Caddy: {"request": {"method", "host", "uri", "headers"}, "ts"}
        merged = {**obj, **inner}
        hdrs = inner.get("headers")
        if isinstance(hdrs, dict):
            for key, header in (("ua", "User-Agent"), ("referer", "Referer")):
                values = hdrs.get(header)
                if isinstance(values, list) and values:
                    merged.setdefault(_JSON_KEYS[key][0], values[0])
        obj = merged
    fields = {what: _pick(obj, what) for what in _JSON_KEYS}
    if isinstance(obj.get("request"), str):
        fields["request"] = obj["request"]
    elif fields["method"] is None or fields["target"] is None:
        return None
    return {k: v for k, v in fields.items() if v is not None}


def _parse_json(text: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _Malformed(f"not valid JSON ({exc.msg}): {text[:120]!r}") from exc
    fields = _json_request(obj) if isinstance(obj, dict) else None
    if fields is None:
        raise _Malformed("JSON line names no request (needs `request`, or a method and a "
                         "path/uri/url field)")
    for key in ("ua", "referer", "host"):
        if key in fields and not isinstance(fields[key], str):
            fields[key] = str(fields[key])
    return fields


def _request_line(fields: dict[str, Any]) -> tuple[str, str, str | None]:
    """(method, target, host) from a request line or from separate JSON fields."""
    host = fields.get("host")
    if "request" in fields:
        parts = str(fields["request"]).split(" ")
        if len(parts) not in (2, 3) or not _METHOD.match(parts[0]) or not parts[1]:
            raise _Malformed(f"not an HTTP request line: {str(fields['request'])[:120]!r}")
        method, target = parts[0], parts[1]
    else:
        method, target = str(fields["method"]).upper(), fields["target"]
        if not isinstance(target, str):
            raise _Malformed(f"path/uri field is not a string: {target!r:.60}")
        query = fields.get("query")
        if query and "?" not in target:
            target = f"{target}?{query}"
        if not _METHOD.match(method):
            raise _Malformed(f"not an HTTP method: {method[:40]!r}")
    if target.startswith(("http://", "https://")):
        # absolute-form (proxy logs): the authority is the Host, the rest the target
        authority, _, rest = target.split("://", 1)[1].partition("/")
        host = host or authority
        target = "/" + rest
    if not target.startswith("/") and target != "*":
        raise _Malformed(f"not an origin-form request target: {target[:120]!r}")
    return method, target, host


def _timestamp(value: Any) -> float:
    if value is None:
        return 0.0
    text = str(value)
    seconds: float | None
    try:
        seconds = float(text)  # epoch seconds or milliseconds, e.g. nginx $msec
    except ValueError:
        seconds = _parse_date(text)
    if seconds is None or not math.isfinite(seconds):
        raise _Malformed(f"unparseable timestamp {text[:60]!r}")
    return seconds / 1000.0 if seconds > 1e11 else seconds  # epoch milliseconds


@lru_cache(maxsize=4096)
def _parse_date(text: str) -> float | None:
    """Epoch seconds of a CLF (`10/Oct/2000:13:55:36 -0700`) or ISO 8601 date; cached since
    thousands of lines share each second."""
    for parse in (lambda t: datetime.strptime(t, "%d/%b/%Y:%H:%M:%S %z"), datetime.fromisoformat):
        try:
            return parse(text).timestamp()
        except (ValueError, OverflowError, OSError):
            continue
    return None


__all__ = ["REPLAYABLE", "read_access_log", "sniff"]
