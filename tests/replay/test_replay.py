"""Replay: method policy, bounded concurrency, rate limit, observed roles, error propagation."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from factories import make_exchange, make_response
from servers import serve_app
from shadowdiff.replay.options import ReplayConfig
from shadowdiff.errors import CaptureError
from shadowdiff.model import Response
from shadowdiff.protocols.http.aiohttp_sender import AiohttpSender
from shadowdiff.replay.runner import ReplayPolicy, replay, select, skip_reason


def test_only_safe_methods_by_default():
    policy = ReplayPolicy()
    assert skip_reason(make_exchange("GET"), policy) is None
    assert skip_reason(make_exchange("head"), policy) is None
    assert skip_reason(make_exchange("POST"), policy) == "method POST"
    assert skip_reason(make_exchange("DELETE"), policy) == "method DELETE"
    opted_in = ReplayPolicy(methods=frozenset({"GET", "POST"}))
    assert skip_reason(make_exchange("POST"), opted_in) is None


def test_incomplete_captures_are_skipped_not_guessed():
    assert skip_reason(make_exchange(marks=("incomplete",)), ReplayPolicy()) == "incomplete capture"


def test_select_reports_every_skip():
    skipped = []
    exchanges = [make_exchange("GET"), make_exchange("POST"), make_exchange("PUT"), make_exchange("GET")]
    kept = list(select(exchanges, ReplayPolicy(), lambda ex, why: skipped.append((ex.id, why))))
    assert [e.request.method for e in kept] == ["GET", "GET"]
    assert [why for _, why in skipped] == ["method POST", "method PUT"]


def counting_app(state: dict) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        state["paths"].append(request.path)
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


async def _collect(exchanges, senders, policy):
    try:
        return [t async for t in replay(exchanges, senders, policy)]
    finally:
        for s in senders.values():
            await s.close()


def test_concurrency_is_bounded_and_every_exchange_is_replayed_to_each_role():
    state = {"now": 0, "peak": 0, "paths": []}
    with serve_app(lambda: counting_app(state)) as url:
        exchanges = [make_exchange(target=f"/n/{i}") for i in range(40)]
        opts = ReplayConfig(concurrency=4)
        trials = asyncio.run(_collect(exchanges, {"old": AiohttpSender(url, opts),
                                                  "new": AiohttpSender(url, opts)},
                                      ReplayPolicy(concurrency=4)))
    assert len(trials) == 40
    assert {t.exchange.id for t in trials} == {e.id for e in exchanges}
    assert all(isinstance(t.outcomes["old"], Response) and isinstance(t.outcomes["new"], Response)
               for t in trials)
    assert sorted(state["paths"]) == sorted([f"/n/{i}" for i in range(40)] * 2)
    assert state["peak"] <= 8  # 4 exchanges in flight, each to two roles


def test_rate_limit_spaces_the_starts():
    state = {"now": 0, "peak": 0, "paths": []}
    with serve_app(lambda: counting_app(state)) as url:
        exchanges = [make_exchange(target=f"/r/{i}") for i in range(11)]
        opts = ReplayConfig(concurrency=8)
        start = time.monotonic()
        trials = asyncio.run(_collect(exchanges, {"old": AiohttpSender(url, opts)},
                                      ReplayPolicy(concurrency=8, rate=50.0)))
        elapsed = time.monotonic() - start
    assert len(trials) == 11
    assert elapsed >= 10 / 50.0 * 0.9  # 11 starts at 50/s span at least 200 ms


def test_observed_roles_are_not_sent_again():
    recorded_new = make_response(201, b'{"from": "mirror"}')
    ex = make_exchange(target="/o/1")
    ex = type(ex)(**{**{f: getattr(ex, f) for f in ex.__dataclass_fields__},
                     "observed": (("new", recorded_new),)})
    state = {"now": 0, "peak": 0, "paths": []}
    with serve_app(lambda: counting_app(state)) as url:
        sender = AiohttpSender(url, ReplayConfig())
        trials = asyncio.run(_collect([ex], {"old": sender}, ReplayPolicy()))
    assert trials[0].outcomes["new"] is recorded_new
    assert trials[0].outcomes["old"].status == 200
    assert state["paths"] == ["/o/1"]


def test_an_input_error_reaches_the_caller_after_the_good_exchanges():
    def exchanges():
        yield make_exchange(target="/e/1")
        raise CaptureError("bad line", source="x.jsonl", position="line 3")

    state = {"now": 0, "peak": 0, "paths": []}
    seen = []

    async def go(url):
        sender = AiohttpSender(url, ReplayConfig())
        try:
            async for t in replay(exchanges(), {"old": sender}, ReplayPolicy(concurrency=2)):
                seen.append(t)
        finally:
            await sender.close()

    with serve_app(lambda: counting_app(state)) as url:
        with pytest.raises(CaptureError, match="x.jsonl:line 3"):
            asyncio.run(go(url))
    assert [t.exchange.request.target for t in seen] == ["/e/1"]


def _mirrored(method: str, roles=("old", "new")):
    ex = make_exchange(method, "/m/1")
    outcomes = tuple((r, make_response()) for r in roles)
    return type(ex)(**{**{f: getattr(ex, f) for f in ex.__dataclass_fields__}, "observed": outcomes})


def test_mirrored_exchanges_need_no_target_and_send_nothing():
    policy = ReplayPolicy()
    assert skip_reason(_mirrored("GET"), policy, observed={"old", "new"}) is None
    # a POST answered live by both systems is judged, since judging it sends nothing
    assert skip_reason(_mirrored("POST"), policy, observed={"old", "new"}) is None
    reason = skip_reason(_mirrored("GET", roles=("old",)), policy, observed={"old", "new"})
    assert reason == "no recorded outcome for new/old and no target to send to"
    assert skip_reason(make_exchange("GET"), policy, observed={"old", "new"}) is not None


def test_a_mirrored_capture_is_judged_without_replaying(tmp_path):
    import orjson
    from click.testing import CliRunner
    from shadowdiff.capture.jsonl import write_capture
    from shadowdiff.cli.main import main

    same = make_response(200, b'{"a": 1}')
    changed = make_response(200, b'{"a": 2}')
    base = make_exchange("GET", "/m/1")
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    exchanges = [type(base)(**{**fields, "id": f"m-{i}",
                               "observed": (("old", same), ("new", changed if i % 2 else same))})
                 for i in range(10)]
    path = tmp_path / "mirror.jsonl"
    write_capture(path, exchanges)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1, result.output
    summary = orjson.loads((tmp_path / "r" / "summary.json").read_bytes())
    assert summary["totals"]["replayed"] == 10 and summary["totals"]["diverged"] == 5
    assert summary["signatures"][0]["location"] == "body.a"
