"""report.html in a real headless chromium (DevTools protocol): no console error, the
signature table sorts on a click and filters, the charts render, a screenshot is taken,
and captured `<script>` never runs.

The report comes from real runs (two, so the history has a trend) against loopback
servers whose new version answers with markup and script in its bodies.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from cdp import Browser
from conftest import require_tool
from factories import make_exchange
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main

pytestmark = pytest.mark.integration

EVIL = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def shop(version: str):
    def factory() -> web.Application:
        async def user(request: web.Request) -> web.Response:
            i = int(request.match_info["id"])
            body = {"id": i, "name": EVIL if version == "new" else "Ann", "zip": "69002"}
            if version == "new" and i % 2:
                del body["zip"]
            return web.json_response(body)

        async def page(request: web.Request) -> web.Response:
            text = f"<html><body>{EVIL if version == 'new' else 'hello'}</body></html>"
            return web.Response(text=text, content_type="text/html")

        async def items(request: web.Request) -> web.Response:
            await asyncio.sleep(0.004 if version == "new" else 0.0005)
            return web.json_response({"items": [1, 2, 3] if version == "old" else [1, 2]})

        app = web.Application()
        app.router.add_get("/users/{id}", user)
        app.router.add_get("/page", page)
        app.router.add_get("/items", items)
        return app
    return factory


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    capture = tmp / "capture.jsonl"
    write_capture(capture, [make_exchange(target=f"/users/{i}") for i in range(30)]
                  + [make_exchange(target="/page") for _ in range(5)]
                  + [make_exchange(target="/items") for _ in range(60)])
    config = tmp / "shadowdiff.toml"
    config.write_text('[gate.latency]\nmetric = "p50"\n')
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        for night in ("n1", "n2"):
            result = CliRunner().invoke(main, [
                "run", str(capture), "--old", old, "--new", new, "--config", str(config),
                "--out", str(tmp / night), "--history", str(tmp / "history.sqlite"), "--quiet"],
                catch_exceptions=False)
            assert result.exit_code == 1, result.output
    return tmp / "n2" / "report.html"


def _errors(events: list[dict[str, Any]]) -> list[Any]:
    """Console errors, uncaught exceptions and browser log errors (CSP violations)."""
    found = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(params["args"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(params["entry"]["text"])
    return found


async def _drive(report: Path, profile: Path, shot: Path) -> dict[str, Any]:
    async with Browser(require_tool("chromium"), profile) as b:
        for domain in ("Runtime", "Log", "Page"):
            await b.send(f"{domain}.enable")
        await b.send("Page.navigate", url=report.as_uri())
        await b.wait_for("Page.loadEventFired")
        rows = "Array.from(document.querySelectorAll('#sig-table tbody tr'))"
        endpoints = f"{rows}.map(r => r.cells[3].textContent.trim() + ' ' + r.cells[4].textContent.trim())"
        out: dict[str, Any] = {"title": await b.evaluate("document.title"),
                               "before": await b.evaluate(endpoints)}
        await b.click("#sig-table thead th:nth-child(5)")  # location
        out["after_one"] = await b.evaluate(endpoints)
        await b.click("#sig-table thead th:nth-child(5)")
        out["after_two"] = await b.evaluate(endpoints)
        await b.click("#sig-filter")
        await b.send("Input.insertText", text="zip")
        out["visible"] = await b.evaluate(f"{rows}.filter(r => !r.hidden).length")
        out["scripts"] = await b.evaluate("document.scripts.length")
        out["charts"] = await b.evaluate(
            "Array.from(document.querySelectorAll('svg.chart')).map(s => "
            "[s.getAttribute('class'), Math.round(s.getBoundingClientRect().height)])")
        out["sections"] = await b.evaluate(
            "['overview', 'since-last', 'latency'].map(id => !!document.getElementById(id))")
        out["title_after"] = await b.evaluate("document.title")
        await b.evaluate("window.scrollTo(0, 0)")  # the morning overview
        await b.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                     deviceScaleFactor=1, mobile=False)
        shot.write_bytes(base64.b64decode((await b.send("Page.captureScreenshot",
                                                        format="png"))["data"]))
        await asyncio.sleep(0.2)  # late console messages
        out["errors"] = _errors(b.events)
    return out


def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "document.title=&#39;pwned&#39;" in html  # shown, escaped
    shot = tmp_path / "report.png"
    got = asyncio.run(_drive(report, tmp_path / "profile", shot))
    assert got["errors"] == []
    assert got["title"].startswith("shadowdiff: FAIL") and got["title_after"] == got["title"]
    assert got["scripts"] == 1  # ours; the captured <script> is text
    assert got["after_one"] == sorted(got["before"], key=lambda s: s.split(" ", 2)[2].lower())
    assert got["after_one"] != got["before"] and got["after_two"] == got["after_one"][::-1]
    assert got["visible"] == 1  # only body.zip matches "zip"
    assert [c[0] for c in got["charts"]] == ["chart chart-trend", "chart chart-latency"]
    assert all(height > 50 for _, height in got["charts"])
    assert got["sections"] == [True, True, True]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
