"""shadowdiff.nightly.latency: percentiles, failure rates, and regressions only when sound."""

from __future__ import annotations

from testpaths import GOLDEN
import json
import math

import numpy as np
import pytest

from shadowdiff.nightly.latency import (
    Percentiles,
    _bootstrap_quantile,
    compare_endpoints,
    enough_samples,
    error_rates,
    findings,
    percentiles,
    regression,
)

GOLDEN = GOLDEN / "summary.json"


def lognormal(median_ms: float, n: int, seed: int, sigma: float = 0.5) -> list[float]:
    """Response-time-like samples: skewed, with a tail."""
    rng = np.random.default_rng(seed)
    return list(rng.lognormal(math.log(median_ms), sigma, n))


def test_a_clear_regression_is_flagged() -> None:
    old, new = lognormal(10, 500, seed=1), lognormal(20, 500, seed=2)
    finding = regression(old, new, metric="p95", endpoint="GET /users/{id}")
    assert finding is not None
    assert 1.6 < finding.ratio < 2.5 and finding.ratio_low > 1.2
    assert finding.ratio_low <= finding.ratio <= finding.ratio_high
    assert (finding.n_old, finding.n_new, finding.confidence) == (500, 500, 0.95)
    assert finding.key == "GET /users/{id} latency.p95 latency_regression"
    assert "p95" in finding.describe() and "GET /users/{id}" in finding.describe()


def test_noise_is_not_flagged() -> None:
    for seed in range(20):
        old, new = lognormal(10, 2000, seed=seed), lognormal(10, 2000, seed=seed + 100)
        for metric in ("p50", "p95", "p99"):
            assert regression(old, new, metric=metric) is None


def test_the_confidence_test_alone_keeps_false_alarms_near_its_level() -> None:
    # With the size threshold off, only the bootstrap stands between noise and an alarm:
    # at 95% one-sided, about 5 in 100 identical-distribution pairs may be flagged.
    flagged = sum(
        regression(lognormal(10, 300, seed=s), lognormal(10, 300, seed=s + 1000),
                   min_ratio=1.0, min_delta_ms=0.0, seed=s) is not None
        for s in range(100))
    assert flagged <= 12


def test_a_modest_regression_among_noise_is_flagged_with_enough_samples() -> None:
    old, new = lognormal(10, 2000, seed=3), lognormal(13, 2000, seed=4)  # +30%
    assert regression(old, new, metric="p50") is not None


def test_tiny_samples_are_not_flagged() -> None:
    old, new = [10.0] * 10, [100.0] * 10
    assert regression(old, new) is None
    assert not enough_samples(10)


def test_a_p99_needs_a_real_tail() -> None:
    old, new = lognormal(10, 200, seed=5), lognormal(30, 200, seed=6)
    assert regression(old, new, metric="p95") is not None
    assert regression(old, new, metric="p99") is None  # 200 samples: 2 beyond the p99
    assert enough_samples(500, "p99") and not enough_samples(499, "p99")


def test_sub_millisecond_wobbles_are_not_news() -> None:
    old, new = lognormal(0.2, 1000, seed=7), lognormal(0.4, 1000, seed=8)
    assert regression(old, new) is None
    assert regression(old, new, min_delta_ms=0.0) is not None


def test_faster_is_never_a_regression() -> None:
    assert regression(lognormal(20, 500, seed=9), lognormal(10, 500, seed=10)) is None


def test_results_are_reproducible_with_a_seed() -> None:
    old, new = lognormal(10, 300, seed=11), lognormal(14, 300, seed=12)
    assert regression(old, new, seed=3) == regression(old, new, seed=3)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="p90"):
        regression([1.0] * 100, [2.0] * 100, metric="p90")
    with pytest.raises(ValueError, match="confidence"):
        regression([1.0] * 100, [2.0] * 100, confidence=1.5)


def test_the_fast_bootstrap_matches_brute_force_resampling() -> None:
    values = np.sort(np.asarray(lognormal(10, 400, seed=13)))
    q, k = 0.95, math.ceil(0.95 * 400)
    fast = _bootstrap_quantile(values, q, 20000, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    brute = np.sort(values[rng.integers(0, 400, size=(20000, 400))], axis=1)[:, k - 1]
    for point in (0.05, 0.5, 0.95):
        assert np.quantile(fast, point) == pytest.approx(np.quantile(brute, point), rel=0.03)


def test_percentiles_match_the_summary_method() -> None:
    samples = lognormal(10, 101, seed=14)
    p = percentiles(samples)
    assert p.n == 101
    assert p.p95 == round(float(np.percentile(samples, 95)), 2)
    assert percentiles([]) == Percentiles(0, None, None, None)


def test_error_rates_come_from_the_summary() -> None:
    summary = json.loads(GOLDEN.read_text(encoding="utf-8"))
    rates = error_rates(summary)
    assert rates["GET /health"] == {"old": 0.0, "new": pytest.approx(5 / 30)}
    assert rates["GET /users/{id}"] == {"old": 0.0, "new": 0.0}


def test_compare_endpoints_and_findings() -> None:
    summary = json.loads(GOLDEN.read_text(encoding="utf-8"))
    samples = {
        "GET /health": {"old": lognormal(1, 300, 15), "new": lognormal(5, 300, 16)},
        "GET /users/{id}": {"old": lognormal(3, 300, 17), "new": lognormal(3, 300, 18),
                            "old_replica": lognormal(3, 300, 19)},
        "GET /export": {"old": [], "new": []},
    }
    table = {row.endpoint: row for row in compare_endpoints(samples, summary)}
    assert table["GET /health"].finding is not None
    assert table["GET /health"].new_error_rate == pytest.approx(5 / 30)
    assert table["GET /users/{id}"].finding is None
    assert table["GET /export"].old == Percentiles(0, None, None, None)
    assert table["GET /export"].old_error_rate is None  # not in the summary's endpoints
    assert [f.endpoint for f in findings(samples)] == ["GET /health"]
