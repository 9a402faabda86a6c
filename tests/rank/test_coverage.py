"""Coverage: the busiest untested endpoints, and the capture that would cover production."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from shadowdiff.rank.coverage import (DEFAULT_FLOOR, SampleRow, _apportion, render_suggestion,
                                 suggest_sample, untested, untested_share)

USAGE = {"GET /a": 9000, "GET /b": 800, "GET /c": 150, "GET /d": 40, "GET /e": 10, "GET /z": 0}


def test_untested_lists_the_busiest_missed_endpoints() -> None:
    rows = untested(USAGE, ["GET /a", "GET /c", "GET /not-in-logs"])
    assert rows == [{"endpoint": "GET /b", "requests": 800, "usage_share": 0.08},
                    {"endpoint": "GET /d", "requests": 40, "usage_share": 0.004},
                    {"endpoint": "GET /e", "requests": 10, "usage_share": 0.001}]
    assert [r["endpoint"] for r in untested(USAGE, [], top=2)] == ["GET /a", "GET /b"]
    assert untested(USAGE, [], total=20_000)[0]["usage_share"] == 0.45
    assert untested_share(USAGE, ["GET /a", "GET /c"]) == pytest.approx(0.085)
    assert untested_share({}, []) == 0.0


def test_suggest_sample_covers_the_target_with_the_fewest_endpoints() -> None:
    rows = suggest_sample(USAGE, 0.99, budget=1000)
    assert [(e, n, round(c, 4)) for e, n, c, *_ in rows] == [
        ("GET /a", 9000, 0.9), ("GET /b", 800, 0.98), ("GET /c", 150, 0.995)]
    # proportional parts of the budget (904.5, 80.4, 15.1), then the floor of 30
    assert [r.capture for r in rows] == [905, 80, DEFAULT_FLOOR]
    assert [r.endpoint for r in suggest_sample(USAGE, 1.0)] == ["GET /a", "GET /b", "GET /c",
                                                                "GET /d", "GET /e"]
    assert [r.endpoint for r in suggest_sample(USAGE, 0.5)] == ["GET /a"]
    assert suggest_sample({}, 0.99) == []


def test_capture_never_exceeds_production_and_have_gives_need() -> None:
    rows = suggest_sample({"GET /a": 100, "GET /b": 3}, 1.0, budget=50, floor=10,
                          have={"GET /a": 60})
    assert [(r.capture, r.have, r.need) for r in rows] == [(49, 60, 0), (3, 0, 3)]


def test_total_is_the_denominator_for_filtered_counts() -> None:
    # only GET replays: POST traffic still counts in the shares, so 99% may be out of reach
    rows = suggest_sample({"GET /a": 50, "GET /b": 30}, 0.99, total=100)
    assert [round(r.cumulative_share, 2) for r in rows] == [0.5, 0.8]


@pytest.mark.parametrize("kwargs", [{"target_share": 0}, {"target_share": 1.2},
                                    {"budget": -1}, {"floor": -5}])
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        suggest_sample(USAGE, **kwargs)  # type: ignore[arg-type]


_COUNTS = st.dictionaries(st.from_regex(r"GET /[a-z]{1,6}", fullmatch=True),
                          st.integers(0, 10**6), max_size=30)


@given(counts=_COUNTS, target=st.floats(0.01, 1.0), budget=st.integers(0, 10**5),
       floor=st.integers(0, 100))
def test_suggestion_is_the_shortest_busiest_prefix(counts: dict[str, int], target: float,
                                                   budget: int, floor: int) -> None:
    rows = suggest_sample(counts, target, budget=budget, floor=floor)
    total = sum(counts.values())
    busiest = sorted((n for n in counts.values() if n), reverse=True)
    assert [r.requests for r in rows] == busiest[: len(rows)]
    if total:
        assert rows[-1].cumulative_share >= target - 1e-9
        assert len(rows) == 1 or rows[-2].cumulative_share < target
    for row in rows:
        assert min(floor, row.requests) <= row.capture <= row.requests


@given(st.lists(st.integers(0, 10**6), max_size=40), st.integers(0, 10**6))
def test_apportion_sums_to_the_budget(weights: list[int], budget: int) -> None:
    parts = _apportion(weights, budget)
    assert len(parts) == len(weights)
    if sum(weights):
        assert sum(parts) == budget
        for w, p in zip(weights, parts):
            assert abs(p - budget * w / sum(weights)) < 1


def test_render_suggestion() -> None:
    rows = suggest_sample(USAGE, 0.99, budget=1000, have={"GET /a": 500})
    console = Console(record=True, width=140)
    console.print(render_suggestion(rows, target_share=0.99, usage_counts=USAGE))
    text = " ".join(console.export_text().split())  # titles wrap to the table's width
    assert "Suggested capture: 3 endpoints cover 99.5% of production traffic (target 99%)" in text
    assert "1,015 exchanges" in text and "GET /c" in text and "GET /d" not in text
    assert "need" in text and "405" in text
    assert "2 quieter endpoints (50 requests) left out" in text


def test_render_an_empty_suggestion_and_sample_rows_unpack() -> None:
    console = Console(record=True, width=100)
    console.print(render_suggestion([], target_share=0.995))
    text = " ".join(console.export_text().split())
    assert "0 endpoints cover 0.0% of production traffic (target 99.5%)" in text
    endpoint, requests, cumulative, *_ = SampleRow("GET /a", 5, 1.0, 1.0, 5)
    assert (endpoint, requests, cumulative) == ("GET /a", 5, 1.0)
