"""HTTP messages: decoding what the wire hides, and lifting a response body into a tree.

Lifting decodes what the wire hides (content-encoding, charset) so that two servers that
compress differently still compare equal, and parses JSON so it compares structurally.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any

import orjson


_JSON_TYPE = re.compile(r"^application/(.+\+)?json|^text/json", re.I)
_TEXT_TYPE = re.compile(r"^text/|^application/(.+\+)?xml|^application/(x-)?javascript|"
                        r"^application/x-www-form-urlencoded", re.I)
# Hop-by-hop headers describe the captured connection, not the request (RFC 9110 7.6.1);
# Content-Length is recomputed from the body we send.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "expect",
})
_CHARSET = re.compile(r"charset=\"?([\w.:-]+)", re.I)


#: Decoded bodies stop here unless the run says otherwise (`--max-body-bytes`).
MAX_DECODED_BYTES = 10 * 1024 * 1024
_STEP = 1 << 16


class BodyTooLarge(ValueError):
    """The decoded body would pass the limit (a decompression bomb, or just too big)."""


def decode_content(body: bytes, encoding: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br; stacked in order). Raises ValueError, and
    BodyTooLarge as soon as the output passes `limit`: decoding streams, so a 1 GB bomb
    never takes more than `limit` and one step of memory."""
    if not encoding or not body:
        return body
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, limit)
        elif coding == "deflate":
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except zlib.error:  # raw deflate without the zlib wrapper, as some servers send
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        elif coding == "br":
            body = _unbrotli(body, limit)
        elif coding != "identity":
            raise ValueError(f"unsupported content-encoding {coding!r}")
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    while data:
        out += d.decompress(data, _STEP)
        if len(out) > limit:
            raise BodyTooLarge(f"decoded body passes {limit} bytes")
        data = d.unconsumed_tail
    out += d.flush()
    if not d.eof:
        raise zlib.error("incomplete or truncated stream")
    if len(out) > limit:
        raise BodyTooLarge(f"decoded body passes {limit} bytes")
    return bytes(out)


def _unbrotli(data: bytes, limit: int) -> bytes:
    # brotlicffi, not brotli: only 1.2's decoder takes an output limit, and mitmproxy 11
    # pins brotli below it.
    import brotlicffi
    d = brotlicffi.Decompressor()
    out = bytearray(d.process(data, output_buffer_limit=_STEP))
    while not d.is_finished() and len(out) <= limit:
        chunk = d.process(b"", output_buffer_limit=_STEP)
        if not chunk and d.can_accept_more_data():
            raise ValueError("incomplete brotli stream")
        out += chunk
    if len(out) > limit:
        raise BodyTooLarge(f"decoded body passes {limit} bytes")
    return bytes(out)


def header_dict(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Lower-case names; repeated headers joined as HTTP allows (`, `)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def binary_leaf(body: bytes) -> dict[str, Any]:
    """How a binary body appears in the tree: its digest and length."""
    return {"$binary": {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}}


def lift_body(body: bytes, content_type: str, content_encoding: str | None,
              limit: int = MAX_DECODED_BYTES) -> Any:
    """Decoded, parsed body: JSON value, text, or a binary digest leaf; a body that decodes
    past `limit` is the leaf `{"$too_large": limit, "$binary": ...}` of the wire bytes."""
    try:
        raw = decode_content(body, content_encoding, limit)
    except BodyTooLarge:
        return {"$too_large": limit, **binary_leaf(body)}
    except Exception as exc:  # noqa: BLE001 - zlib, brotli and ValueError: all mean undecodable
        return {"$undecodable": f"{content_encoding}: {exc.__class__.__name__}", **binary_leaf(body)}
    if not raw:
        return ""
    if _JSON_TYPE.search(content_type):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # a broken JSON body is compared as text: the breakage is the news
    charset_match = _CHARSET.search(content_type)
    charset = charset_match.group(1) if charset_match else "utf-8"
    try:
        text = raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return binary_leaf(raw)
    # In UTF-8 a NUL character is a NUL byte: memchr over the bytes, not a scan of the str.
    nul = b"\x00" in raw if charset.lower() in ("utf-8", "utf8") else "\x00" in text
    if nul and not _TEXT_TYPE.search(content_type):
        return binary_leaf(raw)
    return text

