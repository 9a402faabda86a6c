"""The arrival schedule: production spacing, multiples, cycles, bounds, bad input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from factories import make_exchange
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.errors import CaptureError
from shadowdiff.load.schedule import arrivals, load_plan, parse_steps, ramp_steps
from shadowdiff.replay.runner import ReplayPolicy


def capture(path: Path, times: list[float], method: str = "GET", count: int = 1) -> str:
    write_capture(path, [replace(make_exchange(method, f"/i/{k}", count=count), seen_at=t)
                         for k, t in enumerate(times)])
    return str(path)


def test_rate_and_multiples_follow_the_timestamps(tmp_path: Path) -> None:
    # out of order in the file; gaps 1, 2, 1 s -> span 4 s * 4/3, 4 arrivals
    plan = load_plan([capture(tmp_path / "c.jsonl", [103, 100, 101, 104])], ReplayPolicy())
    assert plan.offsets == (0, 1, 3, 4)
    assert plan.base_rate == pytest.approx(3 / 4)
    at_x2 = [t for t, _ in arrivals(plan, 2, 10, 1000)]
    assert at_x2[:4] == [0, 0.5, 1.5, 2.0]
    assert at_x2[4] == pytest.approx(plan.span_s / 2)   # the second cycle
    assert max(at_x2) < 10
    assert len(list(arrivals(plan, 2, 10, 3))) == 3       # the count bound


def test_unsafe_methods_skipped_and_count_weighted(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    write_capture(path, [replace(make_exchange("GET", "/a", count=3), seen_at=1.0),
                         replace(make_exchange("DELETE", "/b"), seen_at=2.0),
                         replace(make_exchange("GET", "/c"), seen_at=3.0)])
    plan = load_plan([str(path)], ReplayPolicy())
    assert [r.target for r in plan.requests] == ["/a"] * 3 + ["/c"]
    assert plan.skipped == 1
    assert len(load_plan([str(path)], ReplayPolicy(methods=frozenset({"GET", "DELETE"})))
               .requests) == 5


def test_no_spread_needs_a_base_rate(tmp_path: Path) -> None:
    path = capture(tmp_path / "c.jsonl", [5.0, 5.0])
    with pytest.raises(CaptureError, match="--base-rate"):
        load_plan([path], ReplayPolicy())
    assert load_plan([path], ReplayPolicy(), base_rate=4).offsets == (0, 0.25)
    with pytest.raises(CaptureError, match="no exchange to load"):
        load_plan([capture(tmp_path / "p.jsonl", [1, 2], method="POST")], ReplayPolicy())


def test_steps_parse() -> None:
    assert parse_steps("1, 2,4") == (1, 2, 4)
    assert ramp_steps(10) == (1, 2, 4, 8)
    for bad in ("", "2,1", "1,x", "0,1", "1,1"):
        with pytest.raises(ValueError):
            parse_steps(bad)
