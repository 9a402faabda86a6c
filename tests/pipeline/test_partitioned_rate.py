"""`--rate` is the run's, however many workers judge it: 2 workers at --rate 300 send 300
exchanges/s in total, never more, and the last chunk running alone gets all of it (a static
share of 150/s per chunk made 3 chunks on 2 workers take a third longer than the rate says).

Real worker processes (LocalCluster) and a real server on loopback that notes each arrival.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp import web

from factories import make_exchange
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.config import Config, ReplayConfig, Targets
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline import partitioned
from shadowdiff.pipeline.orchestrate import run

N, RATE = 600, 300.0


def noting(arrivals: list[float]):
    def factory() -> web.Application:
        async def item(request: web.Request) -> web.Response:
            arrivals.append(time.monotonic())
            return web.json_response({"id": request.match_info["id"]})

        app = web.Application()
        app.router.add_get("/items/{id}", item)
        return app
    return factory


def test_two_workers_share_one_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioned, "CHUNK", 200)  # 3 chunks on 2 workers: one runs alone
    capture = tmp_path / "capture.jsonl"
    write_capture(capture, [make_exchange(target=f"/items/{i}", id=f"x{i}") for i in range(N)])
    arrivals: list[float] = []
    with serve_app(noting(arrivals)) as old, serve_app(noting([])) as new:
        config = Config(targets=Targets(old=old, new=new), history=HistoryConfig(enabled=False),
                        replay=ReplayConfig(rate=RATE))
        summary = run((str(capture),), config, tmp_path / "out", workers=2).summary
    assert summary["totals"]["replayed"] == N and len(arrivals) == N
    arrivals.sort()
    span = arrivals[-1] - arrivals[0]
    ideal = (N - 1) / RATE  # 2.0 s; the static share took ~2.7 s
    assert ideal * 0.95 < span < ideal * 1.2, f"{N} requests in {span:.2f} s at --rate {RATE}"
    # never faster than the rate over any half second (one lease of slack for timer jitter)
    lease = partitioned_lease()
    busiest = max(sum(1 for t in arrivals[i:] if t - start < 0.5)
                  for i, start in enumerate(arrivals))
    assert busiest <= RATE * 0.5 + lease, busiest


def partitioned_lease() -> int:
    from shadowdiff.pipeline.pacing import SharedRate

    return SharedRate(RATE).lease
