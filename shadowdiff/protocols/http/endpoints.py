"""Endpoint templates: `GET /users/8812?x=1` -> `GET /users/{id}`.

Ranking joins the capture to the production logs on this template, so the capture side
and the log side must call the same function. Three sources, most trusted first:

    routes (config, OpenAPI) ──> learned id positions (log cardinality) ──> inference
    RouteTable.match()           learn_id_segments()                        http_endpoint()

This module is the inference; `routes.py` the user's and OpenAPI routes; `templater.py`
the learned positions and the `Templater` that bundles the three (with no routes and no
learned positions it is exactly `http_endpoint`, the default everywhere).
docs/endpoints.md explains the rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote


EndpointFn = Callable[[str, str], str]

HEX = "[0-9a-fA-F]"
UUID = f"{HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}}"
# Whole-segment id shapes. The first three (digits, UUID, long hex) must stay ids
# unconditionally: usage/tally.py folds them before calling us (`_ALWAYS_ID`).
_ID = re.compile("|".join([
    r"-?\d+",                                                  # 8812, -3
    UUID,                                                     # 0f8fad5b-d9cb-...
    f"{HEX}{{16,}}",                                          # digests, object ids
    f"(?=[0-9a-fA-F]*\\d){HEX}{{8,}}",                        # short hex with a digit
    r"-?\d+\.\d{3,}",                                          # 48.8566 (not 1.0, 2.10)
    r"\d{4}-\d{2}(?:-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)?",
    r"[^@/\s]+@[^@/\s]+\.[A-Za-z]{2,}",                        # emails
    r"[A-Za-z]{1,4}[-_]\d{3,}|[A-Za-z]{1,4}\d{4,}|[A-Z]{1,4}\d{3,}",  # ord-123, x1000, A123
    r"[a-z]{2,8}_(?=[a-z]*[A-Z0-9])[A-Za-z0-9]{10,}",          # cus_NffrFeUfNV2Hib
]))
_VERSION = re.compile(r"[vV]\d+(?:\.\d+)*")                     # v1, v2.1: names, not ids
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/.~]{16,}={0,2}")
_CHUNK = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")         # Get, User, HTTP, 2024
_WITH_EXT = re.compile(r"(.+)\.([A-Za-z][A-Za-z0-9]{0,4})")     # 42.json, <sha>.png
_HASHED = re.compile(r"(.+)\.((?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})\.([A-Za-z][A-Za-z0-9]{0,4})")


def _looks_random(segment: str) -> bool:
    """A base64/base62/base36-like token, judged by how it breaks into runs.

    Names break into few, long runs: words of 3+ letters and one or two numbers
    (`iphone-15-pro-max-256gb`, `GetUserProfileV2`). Tokens break into short letter runs
    and many digit runs. Measured: 1% of 32-char random tokens (and 10% of 16-char ones)
    read as names; the cardinality learning catches those.
    """
    if not _TOKEN.fullmatch(segment):
        return False
    chunks = _CHUNK.findall(segment)
    letters = [len(c) for c in chunks if not c[0].isdigit()]
    numbers = len(chunks) - len(letters)
    if not letters:
        return False
    mean = sum(letters) / len(letters)
    if numbers:
        return numbers >= 3 or mean < 3.0
    return len(segment) >= 20 and mean < 2.2


def _is_id(segment: str, tokens: bool = True) -> bool:
    if _VERSION.fullmatch(segment):
        return False
    return bool(_ID.fullmatch(segment)) or (tokens and _looks_random(segment))


def is_id_segment(segment: str) -> bool:
    """True when a whole path segment looks like an identifier rather than a name.

    >>> is_id_segment("8812"), is_id_segment("v2"), is_id_segment("en-US")
    (True, False, False)
    """
    return bool(segment) and (_is_id(segment) or _is_id(unquote(segment)))


@lru_cache(maxsize=65536)
def segment_template(segment: str) -> str:
    """`{id}`, `{id}.json` (an id with an extension), `main.{id}.js` (a hashed asset
    name), or the segment itself. A file name is never taken whole for a random token."""
    m = _WITH_EXT.fullmatch(segment)
    if m is None:
        return "{id}" if is_id_segment(segment) else segment
    stem = m.group(1)
    if is_id_segment(stem) if "." not in stem else _is_id(unquote(stem), tokens=False):
        return "{id}." + m.group(2)
    hashed = _HASHED.fullmatch(segment)
    if hashed:
        return f"{hashed.group(1)}.{{id}}.{hashed.group(3)}"
    return "{id}" if _is_id(unquote(segment), tokens=False) else segment


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    """The template of a path (no query): id-like segments become `{id}`.

    >>> path_template("/users/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e")
    '/users/{id}/orders/{id}'
    """
    if not path.startswith("/"):
        return path  # `*` (OPTIONS) or an absolute URL we keep whole
    return "/".join(segment_template(p) if p else p for p in path.split("/"))


def split_target(target: str) -> tuple[str, str]:
    """Split a request target into path and query (without the `?`)."""
    if target.startswith(("http://", "https://")):
        # absolute-form (proxy requests): drop scheme and authority
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    return path or "/", query


def http_endpoint(method: str, target: str) -> str:
    """The endpoint key of an HTTP request: method plus path template (inference only).

    >>> http_endpoint("get", "/users/42?expand=1")
    'GET /users/{id}'
    """
    return f"{method.upper()} {path_template(split_target(target)[0])}"
