"""Location paths: the one syntax for where something is in a lifted tree.

    body.items[3].price      a concrete location
    body.items[*].id         `[*]` any list index
    header.*                 `*` any one step (a key or an index)
    body.**.created_at       `**` zero or more steps
    body["odd key"]          a key that is not an identifier, JSON-quoted
    body.html.head.link[1]@href   `@name` an attribute of a markup element (the key "@name")

Locations (what diff reports) and path patterns (what rules match) share this syntax;
normalize, diff and the reports use these functions so they always agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

Key = Union[str, int]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\d+")
# Attribute names of HTML and XML elements (`@href`, `@xml:lang`); others are JSON-quoted.
_ATTR = re.compile(r"@[A-Za-z_:][A-Za-z0-9_.:-]*")

# Step kinds of a compiled path pattern.
KEY, POS, ANY, ANY_INDEX, DEEP = "key", "index", "*", "[*]", "**"

Step = tuple[str, Union[str, int, None]]


class AnyPosition:
    """The key an element of an unordered list is reached by: any index, no literal one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "[*]"


ANY_POSITION = AnyPosition()


class Probe(str):
    """A key equal to no name a pattern can spell (the empty string is not a name)."""

    __slots__ = ()


# -- path patterns ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A compiled location pattern such as `body.items[*].id` or `body.**.created_at`."""

    text: str
    """The pattern as written."""
    steps: tuple[Step, ...]
    """(kind, value) per step: `key`/name, `index`/int, `*`, `[*]`, `**`."""

    def matches(self, location: str) -> bool:
        """True when the concrete `location` is matched by this pattern.

        >>> compile_path("body.**.id").matches("body.items[3].id")
        True

        A `[*]` in the location (as in a signature) is an unknown index: only wildcards
        match it.
        """
        positions = closure(self.steps, {0})
        for key in parse_location(location):
            moved: set[int] = set()
            for i in positions:
                moved |= advance(self.steps, i, key)
            positions = closure(self.steps, moved)
            if not positions:
                return False
        return len(self.steps) in positions


@lru_cache(maxsize=4096)
def compile_path(pattern: str) -> PathPattern:
    """Parse a location pattern; raise ValueError naming the position of a syntax error.

    >>> compile_path("body.items[*].id").steps
    (('key', 'body'), ('key', 'items'), ('[*]', None), ('key', 'id'))
    """
    if not isinstance(pattern, str):
        raise ValueError(f"path pattern must be a string, not {type(pattern).__name__}")
    return PathPattern(pattern, _parse(pattern))


def parse_location(location: str) -> tuple[Key | AnyPosition, ...]:
    """Split a concrete location into its keys: `body.a[2]` -> ("body", "a", 2).

    `[*]` yields ANY_POSITION; `*` and `**` are errors, as in any malformed location.
    """
    keys: list[Key | AnyPosition] = []
    for kind, value in _parse(location):
        if kind in (KEY, POS):
            keys.append(value)  # type: ignore[arg-type]
        elif kind == ANY_INDEX:
            keys.append(ANY_POSITION)
        else:
            raise ValueError(f"invalid location {location!r}: {kind!r} is only allowed in patterns")
    return tuple(keys)


def join_location(prefix: str, key: Key) -> str:
    """Extend a location by one step: `.name`, `["odd key"]` or `[3]`.

    >>> join_location("body", "odd key"), join_location("", "body"), join_location("body", 3)
    ('body["odd key"]', 'body', 'body[3]')
    """
    if type(key) is int:
        return f"{prefix}[{key}]"
    if isinstance(key, str) and _IDENT.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key if isinstance(key, str) else str(key))}]"


def join_attribute(prefix: str, name: str) -> str:
    """Extend a markup location by an attribute: `@href`, or `["@odd name"]`.

    >>> join_attribute("body.html.head.link[1]", "href")
    'body.html.head.link[1]@href'
    """
    key = "@" + name
    return prefix + key if _ATTR.fullmatch(key) else join_location(prefix, key)


def _parse(text: str) -> tuple[Step, ...]:
    if not text:
        raise ValueError("invalid path pattern '': it is empty")
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "[":
            pos, step = _parse_bracket(text, pos)
        elif text[pos] == "@" and steps:
            pos, step = _parse_attribute(text, pos)
        else:
            if steps:
                if text[pos] != ".":
                    raise _syntax(text, pos, "expected '.' or '['")
                pos += 1
            pos, step = _parse_name(text, pos)
        steps.append(step)
    return tuple(steps)


def _parse_name(text: str, pos: int) -> tuple[int, Step]:
    if text.startswith("**", pos):
        end, step = pos + 2, (DEEP, None)
    elif text.startswith("*", pos):
        end, step = pos + 1, (ANY, None)
    else:
        m = _IDENT.match(text, pos)
        if m is None:
            raise _syntax(text, pos, "expected a name, '*' or '**'")
        end, step = m.end(), (KEY, m.group())
    if end < len(text) and text[end] not in ".[@":
        raise _syntax(text, end, "expected '.', '[' or '@' after a step")
    return end, step


def _parse_attribute(text: str, pos: int) -> tuple[int, Step]:
    # `a@href` is the key "@href" under `a`: the same key `a["@href"]` names.
    m = _ATTR.match(text, pos)
    if m is None:
        raise _syntax(text, pos + 1, "expected an attribute name after '@'")
    if m.end() < len(text) and text[m.end()] not in ".[@":
        raise _syntax(text, m.end(), "expected '.', '[' or '@' after a step")
    return m.end(), (KEY, m.group())


def _parse_bracket(text: str, pos: int) -> tuple[int, Step]:
    inner = pos + 1
    step: Step
    if text.startswith("*]", inner):
        return inner + 2, (ANY_INDEX, None)
    m = _INDEX.match(text, inner)
    if m is not None:
        end, step = m.end(), (POS, int(m.group()))
    elif text.startswith('"', inner):
        try:
            key, end = json.decoder.scanstring(text, inner + 1)  # type: ignore[attr-defined]
        except json.JSONDecodeError as exc:
            raise _syntax(text, inner, f"bad JSON string ({exc.msg})") from exc
        step = (KEY, key)
    else:
        raise _syntax(text, inner, "expected an index, '*' or a JSON string inside [ ]")
    if not text.startswith("]", end):
        raise _syntax(text, end, "expected ']'")
    return end + 1, step


def _syntax(text: str, pos: int, why: str) -> ValueError:
    return ValueError(f"invalid path pattern {text!r} at position {pos}: {why}")


def advance(steps: tuple[Step, ...], i: int, key: Any) -> set[int]:
    """Positions reached from position `i` of a pattern by consuming `key`."""
    if i >= len(steps):
        return set()
    kind, value = steps[i]
    if kind == DEEP:
        return {i}  # `**` stays put; `closure` adds the step after it
    if kind == ANY:
        return {i + 1}
    is_index = type(key) is int or key is ANY_POSITION
    if kind == ANY_INDEX:
        return {i + 1} if is_index else set()
    if kind == POS:
        return {i + 1} if type(key) is int and key == value else set()
    return {i + 1} if type(key) is str and key == value else set()


def closure(steps: tuple[Step, ...], positions: set[int]) -> set[int]:
    """Add the positions a `**` reaches by matching zero steps."""
    out = set(positions)
    for i in positions:
        while i < len(steps) and steps[i][0] == DEEP:
            i += 1
            out.add(i)
    return out
