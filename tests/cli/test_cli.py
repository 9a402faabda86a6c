"""End to end through the CLI, against real servers on loopback; bad input exits 2."""

from __future__ import annotations

import gzip
import json
import uuid

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from factories import make_exchange
from servers import raw_server, serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main


def shop(version: str):
    def factory() -> web.Application:
        async def user(request: web.Request) -> web.Response:
            uid = int(request.match_info["id"])
            body = {"id": uid, "name": f"user {uid}", "request_id": str(uuid.uuid4()),
                    "tags": ["a", "b", "c"] if version == "old" else ["c", "b", "a"]}
            if version == "new":
                body["name"] = body["name"].upper()  # the deliberate change
            return web.json_response(body, headers={"X-Request-Id": str(uuid.uuid4())})

        async def logo(request: web.Request) -> web.Response:
            return web.Response(body=bytes(range(256)), content_type="image/png")

        async def gz(request: web.Request) -> web.Response:
            payload = json.dumps({"v": 1 if version == "old" else 2}).encode()
            return web.Response(body=gzip.compress(payload), headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"})

        app = web.Application()
        app.router.add_get("/users/{id}", user)
        app.router.add_get("/logo.png", logo)
        app.router.add_get("/gz", gz)
        app.router.add_route("*", "/cart", user)
        return app
    return factory


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "capture.jsonl"
    exchanges = [make_exchange(target=f"/users/{i}", headers=(
        ("Host", "shop"), ("Authorization", "Bearer s3cr3t-token"), ("Cookie", "sid=abc123")))
        for i in range(1, 21)]
    exchanges += [make_exchange(target="/logo.png"), make_exchange(target="/gz"),
                  make_exchange("POST", "/cart", body=b"{}"), make_exchange("DELETE", "/cart")]
    write_capture(path, exchanges)
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "shadowdiff.toml"
    path.write_text('[normalize]\nignore_paths = ["body.request_id"]\nunordered = ["body.tags"]\n')
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_run_end_to_end(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        result = invoke("run", str(capture), "--old", old, "--new", new, "--config", str(config),
                        "--out", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    summary = orjson.loads((out / "summary.json").read_bytes())
    totals = summary["totals"]
    assert totals["replayed"] == 22 and totals["skipped"] == 2
    assert totals["skipped_by_reason"] == {"method DELETE": 1, "method POST": 1}
    assert totals["identical"] == 1  # the binary logo
    keys = {(s["endpoint"], s["location"], s["kind"]) for s in summary["signatures"]}
    assert keys == {("GET /users/{id}", "body.name", "value_changed"),
                    ("GET /gz", "body.v", "value_changed")}
    users = next(s for s in summary["signatures"] if s["location"] == "body.name")
    assert users["affected"] == 20 and users["rate"] == 1.0
    assert users["example"]["old"] == users["example"]["new"].lower()
    assert summary["usage"]["source"] == "capture"
    for name in ("report.html", "report.md", "results.jsonl.gz", "examples.json"):
        assert (out / name).exists(), name
    everything = b"".join((out / n).read_bytes() for n in ("report.html", "report.md",
                                                           "summary.json", "examples.json"))
    assert b"s3cr3t-token" not in everything and b"abc123" not in everything
    lines = gzip.decompress((out / "results.jsonl.gz").read_bytes()).splitlines()
    assert len(lines) == 22


def test_show_secrets_opt_in(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        # reports show them only when the run also keeps them as it reads the capture
        invoke("run", str(capture), "--old", old, "--new", new, "--config", str(config),
               "--out", str(out), "--quiet", "--show-secrets", "--keep-secrets")
    assert b"s3cr3t-token" in (out / "examples.json").read_bytes()


def test_show_secrets_alone_shows_only_their_hashes(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        invoke("run", str(capture), "--old", old, "--new", new, "--config", str(config),
               "--out", str(out), "--quiet", "--show-secrets")
    examples = (out / "examples.json").read_bytes()
    assert b"s3cr3t-token" not in examples and b"Bearer redacted:" in examples


def test_identical_systems_exit_0(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("old")) as also_old:
        result = invoke("run", str(capture), "--old", old, "--new", also_old,
                        "--config", str(config), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["signatures"] == [] and summary["totals"]["identical"] == 22


@pytest.mark.parametrize("behaviour,kind", [("hang", "timeout"), ("reset", "reset"),
                                            ("garbage", "invalid")])
def test_failing_new_system_is_recorded_and_the_run_completes(tmp_path, capture, config,
                                                              behaviour, kind):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, raw_server(behaviour) as bad:
        result = invoke("run", str(capture), "--old", old, "--new", bad, "--config", str(config),
                        "--out", str(out), "--quiet", "--timeout", "0.5")
    assert result.exit_code == 1
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["totals"]["replayed"] == 22
    assert summary["totals"]["failed"]["new"] == 22
    failure_kinds = {f["kind"] for f in summary["failures"] if f["role"] == "new"}
    assert failure_kinds == {kind}
    assert {s["kind"] for s in summary["signatures"]} == {"failure"}


def test_refused_target(tmp_path, capture):
    from servers import refused_url
    out = tmp_path / "run"
    with serve_app(shop("old")) as old:
        result = invoke("run", str(capture), "--old", old, "--new", refused_url(),
                        "--out", str(out), "--quiet")
    assert result.exit_code == 1
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["failures"][0]["kind"] == "refused"


def test_methods_opt_in_replays_post(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        invoke("run", str(capture), "--old", old, "--new", new, "--config", str(config),
               "--out", str(out), "--quiet", "--methods", "GET,POST")
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["totals"]["replayed"] == 23
    assert summary["totals"]["skipped_by_reason"] == {"method DELETE": 1}


# -- bad input: exit 2, the message names the file and the position ------------------------

def test_capture_that_is_not_json_lines(tmp_path, capture):
    bad = tmp_path / "bad.jsonl"
    lines = capture.read_text().splitlines()
    lines[3] = lines[3][:40]
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    with serve_app(shop("old")) as old:
        result = invoke("run", str(bad), "--old", old, "--new", old, "--out", str(out), "--quiet")
    assert result.exit_code == 2
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert "bad.jsonl:line 4" in summary["run"]["errors"][0]
    assert summary["totals"]["replayed"] == 2  # what came before the bad line was kept


def test_truncated_gzip_capture(tmp_path, capture):
    gz = tmp_path / "capture.jsonl.gz"
    gz.write_bytes(gzip.compress(capture.read_bytes())[:-200])
    out = tmp_path / "run"
    with serve_app(shop("old")) as old:
        result = invoke("run", str(gz), "--old", old, "--new", old, "--out", str(out), "--quiet")
    assert result.exit_code == 2
    errors = orjson.loads((out / "summary.json").read_bytes())["run"]["errors"]
    assert "capture.jsonl.gz:line" in errors[0] and "truncated" in errors[0]


def test_har_missing_fields(tmp_path):
    har = tmp_path / "x.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": [
        {"request": {"url": "http://a/x", "headers": []}, "response": {"status": 200}}]}}))
    result = CliRunner().invoke(main, ["capture", "har", str(har), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "x.har" in result.output and "entries[0]" in result.output and "method" in result.output


def test_unknown_config_key(tmp_path, capture):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[replay]\nconcurency = 4\n")
    result = CliRunner().invoke(main, ["run", str(capture), "--old", "http://127.0.0.1:9",
                                       "--new", "http://127.0.0.1:9", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "'replay.concurency'" in result.output


def test_unknown_capture_format(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 10)
    result = CliRunner().invoke(main, ["run", str(junk), "--old", "http://127.0.0.1:9",
                                       "--new", "http://127.0.0.1:9", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "junk.bin" in result.output


def test_missing_targets_is_a_usage_error(tmp_path, capture):
    result = CliRunner().invoke(main, ["run", str(capture), "--old", "http://127.0.0.1:9",
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "old and a new target" in result.output


def test_no_targets_and_nothing_recorded_is_an_input_error(tmp_path, capture):
    result = CliRunner().invoke(main, ["run", str(capture), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "no --old/--new targets were given" in result.output


def test_every_command_has_help():
    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield prefix + [name], cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])
    for path, cmd in walk(main, []):
        assert cmd.help, path
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path


def test_report_rerenders_a_finished_run(tmp_path, capture, config):
    out = tmp_path / "run"
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        invoke("run", str(capture), "--old", old, "--new", new, "--config", str(config),
               "--out", str(out), "--quiet")
    before = (out / "report.html").read_text()
    (out / "report.html").unlink()
    (out / "report.md").unlink()
    result = invoke("report", str(out))
    assert result.exit_code == 0
    assert (out / "report.html").read_text() == before
    assert "body.name" in (out / "report.md").read_text()


def test_report_of_a_directory_without_a_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "summary.json" in result.output


@pytest.mark.parametrize("text,key", [
    ('[[normalize.masks]]\npattern = "(unclosed"\n', "normalize.masks[0].pattern"),
    ('[normalize]\nxml = ["body..x"]\n', "normalize.xml"),
    ('[normalize]\nmasks = ["no-such-preset"]\n', "normalize.masks[0].name"),
])
def test_bad_rules_exit_2_naming_the_file_and_key(tmp_path, capture, text, key):
    cfg = tmp_path / "rules.toml"
    cfg.write_text(text)
    result = CliRunner().invoke(main, ["run", str(capture), "--old", "http://127.0.0.1:9",
                                       "--new", "http://127.0.0.1:9", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "rules.toml" in result.output and repr(key) in result.output


def test_rules_suggest_without_a_run_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["rules", "suggest", str(tmp_path)])
    assert result.exit_code == 2 and "noise.json" in result.output
