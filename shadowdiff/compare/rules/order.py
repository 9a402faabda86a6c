"""Canonical order for unordered lists: a sort key that equal JSON values share."""

from __future__ import annotations

import json
from typing import Any

import orjson


def sorted_canonically(items: list[Any], field: str | None = None) -> list[Any]:
    """`items` in canonical order (the same list when already so); `field` sorts objects
    by that key first, so elements with the same key line up in a diff."""
    if len(items) < 2:
        return items
    kinds = {type(item) for item in items}
    if kinds == {str} or kinds == {int}:
        # Lists of plain names or ids: their own order is canonical, and cheaper.
        ordered = sorted(items)
        return items if ordered == items else ordered
    keys: list[Any] = canonical_keys(items)
    if field is not None:
        # Elements with the key field first, by its value; the whole element breaks ties,
        # so the order stays a pure function of the multiset.
        keys = [(0, _canonical(item[field]), k) if type(item) is dict and field in item
                else (1, b"", k) for item, k in zip(items, keys)]
    order = sorted(range(len(items)), key=keys.__getitem__)
    if all(i == j for i, j in enumerate(order)):
        return items
    return [items[i] for i in order]


def canonical_keys(items: list[Any]) -> list[bytes]:
    """One sort key per JSON value: equal values get equal keys, whatever their dict order."""
    return [_canonical(item) for item in items]


def _canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, ValueError, RecursionError):
        pass  # huge ints, lone surrogates, non-str keys, nesting beyond orjson's limit
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text.encode("utf-8", "backslashreplace")
