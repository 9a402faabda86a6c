"""Endpoint templates: `GET /users/8812?x=1` -> `GET /users/{id}`.

Ranking joins the capture to the production logs on this template, so the capture side
and the log side must call the same function: `http_endpoint(method, target)`.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Id-like path segments. Order matters only for readability: any match makes it `{id}`.
_ID_PATTERNS = [
    re.compile(r"\d+"),                                                     # 8812
    re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    re.compile(r"[0-9a-fA-F]{16,}"),                                         # long hex, digests
    re.compile(r"(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}"),                        # short hex with a digit
    re.compile(r"\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?"),                           # dates
    re.compile(r"[^@/\s]+@[^@/\s]+\.[A-Za-z]{2,}"),                          # emails
    re.compile(r"(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}={0,2}"),  # tokens
    re.compile(r"[A-Za-z]{1,4}[-_]?\d{3,}"),                                 # ord-12345, A1234
]


def is_id_segment(segment: str) -> bool:
    """True when a path segment looks like an identifier rather than a name."""
    return any(p.fullmatch(segment) for p in _ID_PATTERNS)


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    """The template of a path (no query): id-like segments become `{id}`.

    >>> path_template("/users/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e")
    '/users/{id}/orders/{id}'
    """
    if not path.startswith("/"):
        return path  # `*` (OPTIONS) or an absolute URL we keep whole
    parts = path.split("/")
    return "/".join("{id}" if p and is_id_segment(p) else p for p in parts)


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
    """The endpoint key of an HTTP request: method plus path template.

    >>> http_endpoint("get", "/users/42?expand=1")
    'GET /users/{id}'
    """
    return f"{method.upper()} {path_template(split_target(target)[0])}"
