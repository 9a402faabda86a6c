"""The `[rank]` settings as the ranking takes them (parsed by shadowdiff.config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankConfig:
    """Significance margins (noise) and the severity weighting of the ranking."""

    min_relative_pct: float = 20.0
    min_absolute_pct: float = 0.03
    severity: bool = True
    """Rank by score = impact x severity of the kind; False ranks by impact alone."""
    severity_weights: tuple[tuple[str, float], ...] = ()
    """Overrides of shadowdiff.rank.severity.DEFAULT_WEIGHTS (docs/endpoints.md)."""
    window_days: float | None = None
    """Count only the logs' last N days (ending at their latest day): today's traffic mix,
    not last quarter's. None counts every logged request."""
    half_life_days: float | None = None
    """Within the window, a day this old counts half (needs `window_days`)."""
