"""Severity weights by divergence kind, severity-weighted ranking, and recent-usage windows."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import make_exchange, make_response
from shadowdiff.redact import ReportConfig
from shadowdiff.compare.judge import Verdict
from shadowdiff.model import DIVERGENCE_KINDS, FAILURE_KINDS, Divergence, Trial
from shadowdiff.rank.impact import rank_signatures
from shadowdiff.rank.traffic import Usage
from shadowdiff.rank.severity import (DEFAULT_WEIGHTS, WEIGHT_REASONS, severity,
                                 severity_case, severity_weights, weight_recent)
from shadowdiff.rank.tally import Tally
from shadowdiff.rank.usage import read_usage

DAY = 86_400.0


def test_every_divergence_kind_and_every_weight_is_explained() -> None:
    for kind in DIVERGENCE_KINDS:
        assert severity_case(kind, None, None) in DEFAULT_WEIGHTS
    assert set(WEIGHT_REASONS) == set(DEFAULT_WEIGHTS)


def test_the_order_the_weights_promise() -> None:
    w = DEFAULT_WEIGHTS
    assert w["status_to_5xx"] == w["failure"] > w["status_to_4xx"] > w["status_class_changed"] \
        > w["field_missing"] > w["value_changed"] > w["header_changed"] > w["order_changed"] > 0


@pytest.mark.parametrize("old,new,case,weight", [
    (200, 500, "status_to_5xx", 3.0),
    (404, 503, "status_to_5xx", 3.0),
    (200, 404, "status_to_4xx", 2.5),
    (302, 401, "status_to_4xx", 2.5),
    (200, 301, "status_class_changed", 2.0),
    (404, 200, "status_class_changed", 2.0),
    (500, 200, "status_recovered", 1.0),
    (503, 404, "status_recovered", 1.0),
    (200, 201, "status_changed", 1.0),
    (500, 502, "status_changed", 1.0),
    (None, "x", "status_changed", 1.0),
])
def test_status_changes_by_class(old: Any, new: Any, case: str, weight: float) -> None:
    assert severity_case("status_changed", old, new) == case
    assert severity("status_changed", old, new) == weight


@pytest.mark.parametrize("failure", FAILURE_KINDS)
def test_failures_weigh_most_unless_new_answered(failure: str) -> None:
    assert severity("failure", 200, failure) == 3.0
    assert severity("failure", failure, 200) == 1.0
    assert severity("failure", failure, 500) == 3.0


def test_headers_clients_act_on_weigh_more() -> None:
    assert severity("header_changed", "a", "b", location="header.content-type") == 1.0
    assert severity("header_missing", "a", None, location="header.Location") == 1.0
    assert severity("header_changed", "a", "b", location="header.server") == 0.5
    assert severity("header_added", None, "b") == 0.3


def test_unknown_kinds_take_the_default_and_overrides_apply() -> None:
    weights = severity_weights({"default": 2, "order_changed": 0})
    assert severity("brand_new_kind", 1, 2, weights=weights) == 2.0
    assert severity("order_changed", [1, 2], [2, 1], weights=weights) == 0.0
    assert severity("value_changed", 1, 2, weights={"x": 9.0}) == 1.0  # no default: 1.0


@pytest.mark.parametrize("overrides,message", [
    ({"status_to_6xx": 1.0}, "unknown severity key 'status_to_6xx'"),
    ({"failure": -1}, "must be a number >= 0"),
    ({"failure": float("nan")}, "must be a number >= 0"),
    ({"failure": True}, "must be a number >= 0"),
    ({"failure": "3"}, "must be a number >= 0"),
])
def test_bad_overrides_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        severity_weights(overrides)


_VALUES = st.one_of(st.none(), st.integers(-1000, 1000), st.text(max_size=5), st.booleans())


@given(kind=st.one_of(st.sampled_from(DIVERGENCE_KINDS), st.text(max_size=12)), old=_VALUES,
       new=_VALUES, location=st.one_of(st.none(), st.text(max_size=20)))
def test_severity_is_a_known_weight_for_any_input(kind: str, old: Any, new: Any,
                                                  location: str | None) -> None:
    assert severity(kind, old, new, location=location) in set(DEFAULT_WEIGHTS.values())


def _tally() -> Tally:
    """Users: 10 replayed, 5 with a changed header; orders: 4 replayed, 1 now a 500."""
    tally = Tally(ReportConfig())
    ok = {"old": make_response(), "new": make_response()}
    for i in range(10):
        divs = (Divergence("GET /users/{id}", "header.server", "header_changed", "a", "b"),) \
            if i < 5 else ()
        tally.add(Trial(make_exchange(target=f"/users/{i}"), ok),
                  Verdict("GET /users/{id}", "diverged" if divs else "identical", divs))
    for i in range(4):
        divs = (Divergence("GET /orders/{id}", "status", "status_changed", 200, 500),) \
            if i == 0 else ()
        tally.add(Trial(make_exchange(target=f"/orders/{i}"), ok),
                  Verdict("GET /orders/{id}", "diverged" if divs else "identical", divs))
    return tally


def test_rank_signatures_orders_by_score_and_keeps_impact() -> None:
    usage = Usage({"GET /users/{id}": 500, "GET /orders/{id}": 500}, "access_log")
    plain = rank_signatures(_tally(), usage, by_severity=False)
    assert [s["kind"] for s in plain] == ["header_changed", "status_changed"]  # 0.25 > 0.125
    weighted = rank_signatures(_tally(), usage)
    assert [(s["rank"], s["kind"]) for s in weighted] == [(1, "status_changed"),
                                                          (2, "header_changed")]
    status, header = weighted
    assert status["severity"] == 3.0 and status["score"] == pytest.approx(0.375)
    assert header["severity"] == 0.5 and header["score"] == pytest.approx(0.125)
    assert status["impact"] == pytest.approx(0.125)  # impact itself is untouched


# -- recent usage ------------------------------------------------------------------------------


def test_weight_recent_keeps_the_window_ending_at_the_latest_bucket() -> None:
    buckets = {("GET /a", 0.0): 100, ("GET /a", 9 * DAY): 10, ("GET /b", 8 * DAY): 5,
               ("GET /c", 1 * DAY): 7}
    assert weight_recent(buckets, 7) == {"GET /a": 10.0, "GET /b": 5.0}
    assert weight_recent(buckets, 7, now=8 * DAY) == {"GET /b": 5.0}  # day 1 is 7 days old
    assert weight_recent(buckets, 7, now=7.5 * DAY) == {"GET /c": 7.0}  # later ones: future
    assert weight_recent(buckets, 10) == {"GET /a": 110.0, "GET /c": 7.0, "GET /b": 5.0}
    assert weight_recent({}, 7) == {}


def test_weight_recent_with_a_half_life() -> None:
    buckets = {("GET /a", 0.0): 8, ("GET /a", 2 * DAY): 8}
    assert weight_recent(buckets, 30, half_life_days=2) == {"GET /a": pytest.approx(12.0)}


def test_weight_recent_refuses_a_bad_window() -> None:
    with pytest.raises(ValueError, match="window_days"):
        weight_recent({}, 0)


def _log(tmp_path: Path, days: list[int]) -> Path:
    line = '1.2.3.4 - - [{:02d}/Jun/2024:10:00:00 +0000] "GET /u/{} HTTP/1.1" 200 5 "-" "ua"\n'
    path = tmp_path / "access.log"
    path.write_text("".join(line.format(d, i) for i, d in enumerate(days)))
    return path


def test_a_usage_table_is_windowed_by_its_day_buckets(tmp_path: Path) -> None:
    table = read_usage([str(_log(tmp_path, [1, 2, 3]))])
    assert weight_recent(table, 7) == {"GET /u/{id}": 3.0}
    table = read_usage([str(_log(tmp_path, [1, 20]))])
    assert weight_recent(table, 7) == {"GET /u/{id}": 1.0}
    assert weight_recent(table, 30, half_life_days=19) == {"GET /u/{id}": pytest.approx(1.5)}
    # a table built without buckets is taken whole only when its span fits the window
    bare = replace(table, by_day={})
    assert weight_recent(replace(bare, first_seen=DAY, last_seen=2 * DAY), 7) == {
        "GET /u/{id}": 2.0}
    with pytest.raises(ValueError, match=r"span 19.0 days.*by_day"):
        weight_recent(bare, 7)


def test_a_usage_table_without_times(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"method": "GET", "path": "/a", "status": 200}\n')
    table = read_usage([str(path)], fmt="json", json_fields={"target": "path"})
    assert table.first_seen is None and Counter(table.requests_by_endpoint()) == {"GET /a": 1}
    with pytest.raises(ValueError, match="no time field"):
        weight_recent(table, 7)
