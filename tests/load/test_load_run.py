"""shadowdiff load against two real loopback servers of different capacity."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from capacity_servers import capped_app
from factories import make_exchange
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main


def even_capture(path: Path, n: int = 40, gap_s: float = 0.05) -> Path:
    """n GETs and one POST, `gap_s` apart: a production rate of 1 / gap_s requests/s."""
    exchanges = [replace(make_exchange("GET", f"/items/{i}"), seen_at=1_700_000_000 + i * gap_s)
                 for i in range(n)]
    exchanges.append(replace(make_exchange("POST", "/orders"), seen_at=1_700_000_000 + n * gap_s))
    write_capture(path, exchanges)
    return path


def test_new_breaks_at_lower_step(tmp_path: Path) -> None:
    # production rate 20/s; steps 20, 40, 80/s. old serves 64 slots of 2 ms (far above
    # 80/s); new serves one at a time for 20 ms (50/s): x2 keeps up, x4 queues without bound
    # (30 more a second than it serves: ~18 queued by the end, p99 ~350 ms).
    capture = even_capture(tmp_path / "c.jsonl")
    with serve_app(lambda: capped_app(64, 0.002)) as old, \
            serve_app(lambda: capped_app(1, 0.020)) as new:
        result = CliRunner().invoke(main, [
            "load", str(capture), "--old", old, "--new", new, "--steps", "1,2,4",
            "--step-seconds", "0.6", "--pause", "0", "--max-p99", "200", "--timeout", "2",
            "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    summary = json.loads((tmp_path / "out" / "load.json").read_text())
    assert summary["broke"]["old"] is None
    assert summary["broke"]["new"]["multiple"] == 4
    assert summary["schedule"]["base_rate"] == 20.0
    assert summary["schedule"]["skipped"] == 1          # the POST was not sent
    old_steps = [s for s in summary["steps"] if s["role"] == "old"]
    assert [s["multiple"] for s in old_steps] == [1, 2, 4]
    assert all(s["error_rate"] == 0 for s in old_steps)
    # the open loop kept the schedule: x4 planned ~0.6 s * 80/s arrivals
    assert 44 <= old_steps[2]["planned"] <= 48
    new_x4 = [s for s in summary["steps"] if s["role"] == "new"][-1]
    assert new_x4["achieved_rate"] < 60 < old_steps[2]["achieved_rate"]  # new served ~50/s
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "new broke at x4" in html
    assert "new broke earlier than old" in (tmp_path / "out" / "report.md").read_text()
