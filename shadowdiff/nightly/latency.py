"""Latency and errors: old vs new response times per endpoint, and sound regressions.

Sits beside rank: it reads the tally's latency reservoirs (per endpoint and role, at
most tally.LATENCY_SAMPLES each) and the summary's failure counts. "Is the new system
fast enough?" gets a yes/no per endpoint that does not cry wolf: a regression is
flagged only when it is large enough to matter AND a bootstrap confidence interval on
the new/old ratio says it is not noise.

>>> regression([10.0] * 200, [30.0] * 200).ratio      # doctest: +SKIP
3.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
MIN_SAMPLES = 30          # per side: below this a percentile says little
MIN_TAIL = 5              # samples at or beyond the percentile, e.g. p99 needs n >= 500
RESAMPLES = 4000
_FLOOR_MS = 1e-3          # a 0 ms old percentile would make every ratio infinite


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50/p95/p99 of one role's samples, in ms (None without samples)."""

    n: int
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Finding:
    """A latency regression that passed both the size and the confidence test."""

    endpoint: str
    metric: str               # "p50" | "p95" | "p99"
    old_ms: float
    new_ms: float
    ratio: float              # new_ms / old_ms
    ratio_low: float          # one-sided lower confidence bound of the ratio (> 1)
    ratio_high: float         # the matching upper bound, for display
    confidence: float
    n_old: int
    n_new: int

    @property
    def key(self) -> str:
        """A signature-like key, so `shadowdiff accept` can accept a known slowdown."""
        return f"{self.endpoint} latency.{self.metric} latency_regression"

    def describe(self) -> str:
        """One line for people: what got slower, by how much, how sure."""
        return (f"{self.endpoint}: {self.metric} {self.old_ms:.1f} ms -> {self.new_ms:.1f} ms "
                f"(x{self.ratio:.2f}, {self.confidence:.0%} CI x{self.ratio_low:.2f}.."
                f"x{self.ratio_high:.2f}, n={self.n_old}/{self.n_new})")


@dataclass(frozen=True, slots=True)
class EndpointLatency:
    """One endpoint's old vs new response times and failure rates."""

    endpoint: str
    old: Percentiles
    new: Percentiles
    old_error_rate: float | None   # share of replayed requests that failed (transport)
    new_error_rate: float | None
    finding: Finding | None


def percentiles(samples: Sequence[float]) -> Percentiles:
    """p50/p95/p99 with numpy's default (linear) method, as summary.json reports them."""
    if not len(samples):
        return Percentiles(0, None, None, None)
    p50, p95, p99 = (round(float(v), 2) for v in np.percentile(samples, [50, 95, 99]))
    return Percentiles(len(samples), p50, p95, p99)


def enough_samples(n: int, metric: str = "p95") -> bool:
    """Whether n samples can support a claim about `metric` (MIN_SAMPLES, MIN_TAIL)."""
    q = _quantile(metric)
    return n >= MIN_SAMPLES and n * (1.0 - q) >= MIN_TAIL - 1e-9


def regression(old_samples: Sequence[float], new_samples: Sequence[float], *,
               metric: str = "p95", min_ratio: float = 1.2, confidence: float = 0.95,
               seed: int = 0, min_delta_ms: float = 1.0, endpoint: str = "",
               resamples: int = RESAMPLES) -> Finding | None:
    """A Finding when new's `metric` is slower than old's, soundly; else None.

    Flagged only when all hold: both sides have enough samples (`enough_samples`); the
    point ratio new/old is at least `min_ratio` and new is `min_delta_ms` slower (so a
    0.2 -> 0.3 ms wobble is not news); and the one-sided `confidence` lower bound of the
    bootstrapped ratio is above 1 (new is slower, not just unlucky).
    """
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1), not {confidence}")
    q = _quantile(metric)
    old, new = np.sort(np.asarray(old_samples, float)), np.sort(np.asarray(new_samples, float))
    if not (enough_samples(len(old), metric) and enough_samples(len(new), metric)):
        return None
    old_ms, new_ms = _nearest_rank(old, q), _nearest_rank(new, q)
    ratio = new_ms / max(old_ms, _FLOOR_MS)
    if ratio < min_ratio or new_ms - old_ms < min_delta_ms:
        return None
    rng = np.random.default_rng(seed)
    ratios = (_bootstrap_quantile(new, q, resamples, rng)
              / np.maximum(_bootstrap_quantile(old, q, resamples, rng), _FLOOR_MS))
    low, high = np.quantile(ratios, [1.0 - confidence, confidence])
    if low <= 1.0:
        return None
    return Finding(endpoint, metric, round(old_ms, 2), round(new_ms, 2), round(ratio, 3),
                   round(float(low), 3), round(float(high), 3), confidence, len(old), len(new))


def _quantile(metric: str) -> float:
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown latency metric {metric!r}; one of "
                         f"{', '.join(METRICS)}") from None


def _nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The ceil(q*n)-th smallest value: the quantile whose bootstrap is exact below."""
    k = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[k - 1])


def _bootstrap_quantile(sorted_values: np.ndarray, q: float, resamples: int,
                        rng: np.random.Generator) -> np.ndarray:
    """`resamples` draws of the nearest-rank quantile of a bootstrap resample.

    Resampling n indices uniformly and taking the k-th smallest is the same as taking
    floor(n * U) where U is the k-th order statistic of n uniforms, i.e. U ~ Beta(k,
    n - k + 1). So each replicate costs one Beta draw instead of n draws and a sort:
    the exact bootstrap distribution, fast enough for hundreds of endpoints.
    """
    n = len(sorted_values)
    k = max(1, math.ceil(q * n))
    u = rng.beta(k, n - k + 1, size=resamples)
    idx = np.minimum((u * n).astype(np.int64), n - 1)
    return sorted_values[idx]


def error_rates(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """endpoint -> role -> share of its replayed requests that failed (timeouts, resets...).

    From summary.json's `failures` and `endpoints`; HTTP error statuses are answers, not
    failures, and show up as `status_changed` signatures instead.
    """
    replayed = {e["endpoint"]: e["replayed"] for e in summary.get("endpoints", [])}
    rates: dict[str, dict[str, float]] = {ep: {"old": 0.0, "new": 0.0} for ep in replayed}
    for f in summary.get("failures", []):
        total = replayed.get(f["endpoint"])
        if total:
            by_role = rates[f["endpoint"]]
            by_role[f["role"]] = by_role.get(f["role"], 0.0) + f["count"] / total
    return rates


def compare_endpoints(samples: Mapping[str, Mapping[str, Sequence[float]]],
                      summary: Mapping[str, Any] | None = None, *,
                      metric: str = "p95", **options: Any) -> list[EndpointLatency]:
    """Per endpoint: old vs new percentiles, failure rates and any regression.

    `samples` is endpoint -> role -> latency samples in ms, as the tally keeps them:
    ``{ep: stats.latency for ep, stats in tally.endpoints.items()}``. `options` go to
    `regression` (min_ratio, confidence, seed, min_delta_ms).
    """
    rates = error_rates(summary) if summary is not None else {}
    out = []
    for endpoint in sorted(samples):
        roles = samples[endpoint]
        old, new = roles.get("old", ()), roles.get("new", ())
        ep_rates = rates.get(endpoint, {})
        out.append(EndpointLatency(
            endpoint, percentiles(old), percentiles(new),
            ep_rates.get("old"), ep_rates.get("new"),
            regression(old, new, metric=metric, endpoint=endpoint, **options)))
    return out


def findings(samples: Mapping[str, Mapping[str, Sequence[float]]], *,
             metric: str = "p95", **options: Any) -> list[Finding]:
    """Only the regressions, worst ratio first (what the `latency` gate reads)."""
    table = compare_endpoints(samples, metric=metric, **options)
    found = [row.finding for row in table if row.finding is not None]
    return sorted(found, key=lambda f: (-f.ratio, f.endpoint))
