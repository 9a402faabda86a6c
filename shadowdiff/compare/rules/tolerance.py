"""Numeric tolerance: two numbers closer than a margin are the same value.

Tolerance compares two values, so it cannot be a per-tree normalization (rounding each
side separately puts 0.999 and 1.001 in different buckets). It is a filter on the diff's
output instead: a `value_changed` between two numbers at a matching location, within the
margin, is dropped. It only ever removes divergences at the locations it names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shadowdiff.model import Divergence
from shadowdiff.paths import compile_path


@dataclass(frozen=True)
class Tolerance:
    """Numbers at `paths` are equal when within `absolute`, or within `relative` of the larger."""

    paths: tuple[str, ...]
    """Location patterns (`body.**.price`)."""
    absolute: float = 0.0
    """Largest absolute difference that still counts as equal."""
    relative: float = 0.0
    """Largest difference as a fraction of the larger magnitude (0.01 = 1%)."""

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        if not paths:
            raise ValueError("a tolerance needs at least one path")
        for path in paths:
            compile_path(path)
        object.__setattr__(self, "paths", paths)
        for name in ("absolute", "relative"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if not (self.absolute or self.relative):
            raise ValueError("a tolerance needs 'absolute' or 'relative' above 0")

    def applies(self, location: str) -> bool:
        """True when `location` is one this tolerance names."""
        return any(compile_path(p).matches(location) for p in self.paths)

    def close(self, old: Any, new: Any) -> bool:
        """True when both are numbers within the margin."""
        if not (_number(old) and _number(new)):
            return False
        try:
            gap = abs(old - new)
            return gap <= self.absolute or gap <= self.relative * max(abs(old), abs(new))
        except OverflowError:  # ints beyond float range: compare exactly
            return bool(old == new)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (isinstance(value, int) or math.isfinite(value))


def apply_tolerances(divergences: list[Divergence],
                     tolerances: Sequence[Tolerance]) -> list[Divergence]:
    """The divergences that no tolerance excuses (the same list when none applies).

    >>> d = Divergence("GET /", "body.price", "value_changed", 9.99, 10.0)
    >>> apply_tolerances([d], [Tolerance(("body.price",), absolute=0.05)])
    []
    """
    if not tolerances or not divergences:
        return divergences
    kept = [d for d in divergences if not excused(d, tolerances)]
    return divergences if len(kept) == len(divergences) else kept


def excused(divergence: Divergence, tolerances: Sequence[Tolerance]) -> bool:
    """True when some tolerance covers this divergence."""
    return divergence.kind == "value_changed" and any(
        t.close(divergence.old, divergence.new) and t.applies(divergence.location)
        for t in tolerances)
