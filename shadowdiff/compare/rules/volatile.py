"""A mask regex for volatile text, learned from value pairs: for `shadowdiff rules suggest`.

The old replica shows which text changes on every request (`Query took 2.145ms` vs
`Query took 1.98ms`). Inside an HTML, XML or plain-text body such a location cannot be
ignored by path (the body is one string in the tree), so the proposal is a mask on the
body whose regex keeps the unchanging words around the volatile part literal:

    >>> volatile_pattern([["Query took 2.145ms", "Query took 1.98ms"]])
    'Query took [0-9.]+ms'

Both sides are split into tokens (numbers, words, spaces, single characters); when they
have as many tokens and every differing pair is of one class (numbers, hex, letters), the
pattern is the differing tokens' classes with up to 24 characters of literal context on
each side. Every sample must then match, and be equal once masked; otherwise nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Literal characters kept on each side of the volatile part.
CONTEXT_CHARS = 24

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[A-Za-z]+|\s+|.", re.S)
# Classes tried in order, narrowest first: (what both tokens must fully match, the regex).
_CLASSES = (
    (re.compile(r"\d+(?:\.\d+)*"), "[0-9.]+"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "[0-9.,]+"),
    (re.compile(r"[0-9a-f]+"), "[0-9a-f]+"),
    (re.compile(r"[0-9A-F]+"), "[0-9A-F]+"),
    (re.compile(r"[A-Za-z]+"), "[A-Za-z]+"),
)
_SPLIT_TEXT = re.compile(r"[A-Za-z]+")


def volatile_pattern(pairs: Sequence[Sequence[str]]) -> str | None:
    """A regex masking what differs in every (old, other) string pair, or None.

    >>> volatile_pattern([["id 7", "id 8"], ["id 1", "name x"]]) is None
    True
    """
    candidates = [p for p in (_pattern(a, b) for a, b in pairs) if p is not None]
    for pattern in dict.fromkeys(candidates):
        if _explains(re.compile(pattern), pairs):
            return pattern
    return None


def mask_name(pattern: str) -> str:
    """A mask name from the literal words of a pattern: `query-took-ms`, else `volatile`.

    >>> mask_name("Query took [0-9.]+ms")
    'query-took-ms'
    """
    literal = re.sub(r"\[[^\]]*\]\+", " ", pattern)
    words = [w.lower() for w in _SPLIT_TEXT.findall(literal)][:4]
    return "-".join(words)[:40] or "volatile"


def _pattern(old: str, new: str) -> str | None:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(a) != len(b) or a == b:
        return None
    differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    parts: list[str] = []
    for x, y in zip(a, b):
        if x == y:
            parts.append(_escape(x))
            continue
        cls = next((regex for test, regex in _CLASSES if test.fullmatch(x) and test.fullmatch(y)), None)
        if cls is None:
            return None
        parts.append(cls)
    first, last = differing[0], differing[-1]
    before = _context("".join(a[:first]), tail=True)
    after = _context("".join(a[last + 1:]), tail=False)
    return before + "".join(parts[first:last + 1]) + after


def _context(text: str, *, tail: bool) -> str:
    """Up to CONTEXT_CHARS of literal text next to the volatile part, cut at a word edge."""
    if len(text) > CONTEXT_CHARS:
        text = text[-CONTEXT_CHARS:] if tail else text[:CONTEXT_CHARS]
        cut = re.search(r"\s", text)
        if cut is not None and tail:
            text = text[cut.end():]
        elif not tail and " " in text:
            text = text[:text.rindex(" ")]
    return _escape(text)


def _escape(text: str) -> str:
    return re.escape(text).replace("\\ ", " ")  # a space needs no escape: keep it readable


def _explains(pattern: re.Pattern[str], pairs: Sequence[Sequence[str]]) -> bool:
    return all(pattern.search(a) and pattern.search(b) and pattern.sub("", a) == pattern.sub("", b)
               for a, b in pairs)


__all__ = ["mask_name", "volatile_pattern"]
