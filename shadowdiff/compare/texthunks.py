"""Text bodies for the diff stage: a line diff, one divergence per hunk, located by context.

    diff.compare() -> a text body (text/plain, CSV, unknown text) -> text_hunks() -> [(location, kind, old, new)]

A hunk is a run of changed lines between unchanged ones. Its location is keyed by the
nearest unchanged, non-blank line before it, so the location does not move when lines are
inserted elsewhere, and a volatile line (a timing, a request id) is a location of its own
that the old replica's mask can hide without hiding the rest of the text:

    body.after["Report for #"]      lines changed after the unchanged line "Report for 2024"
    body.before["Total: #"]         lines changed at the top, before the first unchanged line

Digits in the key become `#` and whitespace is collapsed (at most 60 characters), so the
same place in two exchanges whose numbers differ is the same location and signature.
Kinds as for JSON: `value_changed` (lines replaced; old/new are the lines), `field_added`
(lines inserted), `field_missing` (lines removed). A text without any unchanged line, or
too big to align, returns None: diff.py then reports one `body_changed` as before.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from shadowdiff.model import Divergence
from shadowdiff.paths import join_location

Found = tuple[str, str, object, object]

#: Texts longer than this are not aligned (difflib is quadratic in the worst case).
MAX_TEXT_CHARS = 2_000_000
#: At most this many hunks are reported per body; a rewrite is news enough at that point.
MAX_HUNKS = 100
#: Longest context key, and longest excerpt of a hunk's lines.
CONTEXT_CHARS = 60
MAX_VALUE_CHARS = 500

_KINDS = {"replace": "value_changed", "insert": "field_added", "delete": "field_missing"}
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")

Opcode = tuple[str, int, int, int, int]


def text_hunks(old: str, new: str, loc: str = "body") -> list[Found] | None:
    """(location, kind, old lines, new lines) per hunk; None when no line is shared.

    >>> text_hunks("a\\ntook 2ms\\nb\\n", "a\\ntook 3ms\\nb\\n")
    [('body.after["a"]', 'value_changed', 'took 2ms', 'took 3ms')]
    """
    if max(len(old), len(new)) > MAX_TEXT_CHARS:
        return None
    old_lines, new_lines = old.splitlines(), new.splitlines()
    ops = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()
    if not any(tag == "equal" for tag, *_ in ops):
        return None
    out: list[Found] = []
    for k, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            continue
        if len(out) == MAX_HUNKS:
            break
        kind = _KINDS[tag]
        old_text = None if kind == "field_added" else _excerpt(old_lines[i1:i2])
        new_text = None if kind == "field_missing" else _excerpt(new_lines[j1:j2])
        out.append((hunk_location(old_lines, ops, k, loc), kind, old_text, new_text))
    return out


def hunk_location(lines: list[str], ops: Sequence[Opcode], k: int, loc: str) -> str:
    """The location of hunk `k`: after the nearest unchanged line above, else before the
    nearest one below."""
    for tag, i1, i2, _, _ in reversed(ops[:k]):
        if tag == "equal":
            for line in reversed(lines[i1:i2]):
                if line.strip():
                    return join_location(join_location(loc, "after"), context_key(line))
    for tag, i1, i2, _, _ in ops[k + 1:]:
        if tag == "equal":
            for line in lines[i1:i2]:
                if line.strip():
                    return join_location(join_location(loc, "before"), context_key(line))
    return join_location(join_location(loc, "after"), "")  # only blank lines in common


def context_key(line: str) -> str:
    """A line as a location key: whitespace collapsed, digits as `#`, at most 60 characters.

    >>> context_key("  Rows:   1204 of 2000 ")
    'Rows: # of #'
    """
    return _DIGITS.sub("#", _SPACE.sub(" ", line).strip())[:CONTEXT_CHARS]


def is_hunk_location(location: str) -> bool:
    """True for a location text_hunks makes (`body.after["..."]`, `body.before["..."]`)."""
    return '.after["' in location or '.before["' in location


class HunkNoise:
    """The old replica's text hunks of one exchange, to mask old-vs-new hunks with.

    A hunk's key is the line above it, which depends on what else changed: a real change
    right above the volatile line merges with it into a hunk the replica never showed. So a
    hunk is masked when the replica showed it exactly, and otherwise loses the lines the
    replica changed too (old is the same response in both comparisons, so its lines match).
    """

    __slots__ = ("exact", "lines")

    def __init__(self, noise: Iterable[Divergence]) -> None:
        hunks = [d for d in noise if is_hunk_location(d.location) and isinstance(d.old, str)]
        self.exact = {(d.location, d.kind, d.old) for d in hunks}
        # old line -> the replica's hunk that changed it
        self.lines = {line: d for d in hunks if d.kind == "value_changed"
                      for line in d.old.split("\n")}

    def mask(self, d: Divergence) -> tuple[Divergence | None, list[Divergence]]:
        """(what is left of `d`, or None; the noise taken out of it, at the replica's hunks)."""
        if (d.location, d.kind, d.old) in self.exact:
            return None, [d]
        if d.kind != "value_changed" or not (isinstance(d.old, str) and isinstance(d.new, str)):
            return d, []
        old, new = d.old.split("\n"), d.new.split("\n")
        if len(old) != len(new):
            return d, []  # lines not paired one to one: which new line replaced the noise?
        kept = [(a, b) for a, b in zip(old, new) if a not in self.lines]
        if len(kept) == len(old):
            return d, []
        noise = [Divergence(d.endpoint, self.lines[a].location, d.kind, a, b)
                 for a, b in zip(old, new) if a in self.lines]
        if not kept:
            return None, noise
        rest = Divergence(d.endpoint, d.location, d.kind, "\n".join(a for a, _ in kept),
                          "\n".join(b for _, b in kept))
        return rest, noise


def _excerpt(lines: list[str]) -> str:
    text = "\n".join(lines)
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}…[{len(text) - MAX_VALUE_CHARS} more chars]"


__all__ = ["HunkNoise", "context_key", "hunk_location", "is_hunk_location", "text_hunks"]
