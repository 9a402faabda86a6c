"""`shadowdiff run --notify` end to end: real old/new shops, a real webhook receiver and a
real aiosmtpd server on loopback; what arrives, when, and what a failed delivery does."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from factories import make_exchange
from servers import refused_url, serve_app
from aiosmtpd.smtp import AuthResult
from smtp_servers import MailHandler, self_signed_context, serve_smtp
from shadowdiff.nightly.config import SMTP_PASSWORD_ENV as PASSWORD_ENV
from shadowdiff.nightly.config import SMTP_USER_ENV as USER_ENV
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main

TOKEN = "s3cr3t-capture-token"
HOOK_TOKEN = "Xq7bLr2mWz9NcK4tYp1sHd8v"
PASSWORD = "correct horse battery staple"


def shop(version: str):
    def factory() -> web.Application:
        async def item(request: web.Request) -> web.Response:
            i = int(request.match_info["id"])
            return web.json_response({"id": i, "v": 2 if version == "new" and i % 2 else 1,
                                      "name": "x" if version == "new" and i % 4 == 0 else "n"})

        app = web.Application()
        app.router.add_get("/items/{id}", item)
        return app
    return factory


class Receiver:
    """A webhook that records each message and whether the report it names exists yet."""

    def __init__(self, status: int = 200) -> None:
        self.status, self.bodies, self.report_existed = status, [], []

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            self.bodies.append(body)
            html = body["shadowdiff"]["report"].get("html")
            self.report_existed.append(bool(html) and Path(html).is_file())
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        return app


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "capture.jsonl"
    write_capture(path, [make_exchange(target=f"/items/{i}", headers=(
        ("Host", "shop"), ("Authorization", f"Bearer {TOKEN}"))) for i in range(12)])
    return path


@pytest.fixture(scope="module")
def differing():
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        yield old, new


@pytest.fixture(scope="module")
def same():
    with serve_app(shop("old")) as old, serve_app(shop("old")) as also_old:
        yield old, also_old


def run(capture: Path, targets: tuple[str, str], tmp: Path, name: str, *args: str,
        env: dict[str, str] | None = None) -> Any:
    old, new = targets
    env = {USER_ENV: None, PASSWORD_ENV: None, **(env or {})}  # none from the caller's shell
    return CliRunner(env=env).invoke(main, [
        "run", str(capture), "--old", old, "--new", new, "--out", str(tmp / name),
        "--history", str(tmp / "history.sqlite"), *args], catch_exceptions=False)


def summary_of(tmp: Path, name: str) -> dict[str, Any]:
    return orjson.loads((tmp / name / "summary.json").read_bytes())


def test_a_failed_gate_posts_the_top_signatures_counts_and_report(capture, differing, tmp_path):
    receiver = Receiver()
    with serve_app(receiver.app) as hook:
        result = run(capture, differing, tmp_path, "r1", "--quiet", "--notify", hook + "/hooks/a")
    assert result.exit_code == 1, result.output
    summary = summary_of(tmp_path, "r1")
    [message] = receiver.bodies
    assert receiver.report_existed == [True]  # written before the message went out
    body = message["shadowdiff"]
    assert body["events"] == ["gate-failed", "new-signatures"]  # the first run: all new
    assert body["verdict"] == summary["verdict"] and body["exit_code"] == 1
    assert [s["key"] for s in body["signatures"]["top"]] == [s["key"] for s in summary["signatures"]]
    assert body["signatures"]["top"][0]["affected"] == summary["signatures"][0]["affected"]
    assert {k: body["totals"][k] for k in ("replayed", "identical", "diverged")} == {
        k: summary["totals"][k] for k in ("replayed", "identical", "diverged")}
    assert body["report"]["html"] == str((tmp_path / "r1" / "report.html").absolute())
    assert body["run"]["id"] == summary["run"]["id"]
    assert "GET /items/{id}" in message["text"] and summary["verdict"] in message["text"]
    assert TOKEN not in json.dumps(message)
    section = summary["notifications"]
    assert section["events"] == ["gate-failed", "new-signatures"]
    [delivery] = section["deliveries"]
    assert delivery == {**delivery, "target": hook + "/hooks/a", "kind": "http", "ok": True,
                        "attempts": 1, "status": 200, "error": None}
    assert "notify:" not in result.output  # --quiet: only a failure is worth a line


def test_a_failed_delivery_is_a_warning_and_the_exit_code_stays_the_gates(
        capture, differing, same, tmp_path):
    receiver = Receiver(status=500)
    closed = f"{refused_url()}/services/T01/B02/{HOOK_TOKEN}"
    with serve_app(receiver.app) as hook:
        failing = run(capture, differing, tmp_path, "r1", "--quiet", "--notify", hook,
                      "--notify", closed)
        passing = run(capture, same, tmp_path, "r2", "--quiet", "--notify", hook,
                      "--notify-when", "always")
    assert failing.exit_code == 1 and passing.exit_code == 0  # the gate's, both times
    assert len(receiver.bodies) == 3 + 3  # every attempt reached it: 3 per run
    http, smtp_less = summary_of(tmp_path, "r1")["notifications"]["deliveries"]
    assert not http["ok"] and http["attempts"] == 3 and http["status"] == 500
    assert not smtp_less["ok"] and smtp_less["attempts"] == 3
    assert smtp_less["target"].endswith("/services/T01/B02/***")
    assert "cannot connect" in smtp_less["error"]
    assert failing.output.count("shadowdiff: warning: notification to") == 2
    assert "failed after 3 attempts: HTTP 500" in failing.output
    assert "warning: notification" in passing.output and "PASS" in passing.output
    everything = failing.output + (tmp_path / "r1" / "summary.json").read_text()
    assert HOOK_TOKEN not in everything


def test_nothing_is_sent_when_the_gate_passes_and_nothing_is_new(capture, same, tmp_path):
    receiver = Receiver()
    with serve_app(receiver.app) as hook:
        result = run(capture, same, tmp_path, "r1", "--notify", hook)
    assert result.exit_code == 0 and receiver.bodies == []
    assert summary_of(tmp_path, "r1")["notifications"] == {
        "when": ["gate-failed", "new-signatures"], "events": [], "deliveries": []}
    assert "notify: not sent (no event of gate-failed, new-signatures)" in result.output


def test_new_signatures_notify_once_even_when_the_gate_passes(capture, differing, tmp_path):
    receiver = Receiver()
    args = ("--quiet", "--fail-on", "diverged>1000", "--notify-when", "new-signatures")
    with serve_app(receiver.app) as hook:
        first = run(capture, differing, tmp_path, "r1", *args, "--notify", hook)
        second = run(capture, differing, tmp_path, "r2", *args, "--notify", hook)
    assert first.exit_code == 0 and second.exit_code == 0
    [message] = receiver.bodies  # the second run found nothing new
    new = message["shadowdiff"]["new_signatures"]
    assert message["shadowdiff"]["events"] == ["new-signatures"]
    assert new["count"] == 2 and new["previous_run_id"] is None
    assert "New since the last run: 2" in message["text"]
    assert summary_of(tmp_path, "r2")["notifications"]["events"] == []


def test_mailto_sends_the_same_text_through_the_configured_server(capture, differing, tmp_path):
    handler = MailHandler()
    with serve_smtp(handler, "mx.test") as smtp:
        config = tmp_path / "shadowdiff.toml"
        config.write_text(f'[notify]\nurls = ["mailto:ops@example.com"]\nsmtp_host = "127.0.0.1"\n'
                          f'smtp_port = {urlsplit(smtp).port}\nstarttls = false\n'
                          'from = "shadowdiff@ci.example.com"\n')
        result = run(capture, differing, tmp_path, "r1", "--config", str(config))
    assert result.exit_code == 1, result.output
    summary = summary_of(tmp_path, "r1")
    [raw] = handler.delivered
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    text = mail.get_content()
    assert mail["Subject"] == f"[shadowdiff] {summary['verdict']}"
    assert "GET /items/{id} body.v value_changed: 6/12" in text
    assert str((tmp_path / "r1" / "report.html").absolute()) in text
    assert "&lt;" not in text and "`" not in text  # plain text, not chat markup
    assert summary["notifications"]["deliveries"][0]["ok"] is True
    assert "notify: sent to mailto:ops@example.com (gate-failed, new-signatures; 1 attempt)" \
        in result.output


def test_the_nightly_job_mails_over_starttls_and_the_password_is_nowhere(
        capture, differing, tmp_path):
    logins = []

    def authenticator(server, session, envelope, mechanism, data):
        logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    handler = MailHandler()
    tls = self_signed_context(tmp_path, host="localhost")
    with serve_smtp(handler, "mx.test", tls=tls, authenticator=authenticator,
                    auth_required=True) as smtp:
        config = tmp_path / "shadowdiff.toml"
        config.write_text(f'[notify]\nsmtp_host = "localhost"\nsmtp_port = {urlsplit(smtp).port}\n'
                          f'ca_file = "{tmp_path / "cert.pem"}"\n')
        env = {USER_ENV: "shadowdiff", PASSWORD_ENV: PASSWORD}
        result = run(capture, differing, tmp_path, "r1", "--config", str(config), "--quiet",
                     "--fail-on", "new", "--junit", str(tmp_path / "r1" / "junit.xml"),
                     "--notify", "mailto:ops@example.com", env=env)
    assert result.exit_code == 1, result.output
    assert logins == [("shadowdiff", True)] and handler.envelopes[0][2] is True
    [raw] = handler.delivered
    assert b"GET /items/{id}" in raw and PASSWORD.encode() not in raw
    [delivery] = summary_of(tmp_path, "r1")["notifications"]["deliveries"]
    assert delivery["ok"] and delivery["kind"] == "smtp"
    stored = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert stored and not any(PASSWORD.encode() in b for b in stored)  # run dir, history, junit
    assert PASSWORD not in result.output


def test_a_run_cut_short_by_bad_input_is_announced_with_its_error(capture, same, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = capture.read_text().splitlines()
    lines[3] = lines[3][:40]
    bad.write_text("\n".join(lines) + "\n")
    receiver = Receiver()
    with serve_app(receiver.app) as hook:
        result = run(bad, same, tmp_path, "r1", "--quiet", "--notify", hook)
    assert result.exit_code == 2
    [message] = receiver.bodies
    body = message["shadowdiff"]
    assert body["events"] == ["gate-failed"] and body["exit_code"] == 2
    assert "bad.jsonl:line 4" in body["run"]["errors"][0]
    assert "Input error: " in message["text"] and "bad.jsonl:line 4" in message["text"]


@pytest.mark.parametrize("args, message", [
    (("--notify", "ftp://hooks.test/x"), "a notification target is an http(s)"),
    (("--notify", "mailto:ops@example.com"), "needs an SMTP server"),
    (("--notify", "http://hooks.test/x", "--notify-when", "sometimes"), "notify.when"),
    (("--notify-when", "always"), "--notify-when needs a target"),
])
def test_a_notification_that_could_not_work_stops_the_run_before_replay(
        capture, tmp_path, args, message):
    result = run(capture, (refused_url(), refused_url()), tmp_path, "r1", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "r1").exists()
