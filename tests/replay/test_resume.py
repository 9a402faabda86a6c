"""Resilience: Ctrl-C still writes a report; a SIGKILLed run resumed equals an uninterrupted one.

`shadowdiff run` runs in a real subprocess (signals must reach a real process) against
loopback servers in this process's threads.
"""

from __future__ import annotations

import gzip
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from factories import make_exchange
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main
from shadowdiff.replay.journal import JOURNAL_FILE

SHADOWDIFF = str(Path(sys.executable).parent / "shadowdiff")
N = 240


def shop(version: str):
    def factory() -> web.Application:
        async def item(request: web.Request) -> web.Response:
            i = int(request.match_info["id"])
            body: dict[str, Any] = {"id": i, "name": f"item {i}", "price": i * 1.5}
            if version == "new" and i % 3 == 0:
                body["price"] = f"{i * 1.5:.2f}"          # type_changed on a third
            if version == "new" and i % 7 == 0:
                del body["name"]                          # field_missing on a seventh
            headers = {"X-Shard": "b" if version == "new" and i % 5 == 0 else "a"}
            return web.json_response(body, headers=headers)

        async def gone(request: web.Request) -> web.Response:
            return web.json_response({"error": "gone"}, status=404 if version == "old" else 500)

        app = web.Application()
        app.router.add_get("/items/{id}", item)
        app.router.add_get("/gone", gone)
        return app
    return factory


@pytest.fixture(scope="module")
def servers():
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        yield old, new


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "capture.jsonl"
    exchanges = [make_exchange(target=f"/items/{i}", count=1 + (i % 4 == 0), id=f"x{i}")
                 for i in range(N)]
    exchanges += [make_exchange("POST", "/items/1", id=f"p{i}") for i in range(10)]
    exchanges += [make_exchange(target="/gone", id=f"g{i}") for i in range(10)]
    exchanges.sort(key=lambda e: hash(e.id) % 97)  # interleave skipped and replayed
    write_capture(path, exchanges)
    return path


def start(capture: Path, servers: tuple[str, str], *args: str) -> subprocess.Popen[bytes]:
    old, new = servers
    return subprocess.Popen([SHADOWDIFF, "run", str(capture), "--old", old, "--new", new,
                             "--concurrency", "4", "--no-history", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def journaled(run_dir: Path) -> int:
    """Exchanges committed to the run's journal so far (0 before it exists)."""
    path = run_dir / JOURNAL_FILE
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM judged").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the tables are being created


def wait_for_journal(run_dir: Path, at_least: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        n = journaled(run_dir)
        if n >= at_least:
            return n
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"the run journaled fewer than {at_least} exchanges in 20 s")


def essentials(summary: dict[str, Any]) -> dict[str, Any]:
    """What must be identical between a resumed and an uninterrupted run."""
    t = summary["totals"]
    return {
        "totals": {k: t[k] for k in ("exchanges", "replayed", "skipped", "skipped_by_reason",
                                     "identical", "diverged", "failed_both", "failed")},
        "signatures": {s["key"]: (s["affected"], s["replayed"], s["impact"])
                       for s in summary["signatures"]},
        "endpoints": {e["endpoint"]: (e["replayed"], e["identical"], e["diverged"])
                      for e in summary["endpoints"]},
        "coverage": summary["coverage"],
    }


def result_ids(run_dir: Path) -> list[str]:
    lines = gzip.decompress((run_dir / "results.jsonl.gz").read_bytes()).splitlines()
    return [orjson.loads(line)["id"] for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(capture, servers, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = start(capture, servers, "--out", str(out))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert not (out / JOURNAL_FILE).exists()  # a complete run needs no journal
    return orjson.loads((out / "summary.json").read_bytes())


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(capture, servers, tmp_path,
                                                                 uninterrupted):
    out = tmp_path / "run"
    proc = start(capture, servers, "--out", str(out), "--rate", "150")
    done = wait_for_journal(out, 40, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert done < N and not (out / "summary.json").exists()

    resumed = start(capture, servers, "--resume", str(out))
    stdout, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 1, err
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert essentials(summary) == essentials(uninterrupted)
    assert 40 <= summary["run"]["resumed"] < N and not summary["run"]["interrupted"]
    ids = result_ids(out)
    assert len(ids) == len(set(ids)) == N + 10  # every replayed exchange once, none twice
    assert not (out / JOURNAL_FILE).exists()


def test_ctrl_c_stops_cleanly_and_still_reports_what_was_done(capture, servers, tmp_path,
                                                             uninterrupted):
    out = tmp_path / "run"
    proc = start(capture, servers, "--out", str(out), "--rate", "100")
    wait_for_journal(out, 20, proc)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=20)
    assert time.monotonic() - began < 5, "Ctrl-C must stop the workers promptly"
    assert proc.returncode == 1, err
    assert b"Traceback" not in err
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["run"]["interrupted"] is True
    assert 0 < summary["totals"]["replayed"] < uninterrupted["totals"]["replayed"]
    assert stdout.decode().startswith("interrupted run: FAIL")
    assert "Interrupted" in (out / "report.html").read_text(encoding="utf-8")
    # The interrupted run keeps its journal: resuming it completes the run exactly.
    assert (out / JOURNAL_FILE).exists()
    resumed = start(capture, servers, "--resume", str(out))
    resumed.communicate(timeout=60)
    assert essentials(orjson.loads((out / "summary.json").read_bytes())) == essentials(uninterrupted)


def test_resume_refuses_other_captures_or_a_finished_run(capture, servers, tmp_path):
    out = tmp_path / "run"
    old, new = servers
    base = ["run", str(capture), "--old", old, "--new", new, "--no-history", "--quiet"]
    runner = CliRunner()
    first = runner.invoke(main, [*base, "--out", str(out)], catch_exceptions=False)
    assert first.exit_code == 1
    again = runner.invoke(main, [*base, "--resume", str(out)], catch_exceptions=False)
    assert again.exit_code == 2 and "not a run that can be resumed" in again.output
    # a journal from a run of other targets
    proc = start(capture, servers, "--out", str(out), "--rate", "100")
    wait_for_journal(out, 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    other = runner.invoke(main, ["run", str(capture), "--old", new, "--new", old, "--no-history",
                                 "--quiet", "--resume", str(out)], catch_exceptions=False)
    assert other.exit_code == 2 and "targets differ" in other.output
    clash = runner.invoke(main, [*base, "--resume", str(out), "--out", str(tmp_path / "x")])
    assert clash.exit_code == 2 and "--resume" in clash.output


def test_progress_total_comes_from_the_capture_header(capture):
    from shadowdiff.cli.progress import capture_total
    assert capture_total([str(capture)]) == N + 20
    assert capture_total([str(capture), str(capture)]) == 2 * (N + 20)
