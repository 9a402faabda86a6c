"""The circuit breaker: a target that cannot serve (refused, 503) pauses the replay, which
probes with backoff and goes on when it recovers; a target that never recovers is given up on
after `give_up_s` (the rest counted as not tried, never judged); a 500 on one endpoint is a
divergence, not an outage. Real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, settings, strategies as st

from factories import make_exchange, make_response
from servers import background_loop, refused_url, serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.config import Config, config_from_dict
from shadowdiff.errors import ConfigError
from shadowdiff.model import Failure
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline import partitioned
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.replay.breaker import (SKIP_PREFIX, Breaker, BreakerConfig, failing_test,
                                       parse_threshold)
from shadowdiff.replay.breaker_log import BreakerBook, Interval, RoleLog, union
from shadowdiff.replay.options import ReplayConfig, Targets
from shadowdiff.report.json import validate_summary

REASON = SKIP_PREFIX + "new"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_probes_with_doubling_capped_backoff_then_gives_up() -> None:
    clock = Clock()
    cfg = BreakerConfig(window=4, min_requests=4, backoff_s=1.0, max_backoff_s=3.0, give_up_s=8.0)
    b = Breaker("new", "http://n", cfg, clock, clock)
    for failed in (False, True, False):
        assert not b.record(failed, probe=False)
    assert b.record(True, probe=False) and b.state == "open" and b.until == 101.0  # 2 of 4
    until = []
    for _ in range(4):  # probes at 101, 103 (+2), 106 (+3, capped), 108 (the bound)
        clock.now = b.until
        b.take_probe()
        assert not b.record(True, probe=False), "an answer sent before it opened says nothing"
        b.record(True, probe=True)
        until.append(b.until)
    assert until[:3] == [103.0, 106.0, 108.0] and b.state == "gave_up"
    log = b.finish()
    assert [(i.probes, i.gave_up, i.closed) for i in log.intervals] == [(4, True, False)]


def test_a_good_probe_closes_with_an_empty_window() -> None:
    clock = Clock()
    b = Breaker("new", "u", BreakerConfig(window=2, min_requests=2), clock, clock)
    b.record(True, False), b.record(True, False)
    clock.now = b.until
    b.take_probe()
    assert b.record(False, probe=True) and b.state == "closed"
    assert not b.record(True, False), "one failure in a fresh window is below the minimum"
    assert b.finish().intervals[0].closed


def test_what_counts_as_the_target_failing() -> None:
    failing = failing_test(BreakerConfig())
    for kind in ("timeout", "refused", "reset", "error"):
        assert failing(Failure(kind))
    assert not failing(Failure("invalid")) and not failing(Failure("too_large"))
    assert [s for s in (200, 404, 429, 500, 501, 502, 503, 504) if failing(make_response(s))] \
        == [429, 502, 503, 504]
    assert failing_test(BreakerConfig(statuses=(500,)))(make_response(500))


def test_config_section_and_flag() -> None:
    from shadowdiff.cli.main import build_config

    assert parse_threshold("30%") == 0.3 and parse_threshold("off") is None
    cfg = config_from_dict({"breaker": {"threshold": "25%", "window": 10, "min_requests": 5,
                                        "give_up_s": 2, "statuses": [500, 503, "servfail"]}})
    b = cfg.replay.breaker
    assert (b.threshold, b.window, b.give_up_s, b.statuses) == (0.25, 10, 2.0, (500, 503, "SERVFAIL"))
    assert config_from_dict({"breaker": {"threshold": False}}).replay.breaker.threshold is None
    for table, key in (({"window": 5, "min_requests": 6}, "breaker.min_requests"),
                       ({"threshold": "lots"}, "breaker.threshold"),
                       ({"give_up_s": 0}, "breaker.give_up_s"),
                       ({"kinds": ["oops"]}, "breaker.kinds"),
                       ({"statuses": [True]}, "breaker.statuses"),
                       ({"nope": 1}, "breaker.nope")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config_from_dict({"breaker": table})
    assert build_config(None, breaker="off").replay.breaker.threshold is None
    assert build_config(None, breaker="70%").replay.breaker.threshold == 0.7


# -- merging partitions' logs -----------------------------------------------------------------

_intervals = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300), st.booleans(),
                                st.integers(0, 3), st.integers(0, 9)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(_intervals, st.randoms(use_true_random=False))
def test_merging_is_exact_whatever_the_grouping(rows, rnd: random.Random) -> None:
    ivs = [Interval(o, o + d, c, 0.5, probes=p, not_tried=n) for o, d, c, p, n in rows]
    whole = RoleLog("new", "u", union(ivs), {"/a": len(ivs)}, [f"e{k}" for k in range(len(ivs))][:20])
    book = BreakerBook()
    book.add(RoleLog("new", "u"))  # a chunk whose breaker never opened
    parts = list(enumerate(ivs))
    rnd.shuffle(parts)
    while parts:  # random partitions, merged in a random order
        k = rnd.randint(1, len(parts))
        book.add(RoleLog("new", "u", union(i for _, i in parts[:k]), {"/a": k},
                         sorted(f"e{j}" for j, _ in parts[:k])))
        parts = parts[k:]
    merged = book.logs["new"]
    expected = whole.as_dict()
    expected["not_tried_endpoints"] = {"/a": len(ivs)} if ivs else {}
    expected["not_tried_examples"] = sorted(f"e{k}" for k in range(len(ivs)))[:20]
    assert merged.as_dict() == expected
    spans = [(i.opened_us, i.ended_us) for i in merged.intervals]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), "disjoint and sorted"


# -- real servers on loopback -------------------------------------------------------------------

def _capture(path: Path, targets: list[str]) -> Path:
    write_capture(path, [make_exchange(target=t, id=f"e{i:05d}") for i, t in enumerate(targets)])
    return path


def _config(old: str, new: str, concurrency: int = 4, **breaker: object) -> Config:
    cfg = BreakerConfig(**{"window": 10, "min_requests": 5, "backoff_s": 0.05,
                           "max_backoff_s": 0.2, "give_up_s": 10.0, **breaker})  # type: ignore[arg-type]
    return Config(targets=Targets(old=old, new=new),
                  replay=ReplayConfig(concurrency=concurrency, breaker=cfg),
                  history=HistoryConfig(enabled=False))


def _new_log(summary: dict) -> dict:
    assert validate_summary(summary) == []
    t, b = summary["totals"], summary["breakers"]
    assert t["exchanges"] == t["replayed"] + t["skipped"]
    assert t["skipped_by_reason"].get(REASON, 0) == b["not_tried"]
    return next(log for log in b["targets"] if log["role"] == "new")


def app(state: dict) -> web.Application:
    """200 {"ok": true}; 503 while state["down_until"] is in the future (once `after`
    requests were served, it goes down for `for_s`)."""
    async def handler(request: web.Request) -> web.Response:
        state["n"] += 1
        if state.get("after") is not None and state["n"] > state["after"]:
            state.setdefault("down_until", time.monotonic() + state["for_s"])
        if time.monotonic() < state.get("down_until", 0):
            state["503"] = state.get("503", 0) + 1
            return web.Response(status=503)
        if request.path.startswith("/gone/") and state.get("gone_500"):
            return web.json_response({"error": "gone"}, status=500)
        return web.json_response({"ok": True}, status=404 if request.path.startswith("/gone/") else 200)

    application = web.Application()
    application.router.add_get("/{tail:.*}", handler)
    return application


def test_503_pauses_probes_and_resumes_when_it_recovers(tmp_path: Path) -> None:
    new_state = {"n": 0, "after": 100, "for_s": 0.4}
    with serve_app(lambda: app({"n": 0})) as old, serve_app(lambda: app(new_state)) as new:
        started = time.monotonic()
        summary = run((str(_capture(tmp_path / "c.jsonl", [f"/i/{i}" for i in range(400)])),),
                      _config(old, new), tmp_path / "out").summary
        elapsed = time.monotonic() - started
    log = _new_log(summary)
    assert log["opened"] >= 1 and log["probes"] >= 1 and log["not_tried"] == 0
    first = log["intervals"][0]
    assert first["closed_at"] is not None and not first["gave_up"]
    assert 0.3 <= first["duration_s"] < 3 and elapsed >= 0.4, "it waited for the recovery"
    assert summary["totals"]["replayed"] == 400, "paused, not skipped: every exchange went"
    # 503s: the window's failing share (up to 10), those in flight (4), failed probes
    assert new_state["503"] <= 10 + 4 + log["probes"]
    assert summary["totals"]["identical"] == 400 - new_state["503"], "judged normally after"
    assert "## Circuit breakers" in (tmp_path / "out" / "report.md").read_text()


class Flapping:
    """An aiohttp server whose listener goes away for `for_s` after `after` requests (the open
    keep-alive connections are dropped too: refused and reset), then comes back on its port."""

    def __init__(self, loop: asyncio.AbstractEventLoop, after: int, for_s: float) -> None:
        self.loop, self.after, self.for_s, self.n, self.down = loop, after, for_s, 0, False

    async def start(self) -> str:
        application = web.Application()
        application.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(application, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await self.site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.n += 1
        if self.n == self.after:
            self.down = True
            await self.site.stop()
            self.loop.call_later(self.for_s, lambda: asyncio.ensure_future(self._up()))
        if self.down and request.transport is not None:
            request.transport.close()  # a kept-alive connection: reset
        return web.json_response({"ok": True})

    async def _up(self) -> None:
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        self.down = False


def test_refused_connections_pause_and_it_recovers(tmp_path: Path) -> None:
    with serve_app(lambda: app({"n": 0})) as old, background_loop() as loop:
        server = Flapping(loop, after=80, for_s=0.5)
        new = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        try:
            summary = run((str(_capture(tmp_path / "c.jsonl", [f"/i/{i}" for i in range(300)])),),
                          _config(old, new), tmp_path / "out").summary
        finally:
            asyncio.run_coroutine_threadsafe(server.runner.cleanup(), loop).result(10)
    log = _new_log(summary)
    failed = summary["totals"]["failed"]["new"]
    assert log["opened"] >= 1 and log["intervals"][0]["closed_at"] is not None
    assert log["not_tried"] == 0 and summary["totals"]["replayed"] == 300
    assert 1 <= failed <= 10 + 4 + log["probes"], "paused: not 220 refused requests"
    assert summary["totals"]["identical"] == 300 - failed


def test_a_target_that_never_recovers_is_given_up_on(tmp_path: Path) -> None:
    with serve_app(lambda: app({"n": 0})) as old:
        started = time.monotonic()
        summary = run((str(_capture(tmp_path / "c.jsonl", [f"/i/{i}" for i in range(300)])),),
                      _config(old, refused_url(), give_up_s=0.4), tmp_path / "out").summary
        elapsed = time.monotonic() - started
    log = _new_log(summary)
    refused = summary["totals"]["failed"]["new"]
    assert log["gave_up"] and log["intervals"][0]["gave_up"] and log["probes"] >= 2
    assert log["intervals"][0]["duration_s"] >= 0.4 and elapsed < 10
    assert log["not_tried"] == 300 - refused == summary["breakers"]["not_tried"]
    assert refused <= 10 + 4 + log["probes"]
    assert log["not_tried_endpoints"] == {"GET /i/{id}": 300 - refused}
    assert len(log["not_tried_examples"]) == 20 and summary["totals"]["identical"] == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "gave up" in md and "Not tried, by endpoint" in md and REASON in md
    assert 'id="breakers"' in (tmp_path / "out" / "report.html").read_text()


def test_a_500_on_one_endpoint_is_a_divergence_not_an_outage(tmp_path: Path) -> None:
    # /gone first: the order in which the old design opened on a one-endpoint 500
    targets = [f"/gone/{i}" for i in range(60)] + [f"/i/{i}" for i in range(60)]
    with serve_app(lambda: app({"n": 0})) as old, \
            serve_app(lambda: app({"n": 0, "gone_500": True})) as new:
        summary = run((str(_capture(tmp_path / "c.jsonl", targets)),),
                      _config(old, new, min_requests=5), tmp_path / "out").summary
    log = _new_log(summary)
    assert log["opened"] == 0 and summary["totals"]["replayed"] == 120
    found = {(s["endpoint"], s["kind"]) for s in summary["signatures"]}
    assert ("GET /gone/{id}", "status_changed") in found
    assert {endpoint for endpoint, _ in found} == {"GET /gone/{id}"}
    assert "Circuit breakers" not in (tmp_path / "out" / "report.md").read_text()


def test_breaker_off_sends_everything(tmp_path: Path) -> None:
    with serve_app(lambda: app({"n": 0})) as old:
        summary = run((str(_capture(tmp_path / "c.jsonl", [f"/i/{i}" for i in range(60)])),),
                      _config(old, refused_url(), threshold=None), tmp_path / "out").summary
    assert summary["totals"]["failed"]["new"] == 60 and summary["breakers"]["not_tried"] == 0
    assert summary["breakers"]["enabled"] is False


def test_partitioned_give_up_merges_and_later_chunks_send_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioned, "CHUNK", 200)
    with serve_app(lambda: app({"n": 0})) as old:
        summary = run((str(_capture(tmp_path / "c.jsonl", [f"/i/{i}" for i in range(2000)])),),
                      _config(old, refused_url(), give_up_s=0.3), tmp_path / "out",
                      workers=2).summary
    log = _new_log(summary)
    refused = summary["totals"]["failed"]["new"]
    assert log["gave_up"] and log["not_tried"] == 2000 - refused
    # 10 chunks, 4 in flight at most before the first give-up is carried to the rest
    assert refused <= 4 * (10 + 2 + 10), "chunks submitted after the give-up sent nothing"
    spans = [(i["opened_at"], i["closed_at"]) for i in log["intervals"]]
    assert 1 <= len(spans) <= 4 and all(closed is None for _, closed in spans)
    assert sum(i["not_tried"] for i in log["intervals"]) == log["not_tried"]
