"""`Usage`: production requests per endpoint, the weights of the ranking.

A plain record, apart from the pandas ranking (impact.py) so that building one (from
access, mail or query logs) and the configuration need not import pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

@dataclass(frozen=True)
class Usage:
    """Production requests per endpoint, and where the figures came from."""

    counts: Mapping[str, int]
    source: str                     # a key of USAGE_SOURCES
    files: tuple[str, ...] = ()
    malformed: int = 0
    note: str = ""
    window_days: float | None = None
    """The counts cover only the logs' last N days (`[rank] window_days`); None: all."""
    half_life_days: float | None = None
    """Within the window, a day this old counted half."""

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def from_production(self) -> bool:
        """Counted from production logs (access or mail), not the capture's stand-in."""
        return self.source != "capture"
