"""Ranking by usage: impact, coverage and the busiest untested endpoints."""

from __future__ import annotations

import pytest

from factories import make_exchange, make_response
from shadowdiff.redact import ReportConfig
from shadowdiff.compare.judge import Verdict
from shadowdiff.model import Divergence, Trial
from shadowdiff.rank.impact import (
    capture_usage,
    coverage,
    endpoint_table,
    rank_signatures,
    uncovered,
)
from shadowdiff.rank.traffic import Usage
from shadowdiff.rank.tally import Tally


def build() -> Tally:
    tally = Tally(ReportConfig())
    ok = {"old": make_response(), "new": make_response()}
    for i in range(10):  # users: 10 replayed, 5 show a field change
        divs = (Divergence("GET /users/{id}", "body.zip", "field_missing", "1", None),) if i < 5 else ()
        tally.add(Trial(make_exchange(target=f"/users/{i}"), ok),
                  Verdict("GET /users/{id}", "diverged" if divs else "identical", divs))
    for i in range(4):  # orders: 4 replayed, all changed
        tally.add(Trial(make_exchange(target=f"/orders/{i}"), ok), Verdict(
            "GET /orders/{id}", "diverged", (Divergence("GET /orders/{id}", "status", "status_changed", 200, 500),)))
    tally.add_skip("POST /cart", make_exchange("POST", "/cart"), "method POST")
    return tally


def test_impact_is_usage_share_times_rate():
    usage = Usage({"GET /users/{id}": 900, "GET /orders/{id}": 50, "GET /health": 50}, "access_log")
    sigs = rank_signatures(build(), usage)
    assert [s["endpoint"] for s in sigs] == ["GET /users/{id}", "GET /orders/{id}"]
    users, orders = sigs
    assert users["rate"] == 0.5 and users["usage_share"] == 0.9
    assert users["impact"] == pytest.approx(0.45)
    assert orders["impact"] == pytest.approx(0.05)
    assert [s["rank"] for s in sigs] == [1, 2]


def test_without_logs_the_capture_stands_in():
    usage = capture_usage(build())
    assert usage.source == "capture" and usage.total == 15 and "no access log" in usage.note
    sigs = rank_signatures(build(), usage, by_severity=False)
    assert [s["endpoint"] for s in sigs] == ["GET /users/{id}", "GET /orders/{id}"]
    assert sigs[0]["impact"] == pytest.approx(10 / 15 * 0.5)
    assert sigs[1]["impact"] == pytest.approx(4 / 15 * 1.0)


def test_severity_lets_a_500_outrank_a_commoner_missing_field():
    sigs = rank_signatures(build(), capture_usage(build()))
    assert [s["endpoint"] for s in sigs] == ["GET /orders/{id}", "GET /users/{id}"]
    orders, users = sigs
    assert orders["severity"] == 3.0 and users["severity"] == 1.5
    assert orders["score"] == pytest.approx(4 / 15 * 3.0)
    assert users["score"] == pytest.approx(10 / 15 * 0.5 * 1.5)
    light = rank_signatures(build(), capture_usage(build()),
                            weights={"status_to_5xx": 1.0, "field_missing": 1.5, "default": 1.0})
    assert light[0]["endpoint"] == "GET /users/{id}"


def test_coverage_and_uncovered():
    usage = Usage({"GET /users/{id}": 600, "GET /orders/{id}": 200, "GET /health": 150,
                   "POST /cart": 50}, "access_log")
    cov = coverage(build(), usage)
    assert cov["verified_share"] == pytest.approx(0.3)
    assert cov["diverging_share"] == pytest.approx(0.5)
    assert cov["untested_share"] == pytest.approx(0.2)
    assert [u["endpoint"] for u in uncovered(build(), usage)] == ["GET /health", "POST /cart"]


def test_endpoint_table_types_and_latency():
    rows = endpoint_table(build(), Usage({"GET /users/{id}": 3}, "access_log"))
    users = rows[0]
    assert users["endpoint"] == "GET /users/{id}" and type(users["replayed"]) is int
    assert users["latency_ms"]["old_p50"] == 10.0 and users["latency_ms"]["new_p99"] == 10.0
