"""Partitioned runs: 1 process, 2 local workers and an existing 2-worker Dask cluster write
the same summary.json (timings aside); a worker killed mid-run loses and doubles nothing.

Real servers on loopback, real worker processes (Dask LocalCluster).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from factories import make_exchange
from servers import serve_app
from shadowdiff.capture.jsonl import exchange_to_dict, write_capture
from shadowdiff.config import Config, Targets
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline import partitioned
from shadowdiff.pipeline.intake import Chunk
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.protocols.http import plugin as http_plugin

N = 900
# A real Date would differ between old and new whenever a second ticks between their answers:
# a difference of the servers, not of how many workers judged them.
FIXED_DATE = {"Date": "Wed, 02 Dec 2026 12:00:00 GMT"}
TIMINGS = {"id", "run_id", "exchanges_per_s", "elapsed_ms", "started_at", "finished_at", "duration_s", "latency_ms", "latency"}


def shop(version: str, hits: list[int] | None = None):
    def factory() -> web.Application:
        async def item(request: web.Request) -> web.Response:
            if hits is not None:
                hits.append(1)
            i = int(request.match_info["id"])
            body: dict[str, Any] = {"id": i, "name": f"item {i}", "price": i * 1.5,
                                    "served_by": version}  # old and its replica differ: noise
            if version == "new" and i % 3 == 0:
                body["price"] = f"{i * 1.5:.2f}"
            if version == "new" and i % 11 == 0:
                body["tags"] = ["new"]
            return web.json_response(body, headers=FIXED_DATE)

        async def gone(request: web.Request) -> web.Response:
            return web.json_response({"error": "gone"}, status=404 if version != "new" else 500,
                                     headers=FIXED_DATE)

        app = web.Application()
        app.router.add_get("/items/{id}", item)
        app.router.add_get("/gone/{id}", gone)
        return app
    return factory


@pytest.fixture(scope="module")
def servers():
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new, \
            serve_app(shop("replica")) as replica:
        yield old, new, replica


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "capture.jsonl"
    exchanges = [make_exchange(target=f"/items/{i}", count=1 + (i % 5 == 0), id=f"x{i}")
                 for i in range(N)]
    exchanges += [make_exchange(target=f"/gone/{i}", id=f"g{i}") for i in range(40)]
    exchanges += [make_exchange("POST", "/items/1", id=f"p{i}") for i in range(7)]  # skipped
    write_capture(path, exchanges)
    return path


def comparable(value: Any) -> Any:
    """The summary without its timings (and without what names the run itself)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def _run(capture: Path, servers: tuple[str, str, str], out: Path, **engine: Any) -> dict[str, Any]:
    old, new, replica = servers
    # no history: each run must stand alone (no "since last run" between them)
    config = Config(targets=Targets(old=old, new=new, old_replica=replica),
                    history=HistoryConfig(enabled=False))
    result = run((str(capture),), config, out, **engine)
    return result.summary


def test_one_process_two_workers_and_a_cluster_agree(capture: Path, servers, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    monkeypatch.setattr(partitioned, "CHUNK", 100)  # ~10 chunks: several per worker
    single = _run(capture, servers, tmp_path / "one")
    local = _run(capture, servers, tmp_path / "two", workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = _run(capture, servers, tmp_path / "cluster", scheduler=cluster.scheduler_address)
    assert single["totals"]["replayed"] == N + N // 5 + 40
    assert single["totals"]["skipped"] == 7
    assert {s["kind"] for s in single["signatures"]} >= {"type_changed", "field_added",
                                                         "status_changed"}
    assert single["noise"]["suppressed"], "the replica's volatile field is measured as noise"
    assert comparable(local) == comparable(single)
    assert comparable(remote) == comparable(single)
    # the same exchange is every signature's example (its Date header aside)
    picked = {name: {key: (ex["exchange_id"], ex["divergences"]) for key, ex in
                     orjson.loads((tmp_path / name / "examples.json").read_bytes()).items()}
              for name in ("one", "two", "cluster")}
    assert picked["two"] == picked["one"] and picked["cluster"] == picked["one"]


def test_a_worker_killed_mid_run_has_its_chunk_redone(capture: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster

    # One chunk: the busy worker killed is the one sending, after 200 of its requests, so its
    # redo on the other worker sends them again (smaller chunks make that a race).
    monkeypatch.setattr(partitioned, "CHUNK", 2_000)
    hits: list[int] = []
    with serve_app(shop("old", hits)) as old, serve_app(shop("new")) as new, \
            serve_app(shop("replica")) as replica, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)  # worker address -> pid
        killed: list[str] = []

        def kill_one() -> None:  # once replay is under way, SIGKILL a worker that is busy
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if len(hits) >= 200 and busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.002)

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        summary = _run(capture, (old, new, replica), tmp_path / "killed",
                       scheduler=cluster.scheduler_address)
        killer.join(timeout=5)
    assert killed, "a busy worker was killed during the run"
    # the killed worker's chunk was sent again from its start: old saw some requests twice
    assert len(hits) > N, (summary["totals"], summary["run"].get("errors"))
    totals = summary["totals"]
    # nothing lost, nothing counted twice
    assert totals["replayed"] == N + N // 5 + 40, (totals, summary["run"]["errors"])
    assert not summary["run"]["errors"]


class _DyingHttp(type(http_plugin.PROTOCOL)):  # type: ignore[misc]
    """HTTP whose sender kills the worker process that opens it: a worker that dies on every
    try, the fault Dask gives up on (KilledWorker)."""

    def open_sender(self, target: str, options: Any) -> Any:
        os._exit(3)


def test_a_chunk_whose_workers_keep_dying_is_reported_not_raised(capture: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    config = Config(targets=Targets(old="http://127.0.0.1:9", new="http://127.0.0.1:9"),
                    history=HistoryConfig(enabled=False))
    setup = partitioned.Setup(config, _DyingHttp(), None, 1)
    lost: list[tuple[int, int]] = []
    parts: list[Any] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        lines = [Chunk([orjson.dumps(exchange_to_dict(make_exchange(id=f"d{i}")))]) for i in range(2)]
        partitioned.run_chunks(lines, setup, client, parts.append,
                               lambda index, size, exc: lost.append((index, size)))
    assert sorted(lost) == [(0, 1), (1, 1)] and not parts
