"""JSON equality as the diff means it, and divergence values as reports show them.

Equality is JSON's, slightly stricter than Python's: `true` and `1` differ, `1` and `1.0`
do not, NaN equals NaN. Values put in a divergence are plain JSON values, cut to
MAX_VALUE_CHARS, containers too large to quote summarized, binaries labelled by digest.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

#: Longest string quoted in a divergence.
MAX_VALUE_CHARS = 500
#: A key's value on the side that does not have the key.
ABSENT: Any = object()
_SORTED = orjson.OPT_SORT_KEYS

def json_same(a: Any, b: Any) -> bool:
    """JSON equality: Python's `==`, made strict about booleans versus numbers."""
    if a is b:
        return True
    if a != b:
        return False
    t = type(a)
    if t is dict or t is list:
        # `==` already said equal; sorted-key JSON bytes tell `true` from `1` at C speed
        # (and `1` from `1.0`, which the descent then finds equal after all).
        try:
            return orjson.dumps(a, option=_SORTED) == orjson.dumps(b, option=_SORTED)
        except (TypeError, ValueError):
            return strict_same(a, b)
    return (t is bool) == (type(b) is bool)


def strict_same(a: Any, b: Any) -> bool:
    """The slow twin of `json_same`, for values orjson cannot serialize (huge ints, ...)."""
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(strict_same(v, b[k]) for k, v in a.items())
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(strict_same(x, y) for x, y in zip(a, b))
    return json_type(a) == json_type(b) and leaf_same(a, b)


def leaf_same(a: Any, b: Any) -> bool:
    if a == b:
        return (type(a) is bool) == (type(b) is bool)
    return a != a and b != b  # both NaN


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "binary" if binary(value) is not None else "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def plain(value: Any) -> Any:
    """A JSON-serializable, bounded copy of a value, for `Divergence.old` / `.new`."""
    if value is None or type(value) in (bool, int):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return cut(value, MAX_VALUE_CHARS)
    if isinstance(value, (dict, list)):
        found = binary(value)
        if found is not None:
            return binary_label(found)
        try:
            data = orjson.dumps(value)
        except (TypeError, ValueError):
            data = b""
        if data and len(data) <= MAX_VALUE_CHARS:
            return orjson.loads(data)  # a copy: the divergence must not alias the tree
        return summarized(value)
    return cut(repr(value), MAX_VALUE_CHARS)


def plain_or_none(value: Any) -> Any:
    return None if value is ABSENT else plain(value)


def display(value: Any) -> Any:
    """For type_changed: the value itself for a leaf, the type name for a container."""
    found = binary(value)
    if found is not None:
        return binary_label(found)
    if isinstance(value, (dict, list)):
        return json_type(value)
    return plain(value)


def summarized(value: dict[Any, Any] | list[Any]) -> str:
    if isinstance(value, dict):
        return f"object ({len(value)} keys)"
    return f"array ({len(value)} items)"


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars]"


def binary(value: Any) -> tuple[str, Any] | None:
    """(sha256, length) of a lifted binary body, else None."""
    if type(value) is dict and len(value) == 1:
        inner = value.get("$binary")
        if isinstance(inner, dict):
            return str(inner.get("sha256", "")), inner.get("length")
    return None


def binary_label(binary: tuple[str, Any]) -> str:
    sha, length = binary
    return f"sha256:{sha[:12]} ({length} bytes)"
