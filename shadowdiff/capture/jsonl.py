"""The capture format: JSON Lines (plain or gzip) with a versioned header line.

Every importer writes it and `run` reads it. The format is a contract, documented in
docs/capture-format.md: change both together.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from shadowdiff.errors import CaptureError
from shadowdiff.files import READ_ERRORS, open_maybe_gzip, truncated
from shadowdiff.model import HTTP_VERSIONS, Exchange, Failure, Outcome, Request, Response
from shadowdiff.scrub import Redactor

FORMAT_NAME = "shadowdiff-capture"
FORMAT_VERSION = 1


# -- encoding -----------------------------------------------------------------------------


def _encode_body(body: bytes) -> dict[str, str]:
    if not body:
        return {"body": ""}
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}


def _encode_response(resp: Response) -> dict[str, Any]:
    out: dict[str, Any] = {"status": resp.status, "headers": [list(h) for h in resp.headers]}
    out.update(_encode_body(resp.body))
    if resp.reason:
        out["reason"] = resp.reason
    if resp.elapsed_s:
        out["elapsed_s"] = round(resp.elapsed_s, 6)
    return out


def _encode_outcome(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Failure):
        return {"failure": {"kind": outcome.kind, "detail": outcome.detail,
                            "elapsed_s": round(outcome.elapsed_s, 6)}}
    return _encode_response(outcome)


def exchange_to_dict(ex: Exchange) -> dict[str, Any]:
    """The JSON object for one exchange line."""
    req = ex.request
    request: dict[str, Any] = {
        "protocol": req.protocol,
        "method": req.method,
        "target": req.target,
        "headers": [list(h) for h in req.headers],
    }
    request.update(_encode_body(req.body))
    if req.http_version != "HTTP/1.1":  # the default is not written: older files stay as they were
        request["http_version"] = req.http_version
    out: dict[str, Any] = {"id": ex.id, "request": request}
    if ex.recorded is not None:
        out["recorded"] = _encode_response(ex.recorded)
    if ex.observed:
        out["observed"] = {role: _encode_outcome(o) for role, o in ex.observed}
    out["source"] = ex.source
    out["seen_at"] = ex.seen_at
    if ex.count != 1:
        out["count"] = ex.count
    if ex.marks:
        out["marks"] = list(ex.marks)
    return out


# -- decoding -----------------------------------------------------------------------------


def _decode_body(obj: dict[str, Any]) -> bytes:
    body = obj.get("body", "")
    if not isinstance(body, str):
        raise ValueError("'body' must be a string")
    encoding = obj.get("body_encoding", "utf-8")
    if encoding == "base64":
        return base64.b64decode(body, validate=True)
    if encoding != "utf-8":
        raise ValueError(f"unknown body_encoding {encoding!r}")
    return body.encode("utf-8")


def _decode_headers(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    headers = obj.get("headers", [])
    if not isinstance(headers, list):
        raise ValueError("'headers' must be a list of [name, value] pairs")
    out = []
    for pair in headers:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(f"header {pair!r} is not a [name, value] pair of strings")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _decode_response(obj: dict[str, Any]) -> Response:
    status = obj["status"]
    if not isinstance(status, int):
        raise ValueError("'status' must be an integer")
    return Response(status=status, headers=_decode_headers(obj), body=_decode_body(obj),
                    elapsed_s=float(obj.get("elapsed_s", 0.0)), reason=str(obj.get("reason", "")))


def _decode_outcome(obj: dict[str, Any]) -> Outcome:
    if "failure" in obj:
        f = obj["failure"]
        return Failure(kind=str(f["kind"]), detail=str(f.get("detail", "")),
                       elapsed_s=float(f.get("elapsed_s", 0.0)))
    return _decode_response(obj)


def _decode_version(req: dict[str, Any]) -> str:
    version = req.get("http_version", "HTTP/1.1")
    if version not in HTTP_VERSIONS:
        raise ValueError(f"'http_version' must be one of {', '.join(HTTP_VERSIONS)}")
    return str(version)


def exchange_from_dict(obj: dict[str, Any]) -> Exchange:
    """Build an Exchange from one decoded line; raises KeyError/ValueError/TypeError."""
    req = obj["request"]
    request = Request(protocol=str(req.get("protocol", "http")), method=str(req["method"]),
                      target=str(req["target"]), headers=_decode_headers(req),
                      body=_decode_body(req), http_version=_decode_version(req))
    recorded = obj.get("recorded")
    observed = obj.get("observed") or {}
    return Exchange(
        id=str(obj["id"]),
        request=request,
        recorded=_decode_response(recorded) if recorded else None,
        source=str(obj.get("source", "")),
        seen_at=float(obj.get("seen_at", 0.0)),
        count=int(obj.get("count", 1)),
        observed=tuple((str(role), _decode_outcome(o)) for role, o in observed.items()),
        marks=tuple(str(m) for m in obj.get("marks", ())),
    )


# -- reading ------------------------------------------------------------------------------


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header object of a capture file."""
    src = str(path)
    try:
        with open_maybe_gzip(path) as f:
            first = f.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise CaptureError(f"cannot read: {exc}", source=src, position="line 1") from exc
    return _parse_header(first, src)


def _parse_header(line: bytes, src: str) -> dict[str, Any]:
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CaptureError(f"header is not valid JSON: {exc}", source=src, position="line 1") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CaptureError(f"not a shadowdiff capture (first line must be a header with "
                           f"format={FORMAT_NAME!r})", source=src, position="line 1")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise CaptureError(f"unsupported capture version {version!r} (this shadowdiff reads "
                           f"version {FORMAT_VERSION})", source=src, position="line 1")
    return header


def read_capture(path: str | os.PathLike[str]) -> Iterator[Exchange]:
    """Stream the exchanges of a capture file, one line at a time.

    >>> for ex in read_capture("captures/demo.jsonl"): ...  # doctest: +SKIP
    """
    src = str(path)
    for lineno, raw in capture_lines(path):
        yield parse_line(raw, src, lineno)


def capture_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each exchange line of a capture file, unparsed, after its
    header is checked: what a partitioned run's workers parse (pipeline/intake.py)."""
    src = str(path)
    lineno = 0
    try:
        with open_maybe_gzip(path) as f:
            lineno = 1
            _parse_header(f.readline(), src)
            for raw in f:
                lineno += 1
                if raw.strip():
                    yield lineno, raw
    except READ_ERRORS as exc:
        raise truncated(exc, src, lineno + 1) from exc


def parse_line(raw: bytes, src: str, lineno: int) -> Exchange:
    """One exchange line of capture `src`; a CaptureError names the line."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CaptureError(f"not valid JSON: {exc}", source=src, position=f"line {lineno}") from exc
    if not isinstance(obj, dict):
        raise CaptureError("an exchange line must be a JSON object", source=src,
                           position=f"line {lineno}")
    try:
        return exchange_from_dict(obj)
    except KeyError as exc:
        raise CaptureError(f"missing field {exc.args[0]!r}", source=src,
                           position=f"line {lineno}") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise CaptureError(f"invalid exchange: {exc}", source=src, position=f"line {lineno}") from exc


# -- writing ------------------------------------------------------------------------------


class CaptureWriter:
    """Streams exchanges to a capture file; the header (with stats) is written on close.

    Exchanges go to a temporary file beside the target first, so the header can carry the
    importer's final counts and a crash never leaves a half-written capture under the
    target name. With a `redactor` (shadowdiff.scrub) every exchange is redacted before it
    is written, and the header's `secrets` records what was chosen.

    >>> with CaptureWriter("out.jsonl.gz", source="har:x.har") as w:  # doctest: +SKIP
    ...     w.write(exchange)
    """

    def __init__(self, path: str | os.PathLike[str], *, source: str = "",
                 compress: bool | None = None, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.source = source
        self.redactor = redactor
        self.compress = self.path.suffix == ".gz" if compress is None else compress
        self.stats: dict[str, Any] = {}
        self.written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                   dir=self.path.parent)
        self._tmp_path = Path(tmp)
        self._tmp = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, exchange: Exchange) -> None:
        """Append one exchange."""
        if self.redactor is not None:
            exchange = self.redactor.exchange(exchange)
        self._tmp.write(orjson.dumps(exchange_to_dict(exchange)))
        self._tmp.write(b"\n")
        self.written += 1

    def write_all(self, exchanges: Iterable[Exchange]) -> int:
        """Append every exchange; returns how many."""
        for ex in exchanges:
            self.write(ex)
        return self.written

    def close(self) -> None:
        """Write the header and the exchanges under the target name, atomically."""
        self._tmp.close()
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created": time.time(),
                  "source": self.source, "exchanges": self.written, "stats": self._stats()}
        if self.redactor is not None:
            header["secrets"] = self.redactor.describe()
        final_tmp = self.path.with_name(f".{self.path.name}.final")
        opener = gzip.open if self.compress else open
        with opener(final_tmp, "wb") as out, open(self._tmp_path, "rb") as body:  # type: ignore[operator]
            out.write(orjson.dumps(header) + b"\n")
            shutil.copyfileobj(body, out, 1 << 20)
        os.replace(final_tmp, self.path)
        self._tmp_path.unlink()

    def _stats(self) -> dict[str, Any]:
        # an importer's error or quoted malformed line may hold a URL with a token in it
        if self.redactor is None:
            return self.stats
        return {k: self.redactor.text(v) if isinstance(v, str) else v
                for k, v in self.stats.items()}

    def abort(self) -> None:
        """Drop everything written so far."""
        self._tmp.close()
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_capture(path: str | os.PathLike[str], exchanges: Iterable[Exchange], *,
                  source: str = "", stats: dict[str, Any] | None = None) -> int:
    """Write a whole capture file; returns the number of exchanges written."""
    with CaptureWriter(path, source=source) as w:
        w.write_all(exchanges)
        w.stats.update(stats or {})
        return w.written
