"""Issue 15.3's promise, end to end: no secret of the input is stored anywhere, neither in
the captures (HAR, access log and a live collector), nor in the run directory, nor in the
history, unless asked. Every file is read as bytes, and gunzipped when it is gzip."""

from __future__ import annotations

import asyncio
import gzip
import sys
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from click.testing import CliRunner

from shadowdiff.capture.jsonl import read_header
from shadowdiff.cli.main import main
from tests.live.test_collect import collector
from tests.servers import serve_app

SECRETS = [b"Tok3nFromHAR", b"C00kieValue", b"hunter2pass", b"QueryT0ken", b"LogT0ken",
           b"S3tCookieVal", b"JsonApiK3y", b"LiveBearer9", b"LiveCookie7", b"JsonRespT0k"]
STAGING = {"old": "staging-old-cred", "new": "staging-new-cred"}


def har(path: Path) -> None:
    def entry(method: str, url: str, body: dict | None = None) -> dict:
        request = {"method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": [
            {"name": "Host", "value": "shop.test"},
            {"name": "Authorization", "value": "Bearer Tok3nFromHAR"},
            {"name": "Cookie", "value": "theme=dark; sid=C00kieValue"}]}
        if body is not None:
            request["postData"] = body
        return {"startedDateTime": "2026-12-01T10:00:00Z", "time": 3, "request": request,
                "response": {"status": 200, "statusText": "OK", "headers": [
                    {"name": "Set-Cookie", "value": "sid=S3tCookieVal; Path=/"},
                    {"name": "Content-Type", "value": "application/json"}],
                    "content": {"size": 30, "mimeType": "application/json",
                                "text": '{"access_token": "JsonRespT0k"}'}}}
    entries = [entry("GET", f"http://shop.test/items/{i}?access_token=QueryT0ken&page={i}")
               for i in range(4)]
    entries.append(entry("POST", "http://shop.test/login", {
        "mimeType": "application/x-www-form-urlencoded", "text": "user=bob&password=hunter2pass"}))
    entries.append(entry("POST", "http://shop.test/keys", {
        "mimeType": "application/json", "text": '{"name": "ci", "api_key": "JsonApiK3y"}'}))
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": entries}}))


def echo(role: str) -> web.Application:
    """Old and new echo what they were sent (all but the staging credential), differing in
    one field, so the run has divergences, examples and a report that quote requests."""
    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {STAGING[role]}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({
            "version": role, "query": request.query_string, "cookie": request.headers.get("Cookie"),
            "body": (await request.read()).decode(), "path": request.path})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def collect_live(out: Path) -> None:
    async def send(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                async with session.get(f"{url}/items/{i}?token=QueryT0ken", headers={
                        "Authorization": "Bearer LiveBearer9", "Cookie": "sid=LiveCookie7",
                        "Host": "shop.test"}) as resp:
                    assert resp.status == 204
    with collector(out) as (url, _):
        asyncio.run(send(url))


def every_byte(root: Path) -> dict[Path, bytes]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found[path] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return found


def invoke(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output


def test_no_secret_of_the_input_is_stored_anywhere(tmp_path, monkeypatch) -> None:
    inputs, work = tmp_path / "inputs", tmp_path / "work"
    inputs.mkdir()
    work.mkdir()
    har(inputs / "shop.har")
    (inputs / "access.log").write_text(
        '10.0.0.1 - - [01/Dec/2026:10:00:00 +0000] "GET /items/9?api_key=LogT0ken HTTP/1.1" '
        '200 12 "-" "curl/8"\n')
    invoke("capture", "har", str(inputs / "shop.har"), "-o", str(work / "har.jsonl.gz"), "-q")
    invoke("capture", "log", str(inputs / "access.log"), "-o", str(work / "log.jsonl"), "-q")
    collect_live(work / "live.jsonl")
    assert read_header(work / "har.jsonl.gz")["secrets"]["mode"] == "hashed"
    assert read_header(work / "live.jsonl")["secrets"]["replaced"] == 9

    monkeypatch.setenv("OLD_CRED", STAGING["old"])
    monkeypatch.setenv("NEW_CRED", STAGING["new"])
    config = work / "shadowdiff.toml"
    config.write_text('[auth.old]\nAuthorization = "Bearer ${OLD_CRED}"\n'
                      '[auth.new]\nAuthorization = "Bearer ${NEW_CRED}"\n')
    history = work / "history.sqlite"
    with serve_app(lambda: echo("old")) as old, serve_app(lambda: echo("new")) as new:
        for name, capture in (("run-captures", str(work / "har.jsonl.gz")),
                              ("run-raw-har", str(inputs / "shop.har"))):  # read directly too
            invoke("run", capture, str(work / "log.jsonl"), str(work / "live.jsonl"),
                   "--old", old, "--new", new, "--config", str(config), "--methods", "GET,POST",
                   "--out", str(work / name), "--history", str(history), "--quiet")
    summary = orjson.loads((work / "run-raw-har" / "summary.json").read_bytes())
    # the staging credentials reached both targets ([auth]): they answered, not 401
    assert summary["totals"]["diverged"] >= 6, summary["totals"]
    assert b'"status":401' not in orjson.dumps(summary)

    files = every_byte(work)
    assert {p.name for p in files} >= {"har.jsonl.gz", "live.jsonl", "summary.json",
                                        "examples.json", "report.html", "results.jsonl.gz",
                                        "history.sqlite"}
    leaks = [(path.relative_to(work), s) for path, data in files.items() for s in SECRETS
             if s in data]
    assert not leaks
    staging = [p for p, data in files.items() for s in STAGING.values() if s.encode() in data]
    assert not staging
    assert all(s in b"".join(every_byte(inputs).values()) for s in SECRETS[:6])  # a fair test


def test_keep_secrets_keeps_them_and_says_so(tmp_path) -> None:
    har(tmp_path / "shop.har")
    invoke("capture", "har", str(tmp_path / "shop.har"), "-o", str(tmp_path / "c.jsonl"), "-q",
           "--keep-secrets")
    assert read_header(tmp_path / "c.jsonl")["secrets"] == {"mode": "kept"}
    assert b"Tok3nFromHAR" in (tmp_path / "c.jsonl").read_bytes()


