"""The circuit breaker: opens on a failing target, probes with backoff, closes on recovery;
exchanges it holds back are counted as skipped (never judged) and reported."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp import web

from factories import make_exchange, make_response
from servers import refused_url, serve_app
from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.config import Config, config_from_dict
from shadowdiff.errors import ConfigError
from shadowdiff.model import Exchange, Failure, Request
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.replay.breaker import (BreakerConfig, Breakers, SKIP_PREFIX, failing,
                                       parse_threshold)
from shadowdiff.replay.options import ReplayConfig, Targets

REASON = SKIP_PREFIX + "new"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_probes_with_doubling_backoff_and_closes() -> None:
    clock, skipped = Clock(), []
    cfg = BreakerConfig(threshold=0.5, window=4, min_requests=4, backoff_s=1.0, max_backoff_s=3.0)
    breakers = Breakers({"new": "http://n"}, cfg, lambda ex, why: skipped.append(why), clock)
    ex, bad, good = make_exchange(), Failure("refused", "x"), make_response()
    for outcome in (good, bad, good, bad):  # 2 of 4 failing: 50% reached
        assert breakers.admit(ex) == ()
        breakers.record(ex, {"new": outcome}, ())
    new = breakers.by_role["new"]
    assert new.state == "open" and breakers.admit(ex) is None and skipped == [REASON]
    clock.now += 1.0
    probes = breakers.admit(ex)
    assert probes == (new,) and breakers.admit(ex) is None  # one probe at a time
    breakers.record(ex, {"new": bad}, probes)  # failed probe: open for 2 s now
    clock.now += 1.5
    assert breakers.admit(ex) is None
    clock.now += 0.5
    probes = breakers.admit(ex)
    breakers.record(ex, {"new": good}, probes)
    assert new.state == "closed"
    log = breakers.finish()[0]
    assert (log.opened, log.probes, log.not_tried) == (1, 2, 3)
    assert log.open_s == pytest.approx(3.0)
    assert log.intervals[0]["closed_at"] is not None and log.intervals[0]["not_tried"] == 3


def test_what_counts_as_failing() -> None:
    assert failing(Failure("timeout")) and failing(Failure("reset"))
    assert not failing(Failure("too_large")) and not failing(make_response(status=404))
    assert failing(make_response(status=503))


def test_threshold_and_config_checks(tmp_path: Path) -> None:
    assert parse_threshold("30%") == 0.3 and parse_threshold("off") is None
    with pytest.raises(ValueError):
        parse_threshold("150%")
    cfg = config_from_dict({"replay": {"breaker": "25%", "breaker_window": 10,
                                       "breaker_min_requests": 5}})
    assert cfg.replay.breaker.threshold == 0.25 and cfg.replay.breaker.window == 10
    with pytest.raises(ConfigError, match="replay.breaker_min_requests"):
        config_from_dict({"replay": {"breaker_window": 5, "breaker_min_requests": 6}})
    with pytest.raises(ConfigError, match="replay.breaker"):
        config_from_dict({"replay": {"breaker": "lots"}})


def _capture(path: Path, n: int) -> Path:
    with CaptureWriter(path) as w:
        for i in range(n):
            w.write(Exchange(f"e{i:05d}", Request("http", "GET", f"/item/{i}", (("Host", "x"),)),
                             None, "test", 0.0))
    return path


def flaky_app(state: dict) -> web.Application:
    """503 for 0.4 s once 30 requests were served, then healthy again."""
    async def handler(request: web.Request) -> web.Response:
        state["n"] += 1
        if state["n"] > 30 and state.setdefault("since", time.monotonic()) + 0.4 > time.monotonic():
            return web.Response(status=503)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


def _config(old: str, new: str, **breaker: object) -> Config:
    cfg = BreakerConfig(**{"window": 10, "min_requests": 5, "backoff_s": 0.05,
                           "max_backoff_s": 0.2, **breaker})  # type: ignore[arg-type]
    return Config(targets=Targets(old=old, new=new),
                  replay=ReplayConfig(concurrency=4, rate=400.0, breaker=cfg),
                  history=HistoryConfig(enabled=False))


def _check_counts(summary: dict) -> dict:
    t, b = summary["totals"], summary["breakers"]
    assert t["exchanges"] == t["replayed"] + t["skipped"]
    assert t["skipped_by_reason"].get(REASON, 0) == b["not_tried"]
    return b["targets"][1] if b["targets"][0]["role"] == "old" else b["targets"][0]


def test_a_target_that_fails_then_recovers(tmp_path: Path) -> None:
    state_old, state_new = {"n": 0}, {"n": 0}
    with serve_app(lambda: flaky_app({"n": -10**9})) as old, serve_app(lambda: flaky_app(state_new)) as new:
        summary = run((str(_capture(tmp_path / "c.jsonl", 600)),), _config(old, new),
                      tmp_path / "out").summary
    new_log = _check_counts(summary)
    assert new_log["role"] == "new" and new_log["opened"] >= 1 and new_log["probes"] >= 1
    assert new_log["not_tried"] > 0
    first = new_log["intervals"][0]
    assert first["closed_at"] is not None, "the breaker closed once the target recovered"
    assert 0.05 <= first["duration_s"] < 5
    assert summary["totals"]["replayed"] > 300, "replay went on after it closed"
    assert state_new["n"] == summary["totals"]["replayed"], "held-back exchanges were never sent"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Circuit breakers" in report and REASON in report
    assert 'id="breakers"' in (tmp_path / "out" / "report.html").read_text()


def test_a_target_that_is_down(tmp_path: Path) -> None:
    with serve_app(lambda: flaky_app({"n": -10**9})) as old:
        summary = run((str(_capture(tmp_path / "c.jsonl", 300)),),
                      _config(old, refused_url()), tmp_path / "out").summary
    new_log = _check_counts(summary)
    refused = summary["totals"]["failed"]["new"]
    # the window's requests, those in flight when it opened, and the probes: not 300
    assert refused <= 5 + 4 + new_log["probes"]
    assert new_log["not_tried"] == 300 - refused
    assert new_log["intervals"][0]["closed_at"] is None  # still open at the end
    assert summary["totals"]["identical"] == 0


def test_breaker_off_sends_everything(tmp_path: Path) -> None:
    with serve_app(lambda: flaky_app({"n": -10**9})) as old:
        summary = run((str(_capture(tmp_path / "c.jsonl", 60)),),
                      _config(old, refused_url(), threshold=None), tmp_path / "out").summary
    assert summary["totals"]["failed"]["new"] == 60 and summary["breakers"]["not_tried"] == 0
    assert summary["breakers"]["enabled"] is False
