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


def decode_content(body: bytes, encoding: str | None) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br; stacked in order). Raises ValueError."""
    if not encoding or not body:
        return body
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:  # raw deflate without the zlib wrapper, as some servers send
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif coding == "br":
            import brotli
            body = brotli.decompress(body)
        elif coding != "identity":
            raise ValueError(f"unsupported content-encoding {coding!r}")
    return body


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


def lift_body(body: bytes, content_type: str, content_encoding: str | None) -> Any:
    """Decoded, parsed body: JSON value, text, or a binary digest leaf."""
    try:
        raw = decode_content(body, content_encoding)
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

