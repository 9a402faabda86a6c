"""Regex masks: every match in a string becomes a `<name>` placeholder.

A pattern may mark the volatile part of its match with groups named `mask...`
(`value="(?P<mask>[^"]*)"`): then only those groups are replaced, and the context that
found them stays comparable. Either way a mask only ever rewrites text inside its matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from shadowdiff.paths import compile_path

#: Mask names: a restricted alphabet keeps placeholders stable under the text transforms
#: (no whitespace to collapse, nothing to case-fold into another name) and easy to split on.
MASK_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class Mask:
    """Replace what `pattern` matches in string leaves at `paths` by `<name>`."""

    name: str
    """Label; a match is replaced by f"<{name}>"."""
    pattern: re.Pattern[str]
    """The regex; a string is compiled."""
    paths: tuple[str, ...] = ("body", "body.**", "header.*")
    """Location patterns the mask applies to."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not MASK_NAME.fullmatch(self.name):
            raise ValueError(f"a mask needs a name of letters, digits and - _ . : "
                             f"(got {self.name!r})")
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", re.compile(self.pattern))
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        for path in paths:
            compile_path(path)
        object.__setattr__(self, "paths", paths)


def mask_text(text: str, masks: tuple[Mask, ...], placeholders: re.Pattern[str]) -> str:
    """Apply `masks` to `text` until nothing changes; placeholders are never rewritten.

    >>> mask_text("id 42", (Mask("n", r"\\d+"),), re.compile("(<(?:n)>)"))
    'id <n>'
    """
    split = placeholders.split
    # Each pass that changes anything turns at least one unmasked character into a
    # placeholder, so this ends; running to the fixed point is what makes it idempotent.
    while True:
        new = text
        for mask in masks:
            parts = split(new)
            sub = mask.pattern.sub
            repl = _replacement(mask.name, _mask_groups(mask.pattern))
            parts[::2] = [sub(repl, part) if part else part for part in parts[::2]]
            new = "".join(parts)
        if new == text:
            return text
        text = new


@lru_cache(maxsize=256)
def _mask_groups(pattern: re.Pattern[str]) -> tuple[int, ...]:
    return tuple(sorted(i for name, i in pattern.groupindex.items() if name.startswith("mask")))


@lru_cache(maxsize=256)
def _replacement(name: str, groups: tuple[int, ...]) -> Callable[[re.Match[str]], str]:
    placeholder = f"<{name}>"
    if not groups:
        # An empty match would insert placeholders between characters: leave it alone.
        return lambda m: placeholder if m.end() > m.start() else m.group()

    def replace_groups(m: re.Match[str]) -> str:
        text, start, out = m.group(), m.start(), []
        pos = 0
        for g in groups:
            a, b = m.span(g)
            if a < b:  # a group that took part in the match and is not empty
                out += [text[pos:a - start], placeholder]
                pos = b - start
        return "".join(out) + text[pos:]
    return replace_groups
