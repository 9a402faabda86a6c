"""Diff: the stage after normalize and before the noise filter and rank.

    normalize() -> Tree (old), Tree (new) -> compare(old, new, endpoint) -> [Divergence]

The only module that imports deepdiff. Most pairs are identical or differ in a leaf or two,
so `compare` works from the top down with plain equality:

1. identical trees return [] after one C-speed equality check; deepdiff is never touched;
2. otherwise it descends through dicts and lists, skipping equal subtrees, down to the
   smallest subtrees that differ, and reports those itself;
3. only a list whose length changed needs alignment: its elements are matched with
   difflib on canonical keys, and deepdiff diffs just the runs that were replaced.

Equality is JSON equality, slightly stricter than Python's: `true` and `1` differ (Python
says `True == 1`; a service that swaps them breaks typed clients), while `1` and `1.0` are
the same JSON number and do not. NaN equals NaN.

Kinds and values (`Divergence.old` / `.new`, always plain JSON-serializable values):

- `status_changed` at `status`; `header_missing` / `header_added` / `header_changed` at
  `header.<name>`, with the header values.
- `field_missing` / `field_added` for a dict key (or a list element, see below) present on
  one side only; the other side is None. A rename shows as both.
- `value_changed`: two leaves of the same JSON type; `type_changed`: different JSON types,
  with the values, or the type name (`object`, `array`) for a container.
- `length_changed` at a list whose length differs (old/new = the lengths), followed by
  the element-level differences: removed elements are `field_missing` at their old index,
  inserted ones `field_added` at their new index, replaced ones diffed by deepdiff
  (locations use the old index).
- `order_changed`: a list with the same elements in another order; one divergence at the
  list, old/new = the lists (summarized when large).
- Text bodies (a string at a top-level key such as `body`, when either side has a newline
  or is longer than 200 characters): HTML and XML element by element (markup.py), other
  text hunk by hunk (texthunks.py), with JSON's kinds at locations inside the body. Only
  when neither applies (no line in common, unparseable, JSON sent as a string): one
  `body_changed`; old/new are excerpts of the first differing line, `"line 12: <text>"`.
  Reports wanting the whole story call `text_diff(old, new)` for a bounded unified diff.
- Binary bodies (`{"$binary": {"sha256", "length"}}`): `length_changed` when the lengths
  differ, else `body_changed`; old/new are `"sha256:<12 hex> (<n> bytes)"`.

Strings longer than 500 characters are cut, with a marker saying how much was cut; a
container too large to quote is summarized as `"object (12 keys)"` / `"array (40 items)"`.
The output order is deterministic: the order locations appear in the trees (old's keys
first, then keys only new has).
"""

from __future__ import annotations

import difflib
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import notpresent

from shadowdiff.compare.values import (
    ABSENT,
    MAX_VALUE_CHARS,
    binary,
    binary_label,
    cut,
    display,
    json_same,
    json_type,
    leaf_same,
    plain,
    plain_or_none,
)
from shadowdiff.model import Divergence
from shadowdiff.compare.normalize import canonical_keys, deep_call
from shadowdiff.compare.markup import body_format, markup_divergences
from shadowdiff.compare.texthunks import text_hunks
from shadowdiff.paths import join_location

#: A top-level string longer than this (or with a newline) is compared as text.
TEXT_THRESHOLD = 200
#: Width of a text excerpt.
EXCERPT_CHARS = 160


# deepdiff report type -> our kind; added items are located by their index in new.
_DEEPDIFF_KINDS = {
    "values_changed": "value_changed",
    "type_changes": "type_changed",
    "dictionary_item_added": "field_added",
    "dictionary_item_removed": "field_missing",
    "iterable_item_added": "field_added",
    "iterable_item_removed": "field_missing",
}
_DEEPDIFF_SKIPPED = {"iterable_item_moved"}  # an equal element at another index: no change


def compare(old: dict[str, Any], new: dict[str, Any], endpoint: str = "") -> list[Divergence]:
    """The divergences between two normalized lifted trees, in location order.

    >>> compare({"status": 200, "body": {"a": 1}}, {"status": 200, "body": {"a": 2}}, "GET /")
    [Divergence(endpoint='GET /', location='body.a', kind='value_changed', old=1, new=2)]
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        raise TypeError("compare() takes two lifted trees (dicts)")
    return deep_call(_compare, old, new, endpoint)


def _compare(old: dict[str, Any], new: dict[str, Any], endpoint: str) -> list[Divergence]:
    if old is new or json_same(old, new):
        return []
    differ = _Differ(endpoint)
    differ.trees(old, new)
    return differ.out


def text_diff(old: str, new: str, *, context: int = 3, max_lines: int = 40) -> str:
    """A unified diff of two texts, at most `max_lines` lines, for reports.

    >>> print(text_diff("a\\nb\\n", "a\\nc\\n", context=0))
    --- old
    +++ new
    @@ -2 +2 @@
    -b
    +c
    """
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "old", "new",
                                 n=context, lineterm="")
    out: list[str] = []
    for count, line in enumerate(lines):
        if count == max_lines:
            rest = sum(1 for _ in lines) + 1
            out.append(f"... ({rest} more diff lines)")
            break
        out.append(cut(line, MAX_VALUE_CHARS))
    return "\n".join(out)


class _Differ:
    """Collects the divergences of one pair while descending both trees."""

    __slots__ = ("endpoint", "out", "content_type")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.out: list[Divergence] = []
        self.content_type: str | None = None  # old's (else new's), to tell HTML from text

    def add(self, location: str, kind: str, old: Any, new: Any) -> None:
        self.out.append(Divergence(self.endpoint, location, kind, old, new))

    def trees(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.content_type = _content_type(old) or _content_type(new)
        for key in _union_keys(old, new):
            o, n = old.get(key, ABSENT), new.get(key, ABSENT)
            if o is not ABSENT and n is not ABSENT and json_same(o, n):
                continue
            loc = join_location("", key)
            if key == "status":
                self.add(loc, "status_changed", plain_or_none(o), plain_or_none(n))
            elif key == "header" and _dict_or_absent(o) and _dict_or_absent(n):
                self.headers({} if o is ABSENT else o, {} if n is ABSENT else n, loc)
            elif o is ABSENT:
                self.add(loc, "field_added", None, plain(n))
            elif n is ABSENT:
                self.add(loc, "field_missing", plain(o), None)
            else:
                self.top_value(o, n, loc)

    def headers(self, old: dict[str, Any], new: dict[str, Any], loc: str) -> None:
        for name in _union_keys(old, new):
            o, n = old.get(name, ABSENT), new.get(name, ABSENT)
            where = join_location(loc, name)
            if n is ABSENT:
                self.add(where, "header_missing", plain(o), None)
            elif o is ABSENT:
                self.add(where, "header_added", None, plain(n))
            elif not json_same(o, n):
                self.add(where, "header_changed", plain(o), plain(n))

    def top_value(self, o: Any, n: Any, loc: str) -> None:
        """A body-like value: binary and text get one divergence, JSON is descended."""
        o_bin, n_bin = binary(o), binary(n)
        if o_bin is not None and n_bin is not None:
            kind = "length_changed" if o_bin[1] != n_bin[1] else "body_changed"
            self.add(loc, kind, binary_label(o_bin), binary_label(n_bin))
        elif o_bin is not None or n_bin is not None:
            self.add(loc, "type_changed", display(o), display(n))
        elif type(o) is str and type(n) is str and (_is_text(o) or _is_text(n)):
            if not self.text(o, n, loc):
                self.add(loc, "body_changed", *_text_excerpts(o, n))
        else:
            self.value(o, n, loc)

    def text(self, o: str, n: str, loc: str) -> bool:
        """HTML and XML node by node, other text hunk by hunk (markup.py, texthunks.py), so
        a volatile node masks only itself; False when neither applies (then: body_changed)."""
        fmt = body_format(o, self.content_type)
        if fmt is None:
            return False  # JSON sent as a string: compared as before
        found = markup_divergences(o, n, fmt, loc) if fmt != "text" else None
        if found is None:
            found = text_hunks(o, n, loc)
        if not found:
            return False
        self.out.extend(Divergence(self.endpoint, *entry) for entry in found)
        return True

    def value(self, o: Any, n: Any, loc: str) -> None:
        """Two values known to differ (or to be equal only by Python's looser rules)."""
        to, tn = type(o), type(n)
        if to is dict and tn is dict:
            self.dicts(o, n, loc)
        elif to is list and tn is list:
            self.lists(o, n, loc)
        elif json_type(o) != json_type(n):
            self.add(loc, "type_changed", display(o), display(n))
        elif not leaf_same(o, n):
            self.add(loc, "value_changed", plain(o), plain(n))

    def dicts(self, o: dict[str, Any], n: dict[str, Any], loc: str) -> None:
        for key, ov in o.items():
            nv = n.get(key, ABSENT)
            if nv is ABSENT:
                self.add(join_location(loc, key), "field_missing", plain(ov), None)
            elif ov is not nv and not json_same(ov, nv):
                self.value(ov, nv, join_location(loc, key))
        for key, nv in n.items():
            if key not in o:
                self.add(join_location(loc, key), "field_added", None, plain(nv))

    def lists(self, o: list[Any], n: list[Any], loc: str) -> None:
        if len(o) != len(n):
            self.add(loc, "length_changed", len(o), len(n))
            self.aligned(o, n, loc)
            return
        differing = [i for i, (a, b) in enumerate(zip(o, n)) if a is not b and not json_same(a, b)]
        # One differing position cannot be a reordering; two or more might be.
        if len(differing) > 1 and sorted(canonical_keys(o)) == sorted(canonical_keys(n)):
            self.add(loc, "order_changed", plain(o), plain(n))
            return
        for i in differing:
            self.value(o[i], n[i], f"{loc}[{i}]")

    def aligned(self, o: list[Any], n: list[Any], loc: str) -> None:
        """Elements of lists of different lengths, matched like lines in a text diff."""
        matcher = difflib.SequenceMatcher(None, canonical_keys(o), canonical_keys(n), autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "delete":
                for i in range(i1, i2):
                    self.add(f"{loc}[{i}]", "field_missing", plain(o[i]), None)
            elif tag == "insert":
                for j in range(j1, j2):
                    self.add(f"{loc}[{j}]", "field_added", None, plain(n[j]))
            elif tag == "replace":
                self.deepdiff(o[i1:i2], n[j1:j2], loc, i1, j1)

    def deepdiff(self, o: list[Any], n: list[Any], loc: str, i1: int, j1: int) -> None:
        """Diff two replaced runs with deepdiff; paths are relative to the runs' starts."""
        # threshold 0: always report inside a changed element, never the element as a whole
        tree = DeepDiff(o, n, view="tree", threshold_to_diff_deeper=0)
        found: list[tuple[tuple[int, ...], Divergence]] = []
        for report_type, levels in tree.items():
            if report_type in _DEEPDIFF_SKIPPED:
                continue
            kind = _DEEPDIFF_KINDS.get(report_type, "value_changed")
            in_new = report_type.endswith("_added")
            for level in levels:
                path = level.path(output_format="list", use_t2=in_new)
                entry = _deepdiff_entry(kind, _none_if_absent(level.t1), _none_if_absent(level.t2))
                if entry is None:
                    continue
                order = _appearance(o, n, path)
                if path:  # relative to the run; the first step is an index into it
                    path[0] += j1 if in_new else i1
                found.append((order, Divergence(self.endpoint, _location(loc, path), *entry)))
        found.sort(key=lambda pair: pair[0])
        self.out.extend(d for _, d in found)


def _deepdiff_entry(kind: str, old: Any, new: Any) -> tuple[str, Any, Any] | None:
    """(kind, old, new) for one deepdiff report, or None when JSON says they are equal."""
    if kind in ("value_changed", "type_changed"):
        if json_type(old) != json_type(new):
            return ("type_changed", display(old), display(new))
        if leaf_same(old, new):
            return None  # 1 vs 1.0, NaN vs NaN: deepdiff's notion, not JSON's
        return ("value_changed", plain(old), plain(new))
    return (kind, plain(old), plain(new))


def _none_if_absent(value: Any) -> Any:
    return None if value is notpresent else value


def _location(prefix: str, path: list[Any]) -> str:
    for key in path:
        prefix = join_location(prefix, key)
    return prefix


def _appearance(old: Any, new: Any, path: list[Any]) -> tuple[int, ...]:
    """Sort key putting deepdiff's reports in the order their locations appear in the trees:
    a key's position in the old dict, or after all of old's keys when only new has it."""
    order: list[int] = []
    for key in path:
        if type(key) is int:
            order.append(key)
        else:
            keys_old = list(old) if isinstance(old, dict) else []
            keys_new = [k for k in new if k not in keys_old] if isinstance(new, dict) else []
            spot = keys_old.index(key) if key in keys_old else len(keys_old) + keys_new.index(key) \
                if key in keys_new else len(keys_old) + len(keys_new)
            order.append(spot)
        old, new = _step(old, key), _step(new, key)
    return tuple(order)


def _step(value: Any, key: Any) -> Any:
    try:
        return value[key]
    except (LookupError, TypeError):
        return None


# -- text --------------------------------------------------------------------------------


def _is_text(value: str) -> bool:
    return len(value) > TEXT_THRESHOLD or "\n" in value


def _text_excerpts(old: str, new: str) -> tuple[str, str]:
    """Excerpts of the first line where two texts differ, with its line number."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    index = 0
    for index, (a, b) in enumerate(zip(old_lines, new_lines)):  # noqa: B007
        if a != b:
            break
    else:
        index = min(len(old_lines), len(new_lines))
    o = old_lines[index] if index < len(old_lines) else None
    n = new_lines[index] if index < len(new_lines) else None
    return _excerpt(index, o, n), _excerpt(index, n, o)


def _excerpt(index: int, line: str | None, other: str | None) -> str:
    if line is None:
        return f"line {index + 1}: <end of text>"
    shown, other_shown = line.rstrip("\r\n"), (other or "").rstrip("\r\n")
    if shown == other_shown:
        shown = repr(line)  # only the line endings differ: make them visible
    elif len(shown) > EXCERPT_CHARS:
        # A long line (minified HTML): show the neighbourhood of the first differing char.
        start = max(0, _common_prefix(shown, other_shown) - EXCERPT_CHARS // 4)
        end = start + EXCERPT_CHARS
        shown = ("…" if start else "") + shown[start:end] + ("…" if end < len(shown) else "")
    return f"line {index + 1}: {shown}"


def _common_prefix(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _union_keys(old: dict[Any, Any], new: dict[Any, Any]) -> list[Any]:
    return list(old) + [k for k in new if k not in old]


def _content_type(tree: dict[str, Any]) -> str | None:
    header = tree.get("header")
    value = header.get("content-type") if isinstance(header, dict) else None
    return value if isinstance(value, str) else None


def _dict_or_absent(value: Any) -> bool:
    return value is ABSENT or isinstance(value, dict)
