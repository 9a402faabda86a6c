"""Routing: one templater for the capture and the logs, from [routes], OpenAPI and the logs."""

from __future__ import annotations

from testpaths import DATA

import orjson
import pytest
from click.testing import CliRunner

from factories import make_exchange, make_request
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main
from shadowdiff.config import config_from_dict, load_config
from shadowdiff.errors import ConfigError
from shadowdiff.rank.routing import RoutesConfig, build_templater, endpoint_function, usage_from_logs

DATA = DATA
LINE = '10.0.0.1 - - [11/Jun/2024:00:00:{s:02d} +0000] "GET {path} HTTP/1.1" 200 12 "-" "t"\n'


def test_routes_config_is_checked():
    cfg = config_from_dict({"routes": {"paths": ["GET /users/{id}"], "learn_threshold": 5}})
    assert cfg.routes == RoutesConfig(paths=("GET /users/{id}",), learn_threshold=5)
    for table, key in (({"pathz": []}, "routes.pathz"), ({"paths": "x"}, "routes.paths"),
                       ({"learn_ids": 1}, "routes.learn_ids"), ({"paths": ["/a/{"]}, "routes.paths[0]")):
        with pytest.raises(ConfigError, match=repr(key).replace("[", r"\[").replace("]", r"\]")):
            config_from_dict({"routes": table}, "x.toml")


def test_config_relative_openapi_path(tmp_path):
    (tmp_path / "spec.yaml").write_text((DATA / "openapi.yaml").read_text())
    (tmp_path / "shadowdiff.toml").write_text('[routes]\nopenapi = "spec.yaml"\n')
    cfg = load_config(tmp_path / "shadowdiff.toml")
    templater = build_templater(cfg.routes, base_dir=tmp_path)
    assert len(templater.routes) > 0


def test_learned_ids_join_capture_and_logs(tmp_path):
    log = tmp_path / "access.log"
    slugs = [f"/products/item-{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60)]
    log.write_text("".join(LINE.format(s=i % 60, path=p) for i, p in enumerate(slugs)))
    templater = build_templater(RoutesConfig(learn_threshold=50))
    usage, learned = usage_from_logs([str(log)], templater, RoutesConfig(learn_threshold=50))
    assert usage is not None and usage.counts == {"GET /products/{id}": 60}
    assert "id positions learned" in usage.note
    endpoint_of = endpoint_function("http", learned, lambda r: "unused")
    assert endpoint_of(make_request(target="/products/fresh-new-slug?x=1")) == "GET /products/{id}"
    # other protocols keep their own keys
    assert endpoint_function("smtp", learned, lambda r: "own")(make_request()) == "own"


def test_run_with_a_route_and_usage_joins_on_the_route(tmp_path):
    from aiohttp import web

    def app():
        async def h(request):
            return web.json_response({"v": 1})
        a = web.Application()
        a.router.add_get("/{tail:.*}", h)
        return a

    capture = tmp_path / "c.jsonl"
    write_capture(capture, [make_exchange(target="/files/a/b.txt"), make_exchange(target="/files/c.txt")])
    log = tmp_path / "access.log"
    log.write_text(LINE.format(s=1, path="/files/x/y/z.txt") + LINE.format(s=2, path="/other"))
    out = tmp_path / "run"
    with serve_app(app) as url:
        result = CliRunner().invoke(main, ["run", str(capture), "--old", url, "--new", url,
                                           "--usage", str(log), "--route", "/files/{path*}",
                                           "--out", str(out), "--quiet", "--no-history"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads((out / "summary.json").read_bytes())
    (endpoint,) = summary["endpoints"]
    assert endpoint["endpoint"] == "GET /files/{path*}" and endpoint["usage_requests"] == 1
    assert [u["endpoint"] for u in summary["uncovered"]] == ["GET /other"]


def test_usage_suggest(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("".join(LINE.format(s=i % 60, path=f"/a/{i}" if i < 90 else "/b") for i in range(100)))
    result = CliRunner().invoke(main, ["usage", str(log), "--suggest", "--target-share", "0.9"])
    assert result.exit_code == 0, result.output
    assert "GET /a/{id}" in result.output and "90.0%" in result.output


# -- usage windows ---------------------------------------------------------------------------

OLD_DAY, NEW_DAY = "01/Jun/2024", "11/Jun/2024"


def _window_log(tmp_path):
    """/alpha was busy ten days before the logs end, /beta only on their last day."""
    line = '10.0.0.1 - - [{day}:10:00:{s:02d} +0000] "GET {path} HTTP/1.1" 200 12 "-" "t"\n'
    text = "".join(line.format(day=OLD_DAY, s=i % 60, path="/alpha") for i in range(90))
    text += "".join(line.format(day=NEW_DAY, s=i % 60, path="/beta") for i in range(10))
    text += '10.0.0.1 - - [bad time] "GET /beta HTTP/1.1" 200 12 "-" "t"\n'
    log = tmp_path / "access.log"
    log.write_text(text)
    return log


def _run_ranked(tmp_path, log, *extra):
    from aiohttp import web

    def app(value):
        def make():
            async def h(request):
                return web.json_response({"v": value})
            a = web.Application()
            a.router.add_get("/{tail:.*}", h)
            return a
        return make

    capture = tmp_path / "c.jsonl"
    write_capture(capture, [make_exchange(target="/alpha"), make_exchange(target="/beta")])
    out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    with serve_app(app(1)) as old, serve_app(app(2)) as new:
        result = CliRunner().invoke(main, ["run", str(capture), "--old", old, "--new", new,
                                           "--usage", str(log), "--out", str(out), "--quiet",
                                           "--no-history", *extra])
    assert result.exit_code == 1, result.output  # both endpoints diverge
    return orjson.loads((out / "summary.json").read_bytes()), out


def test_window_days_ranks_recent_traffic_first(tmp_path):
    log = _window_log(tmp_path)
    whole, _ = _run_ranked(tmp_path, log)
    assert [s["endpoint"] for s in whole["signatures"]] == ["GET /alpha", "GET /beta"]
    assert whole["usage"]["window_days"] is None and whole["usage"]["requests"] == 101

    recent, out = _run_ranked(tmp_path, log, "--window-days", "1")
    assert [s["endpoint"] for s in recent["signatures"]] == ["GET /beta", "GET /alpha"]
    assert recent["signatures"][0]["usage_share"] == 1.0  # /alpha fell out of the window
    usage = recent["usage"]
    assert (usage["window_days"], usage["half_life_days"], usage["requests"]) == (1.0, None, 10)
    assert "2024-06-11 to 2024-06-11 UTC" in usage["note"]
    assert "1 requests without a parsable time left out" in usage["note"]
    assert "last 1 days only" in recent["ranking"]["usage_share"]
    assert ", last 1 days only" in (out / "report.md").read_text()
    assert "last 1 days only" in (out / "report.html").read_text()

    toml = tmp_path / "shadowdiff.toml"
    toml.write_text("[rank]\nwindow_days = 14\nhalf_life_days = 5\n")
    decayed, _ = _run_ranked(tmp_path, log, "--config", str(toml))
    assert decayed["usage"]["window_days"] == 14 and decayed["usage"]["half_life_days"] == 5
    # 90 requests two half-lives old weigh 22.5 -> 22, still above /beta's 10
    assert [s["endpoint"] for s in decayed["signatures"]] == ["GET /alpha", "GET /beta"]
    assert decayed["usage"]["requests"] == 32


def test_window_is_applied_after_learning_ids(tmp_path):
    line = '10.0.0.1 - - [{day}:00:00:{s:02d} +0000] "GET {path} HTTP/1.1" 200 12 "-" "t"\n'
    slugs = [f"/products/item-{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60)]
    log = tmp_path / "access.log"
    log.write_text("".join(line.format(day=OLD_DAY if i < 40 else NEW_DAY, s=i % 60, path=p)
                           for i, p in enumerate(slugs)))
    cfg = RoutesConfig(learn_threshold=50)
    usage, _ = usage_from_logs([str(log)], build_templater(cfg), cfg, window_days=3)
    assert usage is not None and usage.counts == {"GET /products/{id}": 20}
    assert usage.window_days == 3 and "id positions learned" in usage.note


def test_window_needs_logs_with_times(tmp_path):
    log = tmp_path / "a.jsonl"
    log.write_text('{"method": "GET", "path": "/a", "status": 200}\n')
    with pytest.raises(ConfigError, match="rank.window_days.*needs logs with a time field"):
        usage_from_logs([str(log)], build_templater(RoutesConfig()), RoutesConfig(),
                        window_days=7)


@pytest.mark.parametrize("args, named", [
    (["--window-days", "-1"], "--window-days"),
    (["--window-days", "0"], "--window-days"),
    (["--window-days", "seven"], "--window-days"),
    (["--window-days", "nan"], "rank.window_days"),
    (["--config", "{toml}:window_days = -3"], "rank.window_days"),
    (["--config", "{toml}:window_days = \"7\""], "rank.window_days"),
    (["--config", "{toml}:window_days = true"], "rank.window_days"),
    (["--config", "{toml}:half_life_days = 2"], "rank.half_life_days"),
    (["--config", "{toml}:window_days = 7\nhalf_life_days = 0"], "rank.half_life_days"),
])
def test_bad_window_values_exit_2_naming_the_key(tmp_path, args, named):
    if args[0] == "--config":
        toml = tmp_path / "shadowdiff.toml"
        toml.write_text("[rank]\n" + args[1].split(":", 1)[1] + "\n")
        args = ["--config", str(toml)]
    capture = tmp_path / "c.jsonl"
    write_capture(capture, [make_exchange(target="/alpha")])
    result = CliRunner().invoke(main, ["run", str(capture), "--old", "http://127.0.0.1:9",
                                       "--new", "http://127.0.0.1:9", "--quiet", "--no-history",
                                       "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not (tmp_path / "out" / "summary.json").exists()
