"""The notification: when it is due, what it says (and never says), and its delivery to
real HTTP receivers on loopback: retries, refusals, closed ports, TLS with a test CA."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from servers import background_loop, raw_server, refused_url, serve_app
from smtp_servers import self_signed_context
from testpaths import REPO
from shadowdiff.nightly.config import NotifyConfig
from shadowdiff.nightly.deliver import Backoff, Mail, deliver
from shadowdiff.nightly.notify import (build_message, mail_subject, new_signatures,
                                       render_text, report_locations, triggered)

GOLDEN = json.loads((REPO / "tests" / "golden" / "summary.json").read_text())
MAIL = Mail("unused", "unused")


def summary(*, exit_code: int = 1, new: tuple[str, ...] | None = None,
            accepted: tuple[str, ...] = ()) -> dict[str, Any]:
    """The golden summary with a gate and a since-last-run section."""
    s = copy.deepcopy(GOLDEN)
    s["exit_code"] = exit_code
    s["verdict"] = "FAIL: 2 divergence signatures (any)" if exit_code else "PASS: within the gates"
    s["gate"] = {"conditions": ["any"], "passed": exit_code == 0, "reasons": [
        {"condition": "any", "failed": bool(exit_code), "message": "2 divergence signatures",
         "detail": "top: " + s["signatures"][0]["key"]}]}
    for sig in s["signatures"]:
        sig["accepted"] = sig["key"] in accepted
    if new is not None:
        s["since_last"] = {"previous_run_id": "prev1", "resolved": {}, "persisting": {},
                           "new": {k: {"impact": 0.1} for k in new}}
    return s


# --- when ----------------------------------------------------------------------------------

def test_the_default_events_are_a_failed_gate_and_new_signatures() -> None:
    when = NotifyConfig().when
    first = summary()["signatures"][0]["key"]
    assert triggered(summary(exit_code=1, new=()), when) == ["gate-failed"]
    assert triggered(summary(exit_code=0, new=()), when) == []
    assert triggered(summary(exit_code=0, new=(first,)), when) == ["new-signatures"]
    assert triggered(summary(exit_code=2, new=(first,)), when) == ["gate-failed", "new-signatures"]
    assert triggered(summary(exit_code=1, new=()), ["new-signatures"]) == []
    assert triggered(summary(exit_code=0, new=()), ["always"]) == ["always"]
    assert triggered(summary(exit_code=1, new=()), ["always"]) == ["gate-failed"]


def test_an_accepted_signature_is_not_new_and_without_history_nothing_is() -> None:
    first = GOLDEN["signatures"][0]["key"]
    assert new_signatures(summary(new=(first,), accepted=(first,))) == []
    assert triggered(summary(exit_code=0, new=(first,), accepted=(first,)),
                     ["new-signatures"]) == []
    assert new_signatures(summary(new=None)) is None  # --no-history: unknown, not "all new"


# --- what it says --------------------------------------------------------------------------

def test_the_message_names_the_top_signatures_counts_and_the_report(tmp_path: Path) -> None:
    s = summary(new=(GOLDEN["signatures"][1]["key"],))
    html = tmp_path / "run-1" / "report.html"
    message = build_message(s, report_locations({"html": html}, None), ["gate-failed"], top=2)
    body = message["shadowdiff"]
    assert body["schema"] == "shadowdiff-notification" and body["events"] == ["gate-failed"]
    assert body["verdict"] == s["verdict"] and body["exit_code"] == 1
    assert body["gate"] == {"passed": False, "conditions": ["any"], "failed": [
        {"condition": "any", "message": "2 divergence signatures",
         "detail": "top: " + s["signatures"][0]["key"]}]}
    assert body["totals"]["replayed"] == s["totals"]["replayed"]
    assert body["totals"]["diverged"] == s["totals"]["diverged"]
    assert [t["key"] for t in body["signatures"]["top"]] == [g["key"] for g in s["signatures"][:2]]
    assert body["signatures"]["count"] == len(s["signatures"])
    assert body["new_signatures"]["count"] == 1
    assert body["new_signatures"]["top"][0]["key"] == s["signatures"][1]["key"]
    assert body["report"] == {"html": str(html.absolute())}
    text = message["text"]
    assert s["verdict"] in text and str(html.absolute()) in text
    assert "`GET /users/{id}` `body.email` `field_missing`: 120/130" in text
    assert "New since the last run: 1" in text and "Interrupted" not in text
    second = s["signatures"][1]
    assert text.count(f"`{second['location']}`") == 1  # named once, in the top list, marked
    assert f"`{second['kind']}`: {second['affected']}/{second['replayed']} (impact" in text
    assert [line.endswith(" NEW") for line in text.splitlines() if line[:3] in ("1. ", "2. ")] \
        == [False, True]
    s["run"]["interrupted"] = True
    assert "Interrupted: the report covers" in build_message(s, {}, ["gate-failed"])["text"]


def test_a_new_signature_below_the_top_is_listed_under_new() -> None:
    last = GOLDEN["signatures"][-1]
    text = build_message(summary(new=(last["key"],)), {}, ["new-signatures"], top=1)["text"]
    lines = text.splitlines()
    at = lines.index("New since the last run: 1")
    assert lines[at + 1].startswith(f"{last['rank']}. `{last['endpoint']}`")
    assert lines[at + 1].endswith(" NEW") and text.count(" NEW") == 1


def test_no_captured_value_goes_out() -> None:
    s = summary()
    s["signatures"][0]["example"] = {"exchange_id": "x", "location": "header.authorization",
                                     "old": "Bearer s3cr3t", "new": "Bearer other-s3cr3t"}
    s["run"]["targets"] = {"old": "http://svc:pw0rd@old.test/", "new": "http://new.test/",
                           "old_replica": None}
    out = json.dumps(build_message(s, {}, ["gate-failed"]))
    assert "s3cr3t" not in out and "pw0rd" not in out and "ann@example.com" not in out
    assert "http://***@old.test/" in out


def test_report_url_names_the_served_run_directory(tmp_path: Path) -> None:
    paths = {"html": tmp_path / "2024-05-01" / "report.html"}
    assert report_locations(paths, "https://ci.example/shadowdiff/") == {
        "html": "https://ci.example/shadowdiff/2024-05-01/report.html"}


def test_hostile_names_cannot_ping_a_channel_or_break_out_of_the_markup() -> None:
    s = summary()
    s["signatures"][0]["location"] = 'body.after["<!channel> ping @here `x`"]'
    s["verdict"] = "INPUT ERROR: capture.jsonl:3: <!everyone> @all"
    body = build_message(s, {}, ["gate-failed"])["shadowdiff"]
    chat = render_text(body, chat=True)
    assert "<!" not in chat and "@here" not in chat and "@all" not in chat
    assert "&lt;!channel&gt;" in chat and "&lt;!everyone&gt;" in chat
    assert "`x`" not in chat  # a backtick cannot close the code span
    mail = render_text(body, chat=False)  # mail is plain text: nothing to escape
    assert "<!channel> ping @here" in mail and "&lt;" not in mail
    assert mail_subject(body) == "[shadowdiff] INPUT ERROR: capture.jsonl:3: <!everyone> @all"
    s["verdict"] = "FAIL: x\r\nBcc: victim@example.com"
    assert "\n" not in mail_subject(build_message(s, {}, ["gate-failed"])["shadowdiff"])


# --- delivery to real receivers ------------------------------------------------------------

class Receiver:
    """A webhook on loopback that answers `script` (statuses, the last one repeated)."""

    def __init__(self, *script: int, retry_after: str | None = None) -> None:
        self.script, self.bodies, self.headers = list(script) or [200], [], []
        self.retry_after, self.times = retry_after, []

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            self.headers.append(dict(request.headers))
            self.times.append(time.monotonic())
            status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=status, text="ok" if status < 300 else "no_service",
                                headers=extra)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        return app


def _deliver(*urls: str, max_wait_s: float = 10.0, **cfg: Any) -> list[Any]:
    config = NotifyConfig(urls=urls, **{"timeout_s": 2.0, **cfg})
    payload = json.dumps(build_message(summary(), {}, ["gate-failed"])).encode()
    return deliver(urls, payload, MAIL, config, backoff=Backoff(0.05, max_wait_s))


def test_a_webhook_gets_the_json_once() -> None:
    receiver = Receiver(200)
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hooks/shadowdiff")
    assert result.ok and result.attempts == 1 and result.status == 200 and result.error is None
    assert result.kind == "http" and result.target == base + "/hooks/shadowdiff"
    [body] = receiver.bodies
    assert body["shadowdiff"]["verdict"] == summary()["verdict"] and body["text"]
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_a_receiver_failing_twice_is_retried_until_it_takes_the_message() -> None:
    receiver = Receiver(500, 503, 200)
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hook")
    assert result.ok and result.attempts == 3 and result.status == 200
    assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]


def test_retries_are_bounded_and_the_last_error_is_kept() -> None:
    receiver = Receiver(500)
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hook", retries=1)
    assert not result.ok and result.attempts == 2 and len(receiver.bodies) == 2
    assert result.status == 500 and result.error == "HTTP 500 Internal Server Error: no_service"


def test_retry_after_is_obeyed_and_the_deadline_stops_the_retries() -> None:
    receiver = Receiver(503, retry_after="0.4")
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hook", retries=10, deadline_s=1.0)
    # tries at about 0 s, 0.4 s, 0.8 s; a fourth would start at 1.2 s, past the deadline
    assert not result.ok and result.attempts == 3 == len(receiver.bodies)
    gaps = [b - a for a, b in zip(receiver.times, receiver.times[1:])]
    assert all(0.35 < g < 0.9 for g in gaps), gaps
    assert result.elapsed_s < 1.5 and result.status == 503


def test_a_huge_retry_after_is_capped() -> None:
    receiver = Receiver(429, 200, retry_after="3600")
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hook", max_wait_s=0.2)  # the cap decides, not the server
    assert result.ok and result.attempts == 2 and result.elapsed_s < 2


def test_a_refusal_that_will_not_change_is_not_retried() -> None:
    receiver = Receiver(404)
    with serve_app(receiver.app) as base:
        [result] = _deliver(base + "/hook")
    assert not result.ok and result.attempts == 1 and result.status == 404


def test_a_closed_port_and_a_silent_peer_fail_after_every_attempt() -> None:
    with raw_server("hang") as silent:
        closed, hung = _deliver(refused_url() + "/hook", silent + "/hook", timeout_s=0.3)
    assert not closed.ok and closed.attempts == 3 and closed.status is None
    assert "cannot connect to 127.0.0.1" in closed.error
    assert not hung.ok and hung.attempts == 3 and hung.error == "no answer within 0.3 s"
    assert hung.elapsed_s < 3


def test_the_webhook_token_is_hidden_in_the_result() -> None:
    token = "Xq7bLr2mWz9NcK4tYp1sHd8v"
    url = f"{refused_url()}/services/T01/B02/{token}?key=k3y"
    [result] = _deliver(url, retries=0)
    assert token not in repr(result) and "k3y" not in repr(result)
    assert result.target.endswith("/services/T01/B02/***?***")


@contextmanager
def serve_https(app: web.Application, context: ssl.SSLContext) -> Iterator[str]:
    with background_loop() as loop:
        async def start() -> tuple[web.AppRunner, int]:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            return runner, runner.addresses[0][1]

        runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            yield f"https://localhost:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)


def test_https_webhooks_are_verified_against_ca_file(tmp_path: Path) -> None:
    receiver = Receiver(200)
    context = self_signed_context(tmp_path, host="localhost")
    with serve_https(receiver.app(), context) as base:
        untrusted, = _deliver(base + "/hook")
        trusted, = _deliver(base + "/hook", ca_file=str(tmp_path / "cert.pem"))
    assert not untrusted.ok and untrusted.attempts == 1 and "not trusted" in untrusted.error
    assert trusted.ok and len(receiver.bodies) == 1


@pytest.mark.parametrize("key", ["password", "smtp_password", "smtp_user"])
def test_smtp_credentials_in_the_config_file_are_refused(key: str) -> None:
    from shadowdiff.config import config_from_dict
    from shadowdiff.errors import ConfigError
    with pytest.raises(ConfigError, match="environment only") as info:
        config_from_dict({"notify": {"smtp_host": "mx.test", key: "hunter2-secret"}})
    assert "hunter2" not in str(info.value) and f"notify.{key}" in str(info.value)


@pytest.mark.parametrize("url", ["ftp://x.test/", "http://", "mailto:nobody", "mailto:a@b.test?subject=x"])
def test_a_target_that_cannot_work_is_a_config_error(url: str) -> None:
    from shadowdiff.config import config_from_dict
    from shadowdiff.errors import ConfigError
    with pytest.raises(ConfigError, match="notify"):
        config_from_dict({"notify": {"urls": [url], "smtp_host": "mx.test"}})
