"""Ctrl-C stops `shadowdiff load` at once and the report is still written (a real SIGINT)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from servers import serve_app
from test_load_run import even_capture


def test_sigint_stops_and_writes_report(tmp_path: Path) -> None:
    seen = []

    def app() -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            seen.append(request.path)
            return web.Response(text="ok")
        application = web.Application()
        application.router.add_get("/{tail:.*}", handle)
        return application

    capture = even_capture(tmp_path / "c.jsonl")
    out = tmp_path / "out"
    with serve_app(app) as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shadowdiff", "load", str(capture), "--old", url, "--new", url,
             "--steps", "1,2", "--step-seconds", "30", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while len(seen) < 5 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert len(seen) >= 5, "the load never reached the server"
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            stdout, stderr = proc.communicate(timeout=15)
            stopped_in = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, stderr.decode()
    assert stopped_in < 5  # at once, not after the 30 s step
    summary = json.loads((out / "load.json").read_text())
    assert summary["interrupted"] is True
    assert [s["role"] for s in summary["steps"]] == ["old"]
    step = summary["steps"][0]
    assert step["interrupted"] is True and step["ok"] >= 5
    assert "interrupted (Ctrl-C)" in (out / "report.md").read_text()
    assert b"interrupted" in stdout
