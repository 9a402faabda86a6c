"""Which elements of two markup texts cannot differ, from a line diff of their sources.

Used by markup.py to skip equal subtrees without serializing them: on a 60 KB page whose
footer and one table cell changed, serializing every child on the way down (the only other
way to know an element is unchanged) costs more than the parse.

An old element's source spans from its own line to the line where the next element after
its subtree starts (inclusive: elements share lines in minified markup). If no line of that
span changed, and the new element starts on the line the old one's start maps to, both were
parsed from the same text in the same place, so they are the same subtree.
Where lines cannot tell, `_key` (a subtree's serialization) and `pair_keys` (serializing
only children whose text occurs on the other side) settle equality in C.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from rapidfuzz.distance import LCSseq

#: libxml2 may clamp line numbers past 65535: spans there mean nothing, so no pruning.
MAX_LINES = 65_000


class LineMap:
    """Changed lines of the old text and where its unchanged lines are in the new one."""

    __slots__ = ("dirty", "to_new")

    def __init__(self, old: str | bytes, new: str | bytes) -> None:
        # The bytes the parser read serve best: half the characters of a UCS-2 str to split
        # and hash, and "\n" is one byte in UTF-8 (no other character contains it), so the
        # lines and their numbers are the str's.
        old_lines: list[Any] = old.split(b"\n" if isinstance(old, bytes) else "\n")
        new_lines: list[Any] = new.split(b"\n" if isinstance(new, bytes) else "\n")
        # 1-based like sourceline; index 0 and the line after the end stay dirty.
        self.dirty = bytearray(b"\x01") * (len(old_lines) + 2)
        self.to_new = [-1] * (len(old_lines) + 2)
        if max(len(old_lines), len(new_lines)) > MAX_LINES:
            return
        ops = _line_opcodes(old_lines, new_lines)
        for tag, i1, i2, j1, _ in ops:
            if tag == "equal":
                self.dirty[i1 + 1:i2 + 1] = bytes(i2 - i1)
                self.to_new[i1 + 1:i2 + 1] = range(j1 + 1, j1 + 1 + i2 - i1)
        for tag, i1, i2, _, _ in ops:
            if tag != "equal":
                # Lines around an insertion point are touched too: an element ending on the
                # line before it may have gained children there.
                self.dirty[i1] = self.dirty[i2 + 1] = 1

    def same(self, start: int | None, n_start: int | None, o_end: int | None) -> bool:
        """True when the old element whose span runs from line `start` to `o_end` and the
        new element starting on line `n_start` were parsed from the same unchanged text."""
        if start is None or o_end is None or n_start is None or o_end < start:
            return False
        if start >= len(self.to_new) or self.to_new[start] != n_start:
            return False
        return not any(self.dirty[start:o_end + 1])

    def changed(self, starts: list[int | None], n_starts: list[int | None],
                ends: list[int | None]) -> list[int]:
        """The positions i where `same(starts[i], n_starts[i], ends[i])` is False: one loop
        for a list of children (a method call per row of a table costs more than the test)."""
        to_new, dirty, size = self.to_new, self.dirty, len(self.to_new)
        out = []
        for i, (start, n_start, o_end) in enumerate(zip(starts, n_starts, ends)):
            if (start is None or o_end is None or n_start is None or o_end < start
                    or start >= size or to_new[start] != n_start or any(dirty[start:o_end + 1])):
                out.append(i)
        return out


def _line_opcodes(old: list[Any], new: list[Any]) -> list[tuple[str, int, int, int, int]]:
    """Opcodes of a longest common subsequence of lines (rapidfuzz's bit-parallel LCS in C:
    ~10x difflib on a 60 KB page whose every row changed). Any common subsequence serves:
    a line left out of an equal block only means less pruning, never a wrong answer; so
    each equal block is checked line for line (rapidfuzz compares the lines' hashes)."""
    ops = []
    for tag, i1, i2, j1, j2 in LCSseq.opcodes(old, new):
        if tag == "equal" and old[i1:i2] != new[j1:j2]:
            tag = "replace"  # a hash collision: no line of it is trusted
        ops.append((tag, i1, i2, j1, j2))
    return ops


def spans_end(starts: list[int | None], parent_end: int | None) -> list[int | None]:
    """The last line of each child's span, from the children's first lines: where its next
    sibling starts, else the parent's end."""
    return [*starts[1:], parent_end] if starts else []


__all__ = ["LineMap", "pair_keys", "spans_end", "subtree_key", "unmatched_keys"]


def subtree_key(el: Any, xml: bool = False) -> Any:
    """A key of a subtree: equal keys mean equal subtrees, so the descent skips them without
    visiting their nodes (unequal keys may still be canonically equal: then the descent finds
    nothing). A serialization made in C; an HTML leaf's is its tag, attributes as parsed and
    text, which say as much for a third of the cost (XML's names also depend on the
    namespaces in scope: always serialized)."""
    if not xml and not len(el):
        return el.tag, tuple(el.items()), el.text
    return etree.tostring(el, with_tail=False)


def pair_keys(o: list[Any], n: list[Any], at: list[int],
              xml: bool = False) -> dict[int, tuple[Any, Any]] | None:
    """Keys of the children at positions `at` on both sides, for reorder and alignment checks;
    None when no child of one side has the text of any child of the other (then no key of
    either side equals one of the other: see `unmatched_keys`).

    Only equal keys matter, and equal subtrees have equal text: so a child whose text occurs
    on no child of the other side gets a key of its own that equals nothing (no full
    serialization), and only the others are serialized (their text is 4x cheaper to make).
    HTML leaves need neither: their key is cheaper than their text."""
    if not xml and all(not len(o[i]) and not len(n[i]) for i in at):
        return {i: (subtree_key(o[i]), subtree_key(n[i])) for i in at}
    if len(at) * 8 < len(o):  # a few children of many (a changed row and its neighbours)
        keys = _few_keys(o, n, at, xml)
        if keys is not False:
            return keys
    o_text, n_text = [text_key(c) for c in o], [text_key(c) for c in n]
    o_seen, n_seen = set(o_text), set(n_text)
    if o_seen.isdisjoint(n_seen):  # a template edit of every row: a set operation in C
        return None
    return {i: (subtree_key(o[i], xml) if o_text[i] in n_seen else ("old", i),
                subtree_key(n[i], xml) if n_text[i] in o_seen else ("new", i)) for i in at}


def _few_keys(o: list[Any], n: list[Any], at: list[int],
              xml: bool) -> dict[int, tuple[Any, Any]] | None | bool:
    """pair_keys without the text of every child: a child's text is a substring of its
    parent's (one serialization in C), so a text found nowhere in the other parent's is no
    child's there. False when a search finds it: then every child's text is needed."""
    o_text, n_text = {i: text_key(o[i]) for i in at}, {i: text_key(n[i]) for i in at}
    o_all, n_all = text_key(o[0].getparent()), text_key(n[0].getparent())
    moved = [i for i in at if o_text[i] != n_text[i]]
    if any(o_text[i] in n_all or n_text[i] in o_all for i in moved):
        return False
    if len(moved) == len(at):
        return None  # as pair_keys: every key unmatched
    # An equal text at the same place is a text the other side has: serialized, as in
    # pair_keys; a moved one occurs nowhere there.
    return {i: (subtree_key(o[i], xml), subtree_key(n[i], xml)) if o_text[i] == n_text[i]
            else (("old", i), ("new", i)) for i in at}


def unmatched_keys(at: list[int]) -> dict[int, tuple[Any, Any]]:
    """The keys `pair_keys` stands for when it answers None: each equal to nothing."""
    return {i: (("old", i), ("new", i)) for i in at}


def text_key(el: Any) -> str:
    """All the text in a subtree, made in C: a necessary condition for equal subtrees."""
    # A str, not UTF-8 bytes: measured cheaper (~0.5-1 M instructions over 840 rows)
    return etree.tostring(el, method="text", with_tail=False, encoding="unicode")  # type: ignore[no-any-return]
