"""Capture stage, mitmproxy flow importer: `mitmdump -w` files -> Exchange.

    flows.mitm(.gz) ──> read_mitm() ──> Iterator[Exchange] ──> filters / CaptureWriter / replay

Flows are read one at a time with mitmproxy's own reader (`FlowReader.stream()`), so memory
stays flat however long the recording. Bodies are taken as `raw_content`: the bytes on the
wire, still content-encoded, which is what `Response.body` promises.

Flow N (0-based, counting every flow in the file) becomes id `mitm-N`, source `mitm:{name}#N`.
Needs the `mitm` extra (mitmproxy); without it reading raises PluginError.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shadowdiff.files import open_maybe_gzip
from shadowdiff.errors import CaptureError, PluginError
from shadowdiff.model import Exchange, Headers, Request, Response, http_version

# A flow file is a sequence of tnetstring dicts: `LEN:` then the first key, a short name such
# as `version` or `websocket`, as a tnetstring `LEN:name` tagged `;` (str) or `,` (bytes).
_TNET_START = re.compile(rb"\A(\d{1,12}):(\d{1,2}):([A-Za-z_]{1,64})[,;]")


def sniff(head: bytes) -> bool:
    """True when `head` looks like a mitmproxy flow file (a tnetstring dict).

    >>> sniff(b"29:7:version;2:20#4:type;4:http;}")
    True
    """
    # The exact key length check rules out look-alikes such as an IPv6 access log line
    # ("2001:4860:4860::8888 - - ..."), which also starts with digits and colons.
    m = _TNET_START.match(head)
    if not m or int(m.group(2)) != len(m.group(3)):
        return False
    outer_tag = len(m.group(1)) + 1 + int(m.group(1))
    return not (outer_tag < len(head) and head[outer_tag:outer_tag + 1] != b"}")


def _import_mitmproxy() -> Any:
    try:
        from mitmproxy import exceptions, http, io
    except ImportError as exc:
        raise PluginError("reading mitmproxy flow files needs mitmproxy: "
                          "pip install shadowdiff[mitm]") from exc
    return exceptions, http, io


def read_mitm(path: str | os.PathLike[str], stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """Stream the HTTP flows of a mitmproxy flow file as exchanges; other flows are counted.

    >>> for ex in read_mitm("flows.mitm"): print(ex.request.method, ex.marks)  # doctest: +SKIP
    """
    exceptions, http, io = _import_mitmproxy()
    src = str(path)
    stats = {} if stats is None else stats
    for key in ("flows", "exchanges", "skipped", "no_response", "errors"):
        stats.setdefault(key, 0)
    name = Path(src).name
    try:
        with open_maybe_gzip(path) as f:
            if not sniff(f.read(64)):
                raise CaptureError("not a mitmproxy flow file (expected a tnetstring)",
                                   source=src, position="byte 0")
            f.seek(0)
            for index, flow in enumerate(_flows(f, io.FlowReader(f), exceptions, src)):
                stats["flows"] += 1
                if not isinstance(flow, http.HTTPFlow):
                    stats["skipped"] += 1  # TCP, UDP and DNS flows have no HTTP request to replay
                    continue
                ex = _exchange(flow, index, name)
                stats["exchanges"] += 1
                stats["no_response"] += ex.recorded is None
                stats["errors"] += any(m.startswith("error:") for m in ex.marks)
                yield ex
    except (OSError, EOFError, zlib.error) as exc:
        raise CaptureError(f"cannot read ({exc.__class__.__name__}: {exc}); the file is "
                           "truncated or corrupt", source=src) from exc


# Besides its own FlowReadException, mitmproxy's reader lets many exceptions escape on damaged
# input: a well-formed tnetstring that is not a valid flow fails inside Flow.from_state /
# migrate_flow with ValueError, KeyError, TypeError or even AssertionError. At this boundary
# any of them means "damaged file here", so all become a CaptureError with the offset.
_DAMAGE = (Exception,)


def _flows(f: IO[bytes], reader: Any, exceptions: Any, src: str) -> Iterator[Any]:
    """The reader's flows; damage becomes a CaptureError at the damaged flow's byte offset."""
    stream = iter(reader.stream())
    offset = 0
    while True:
        try:
            flow = next(stream)
        except StopIteration:
            return
        except (exceptions.FlowReadException, *_DAMAGE) as exc:
            detail = str(exc.__cause__ or exc)
            raise CaptureError(f"corrupt or truncated flow file ({detail})", source=src,
                               position=f"byte {offset}") from exc
        yield flow
        offset = f.tell()  # tnetstring.load reads exactly one flow: the next starts here


def flow_text(raw: bytes) -> str:
    # Header bytes are usually ASCII; latin-1 keeps any other byte, one character each.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def flow_headers(fields: Any) -> Headers:
    """mitmproxy header fields as ordered (name, value) pairs, duplicates kept."""
    return tuple((flow_text(k), flow_text(v)) for k, v in fields)


def _exchange(flow: Any, index: int, name: str) -> Exchange:
    req = flow.request
    marks: list[str] = []
    headers = flow_headers(req.headers.fields)
    if not any(k.lower() == "host" for k, _ in headers):
        host = req.host_header or req.pretty_host  # HTTP/2 keeps it in :authority
        if host:
            headers = (("Host", host),) + headers
    method = flow_text(req.data.method)
    target = flow_text(req.data.path) or (req.authority if method == "CONNECT" else "/")
    body = req.raw_content
    if body is None:
        marks.append("request_body_missing")
    recorded = _response(flow, marks)
    if flow.error is not None:
        marks.append(f"error:{flow.error.msg}")
    return Exchange(
        id=f"mitm-{index}",
        request=Request(protocol="http", method=method, target=target, headers=headers,
                        body=body or b"", http_version=http_version(flow_text(req.data.http_version))),
        recorded=recorded, source=f"mitm:{name}#{index}",
        seen_at=float(req.timestamp_start or 0.0), marks=tuple(marks))


def _response(flow: Any, marks: list[str]) -> Response | None:
    resp = flow.response
    if resp is None:
        marks.append("no_response")
        return None
    body = resp.raw_content
    if body is None:
        marks.append("body_missing")  # mitmproxy streamed it through without keeping it
    start, end = flow.request.timestamp_start, resp.timestamp_end
    elapsed = end - start if start and end and end >= start else 0.0
    return Response(status=int(resp.status_code), headers=flow_headers(resp.headers.fields),
                    body=body or b"", elapsed_s=elapsed, reason=flow_text(resp.data.reason))


__all__ = ["read_mitm", "sniff"]
