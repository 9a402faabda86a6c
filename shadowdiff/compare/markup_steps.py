"""Where the children of a markup element are: their locations, and their names aligned.

Used by markup.py's descent. A child's step is its name, indexed among same-named siblings
when the name repeats (`tr[3]`); its folded location has every index as `[*]`, as
signatures fold it, which is how the divergence cap tells rows already visited.
"""

from __future__ import annotations

import difflib
import re

from shadowdiff.paths import join_location

INDEXED = re.compile(r"\[\d+\]")


class Steps:
    """The location of each child, made when asked for: its name, indexed among same-named
    siblings when the name repeats (a page has hundreds of rows; few are ever named)."""

    __slots__ = ("names", "loc", "_counts", "_index", "_folded")

    def __init__(self, names: list[str], loc: str) -> None:
        self.names, self.loc = names, loc
        self._counts: dict[str, int] | None = None
        self._index: list[int] | None = None
        self._folded: dict[str, str] = {}

    @property
    def counts(self) -> dict[str, int]:
        """How many children bear each name (made when a location is first asked for).
        A plain dict: a Counter's constructor costs more than counting three cells."""
        if self._counts is None:
            names = self.names
            if names and names.count(names[0]) == len(names):  # rows, cells: one name (in C)
                self._counts = {names[0]: len(names)}
            else:
                counts = self._counts = dict.fromkeys(names, 0)
                for name in names:
                    counts[name] += 1
        return self._counts

    def __getitem__(self, i: int) -> str:
        name = self.names[i]
        step = join_location(self.loc, name)
        if self.counts[name] > 1 or name == "text":
            step = f"{step}[{self.index()[i]}]"
        return step

    def folded(self, i: int) -> str:
        """The location of child `i` with every index folded to `[*]` (as signatures fold it),
        made once per name: enough to tell whether a row like it was already visited."""
        name = self.names[i]
        found = self._folded.get(name)
        if found is None:
            step = join_location(INDEXED.sub("[*]", self.loc), name)
            found = self._folded[name] = (f"{step}[*]" if self.counts[name] > 1 or name == "text"
                                          else step)
        return found

    def index(self) -> list[int]:
        """Each child's position among the siblings of its name."""
        if self._index is None:
            if len(self.counts) == 1:  # rows, cells: all of one name
                self._index = list(range(len(self.names)))
            else:
                seen = dict.fromkeys(self.counts, 0)
                self._index = []
                for name in self.names:
                    self._index.append(seen[name])
                    seen[name] += 1
        return self._index


def name_opcodes(old: list[str], new: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib opcodes over two lists of names, without its quadratic case: a run of rows all
    named `tr` is paired position by position, and only a short middle is searched."""
    if old == new:
        return [("equal", 0, len(old), 0, len(new))] if old else []
    lo = 0
    while lo < min(len(old), len(new)) and old[lo] == new[lo]:
        lo += 1
    hi = 0
    while hi < min(len(old), len(new)) - lo and old[-1 - hi] == new[-1 - hi]:
        hi += 1
    ops = [("equal", 0, lo, 0, lo)] if lo else []
    middle_old, middle_new = old[lo:len(old) - hi], new[lo:len(new) - hi]
    if middle_old or middle_new:
        if len(middle_old) * len(middle_new) > 40_000:
            ops.append(("replace", lo, len(old) - hi, lo, len(new) - hi))
        else:
            matcher = difflib.SequenceMatcher(None, middle_old, middle_new, autojunk=False)
            ops += [(tag, i1 + lo, i2 + lo, j1 + lo, j2 + lo)
                    for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
    if hi:
        ops.append(("equal", len(old) - hi, len(old), len(new) - hi, len(new)))
    return ops


__all__ = ["INDEXED", "Steps", "name_opcodes"]
