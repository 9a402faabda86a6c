"""The affected region of a markup or text divergence, old beside new, for report.html.

Report stage, beside html.py: a template edit shows as dozens of divergences under a few
signatures (`...tr[*].td[*].text`); a person wants to see the change itself. The region is
the element the example's divergences of the signature share (the table body for a change
in every row, the footer for one paragraph), pretty-printed one node per line from both
example bodies and aligned line by line. For a text body it is the text around the hunks.

Only plain values come out (line numbers, text, a CSS class per row); the template escapes
the text like every other captured value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from shadowdiff.compare.markup import body_format, parse_markup
from shadowdiff.compare.rules.text import HTML_MARK, XML_MARK, canonical_html, canonical_xml
from shadowdiff.model import signature_location
from shadowdiff.paths import join_location, parse_location

#: Rows of a region shown at most, and unchanged lines kept around each change.
MAX_ROWS = 160
CONTEXT = 2

Row = dict[str, Any]  # old_no, old, new_no, new, css ("same", "changed", "added", "removed", "gap")
Steps = list[tuple[str, int]]


def region_view(example: Mapping[str, Any], focus: tuple[str, str]) -> dict[str, Any] | None:
    """{"location", "rows"} for the example's divergences of signature `focus` (location
    with `[*]`, kind), or None when they are not inside a markup or text body."""
    locations = [d["location"] for d in example.get("divergences", [])
                 if (signature_location(d["location"]), d["kind"]) == focus]
    old, new = example.get("old", {}), example.get("new", {})
    old_body, new_body = old.get("body"), new.get("body")
    if not locations or not isinstance(old_body, str) or not isinstance(new_body, str):
        return None
    fmt = body_format(old_body, _content_type(old))
    if fmt is None:
        return None
    if fmt == "text":
        if not all(".after[" in loc or ".before[" in loc for loc in locations):
            return None
        return {"location": "body", "rows": side_by_side(old_body.splitlines(), new_body.splitlines())}
    return _markup_region(old_body, new_body, fmt, locations)


def _markup_region(old: str, new: str, fmt: str, locations: list[str]) -> dict[str, Any] | None:
    paths = [p for p in (_element_path(loc) for loc in locations) if p is not None]
    old_doc, new_doc = parse_markup(old, fmt), parse_markup(new, fmt)
    if not paths or old_doc is None or new_doc is None:
        return None
    common = _common(paths)
    if all(p == common for p in paths) and len(common) > 1:
        common = common[:-1]  # one element changed: show it within its parent
    old_el, new_el = _find(old_doc[1], common, fmt), _find(new_doc[1], common, fmt)
    if old_el is None or new_el is None:
        return None
    old_lines, new_lines = _pretty(old_el, fmt), _pretty(new_el, fmt)
    return {"location": _location(common), "rows": side_by_side(old_lines, new_lines)}


def _element_path(location: str) -> Steps | None:
    """`body.html.body.p[2].text` -> [("html", 0), ("body", 0), ("p", 2)]; None if not markup."""
    try:
        keys = parse_location(location)
    except ValueError:
        return None
    if not keys or keys[0] != "body":
        return None
    steps: Steps = []
    for i, key in enumerate(keys[1:], start=1):
        if isinstance(key, int):
            if not steps:
                return None
            steps[-1] = (steps[-1][0], key)
        elif isinstance(key, str) and not key.startswith(("@", "!")) \
                and not (key == "text" and not isinstance(_at(keys, i + 1), int)):
            steps.append((key, 0))
        else:
            break  # an attribute or the text: the element before it is the place
    return steps or None


def _at(keys: Sequence[Any], i: int) -> Any:
    return keys[i] if i < len(keys) else None


def _common(paths: list[Steps]) -> Steps:
    common = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(common), len(path)) and common[n] == path[n]:
            n += 1
        common = common[:n]
    return common


def _find(root: Any, path: Steps, fmt: str) -> Any:
    """The element at `path` (names and indices among same-named siblings), else None."""
    if not path or _name(root, fmt) != path[0][0]:
        return None
    el = root
    for name, index in path[1:]:
        named = [c for c in el if isinstance(c.tag, str) and _name(c, fmt) == name]
        if index >= len(named):
            return None
        el = named[index]
    return el


def _name(el: Any, fmt: str) -> str:
    if fmt != "xml":
        return str(el.tag)
    local = el.tag.rsplit("}", 1)[-1]
    return f"{el.prefix}:{local}" if el.prefix else local


def _pretty(el: Any, fmt: str) -> list[str]:
    """An element one node per line, canonical (the form rules/text.py gives the html rule)."""
    from lxml import etree

    if fmt == "xml":
        text = canonical_xml(etree.tostring(el, encoding="unicode", with_tail=False))
        mark = XML_MARK
    else:
        text = canonical_html(etree.tostring(el, encoding="unicode", method="html", with_tail=False))
        mark = HTML_MARK
    lines = text.splitlines()
    return lines[1:] if lines and lines[0] == mark else lines


def _location(path: Steps) -> str:
    loc = "body"
    for name, index in path:
        loc = join_location(loc, name) + (f"[{index}]" if index else "")
    return loc


def side_by_side(old: list[str], new: list[str], *, context: int = CONTEXT,
                 max_rows: int = MAX_ROWS) -> list[Row]:
    """Old and new lines aligned, with `context` unchanged lines around each change.

    >>> [r["css"] for r in side_by_side(["a", "b", "c"], ["a", "B", "c"], context=0)]
    ['gap', 'changed', 'gap']
    """
    rows: list[Row] = []
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    for k, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            rows += _context_rows(old, i1, i2, j1, context, first=k == 0, last=k == len(ops) - 1)
            continue
        css = {"replace": "changed", "delete": "removed", "insert": "added"}[tag]
        for m in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + m, j1 + m
            rows.append({"old_no": i + 1 if i < i2 else None, "old": old[i] if i < i2 else "",
                         "new_no": j + 1 if j < j2 else None, "new": new[j] if j < j2 else "",
                         "css": css})
    if len(rows) > max_rows:
        rows = rows[:max_rows] + [_gap(len(rows) - max_rows, "more rows")]
    return rows


def _context_rows(old: list[str], i1: int, i2: int, j1: int, context: int, *,
                  first: bool, last: bool) -> list[Row]:
    """An unchanged block: its edges next to changes, the middle as one gap row."""
    keep = set()
    if not first:
        keep |= set(range(i1, min(i2, i1 + context)))
    if not last:
        keep |= set(range(max(i1, i2 - context), i2))
    rows: list[Row] = []
    skipped = 0
    for i in range(i1, i2):
        if i not in keep:
            skipped += 1
            continue
        if skipped:
            rows.append(_gap(skipped, "unchanged lines"))
            skipped = 0
        rows.append({"old_no": i + 1, "old": old[i], "new_no": j1 + i - i1 + 1, "new": old[i],
                     "css": "same"})
    if skipped:
        rows.append(_gap(skipped, "unchanged lines"))
    return rows


def _gap(count: int, what: str) -> Row:
    return {"old_no": None, "old": f"⋯ {count:,} {what}", "new_no": None, "new": "", "css": "gap"}


def _content_type(side: Mapping[str, Any]) -> str | None:
    for name, value in side.get("headers", []):
        if str(name).lower() == "content-type":
            return str(value)
    return None


__all__ = ["region_view", "side_by_side"]
