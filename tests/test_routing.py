"""Routing: one templater for the capture and the logs, from [routes], OpenAPI and the logs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from factories import make_exchange, make_request
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli import main
from shadowdiff.config import config_from_dict, load_config
from shadowdiff.errors import ConfigError
from shadowdiff.routing import RoutesConfig, build_templater, endpoint_function, usage_from_logs

DATA = Path(__file__).parent / "data"
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
