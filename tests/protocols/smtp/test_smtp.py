"""SMTP plugin: endpoint templates, the session script, lifting, and replay to aiosmtpd MTAs
that differ on purpose (safe by default, --smtp-deliver, pipelining, faults)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from smtp_servers import MailHandler, raw_smtp, scripted_session, self_signed_context, serve_smtp

from shadowdiff.capture.jsonl import read_capture, write_capture
from shadowdiff.config import Config, config_from_dict
from shadowdiff.replay.options import ReplayConfig, Targets
from shadowdiff.protocols.smtp.config import SmtpConfig
from shadowdiff.compare.judge import judge
from shadowdiff.model import Exchange, Failure, Response, Trial
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.protocols.base import get_protocol, protocol_for_url
from shadowdiff.protocols.smtp.plugin import PROTOCOL
from shadowdiff.protocols.smtp.session import SAFE_COMMANDS, endpoint_for, lift_reply
from shadowdiff.protocols.smtp.session import Script, script_of, split_messages, step_request
from shadowdiff.replay.runner import ReplayPolicy, replay, select

SESSION = ["EHLO client.test", "MAIL FROM:<alice@sender.test> SIZE=120",
           "RCPT TO:<carol@example.com>", "RCPT TO:<bob@example.com>",
           "RCPT TO:<eve@elsewhere.org>", "VRFY bob", "NOOP", "DATA", "QUIT"]
MESSAGE = b"Subject: hi\r\n\r\n..dot-stuffed line\r\n.\r\n"


def _options(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"timeout_s": 2.0, "concurrency": 4, **kw})


def _replay(exchanges: list[Exchange], urls: dict[str, str], options: Any) -> list[Trial]:
    async def go() -> list[Trial]:
        senders = {role: PROTOCOL.open_sender(url, options) for role, url in urls.items()}
        policy = ReplayPolicy(methods=PROTOCOL.replay_methods(options), concurrency=8)
        skipped: list[str] = []
        chosen = select(exchanges, policy, lambda ex, why: skipped.append(ex.request.method))
        try:
            return [t async for t in replay(chosen, senders, policy)]
        finally:
            await asyncio.gather(*(s.close() for s in senders.values()))
    return sorted(asyncio.run(go()), key=lambda t: int(t.exchange.id.rsplit(".", 1)[1]))


@pytest.mark.parametrize(("method", "target", "key"), [
    ("RCPT", "TO:<Bob@Example.COM> NOTIFY=NEVER", "RCPT TO:<{local}@example.com>"),
    ("rcpt", "to:<postmaster>", "RCPT TO:<postmaster>"),
    ("MAIL", "FROM:<> SIZE=10", "MAIL FROM:<>"),
    ("MAIL", "FROM:<@relay.test:a@b.test>", "MAIL FROM:<{local}@b.test>"),
    ("RCPT", "TO:<a@[192.0.2.1]>", "RCPT TO:<{local}@[{ip}]>"),
    ("MAIL", "FROM: garbage", "MAIL {unparsed}"),
    ("EHLO", "client.test", "EHLO {host}"),
    ("VRFY", "bob", "VRFY {name}"),
    ("EXPN", "list@example.com", "EXPN {address}"),
    ("HELP", "rcpt", "HELP RCPT"),
    ("DATA", "", "DATA"),
    ("CONNECT", "", "CONNECT"),
    ("X\x00Y", "z", "{unknown} {arg}"),
])
def test_endpoint_templates(method: str, target: str, key: str) -> None:
    assert endpoint_for(method, target) == key


def test_script_round_trips_through_a_request_and_the_capture_format(tmp_path: Path) -> None:
    script = Script("smtp-7", tuple(SESSION), (1, 1, 3, 1, 1, 1, 1), (MESSAGE,), 4)
    request = step_request(script)
    assert (request.method, request.target) == ("RCPT", "TO:<bob@example.com>")
    assert PROTOCOL.endpoint_key(request) == "RCPT TO:<{local}@example.com>"
    assert script_of(request) == script
    write_capture(tmp_path / "c.jsonl", [Exchange("smtp-7.4", request)])
    assert script_of(next(read_capture(tmp_path / "c.jsonl")).request) == script


@pytest.mark.parametrize("headers", [
    ((":step", "9"), ("NOOP", "NOOP")),
    ((":pipeline", "2"), ("NOOP", "NOOP")),
    ((":step", "1"), ("NOOP", "NOOP\r\nDATA")),
])
def test_damaged_scripts_are_refused(headers: tuple[tuple[str, str], ...]) -> None:
    request = step_request(Script("s", ("NOOP",), (1,), (), 1))
    with pytest.raises(ValueError):
        script_of(type(request)("smtp", "NOOP", "", headers, b""))


def test_split_messages_cuts_at_the_dot_line_only() -> None:
    assert split_messages(MESSAGE + b".\r\n") == (MESSAGE, b".\r\n")
    assert split_messages(b"no end") == (b"no end\r\n.\r\n",)


def test_lift_masks_volatile_text_and_compares_capabilities_as_a_set() -> None:
    old = lift_reply("EHLO", b"250-mx1.old.test Hello c [127.0.0.1]\r\n250-AUTH PLAIN LOGIN\r\n"
                     b"250 SIZE 1000\r\n", 250)
    new = lift_reply("EHLO", b"250-mx2.new.test Hello c [10.0.0.9]\r\n250-SIZE 1000\r\n"
                     b"250 AUTH LOGIN PLAIN\r\n", 250)
    assert old == new == {"status": 250, "header": {"auth": "LOGIN PLAIN", "size": "1000"},
                          "body": {"text": "<host> Hello c <ip>"}}
    queued = lift_reply("DATA", b"354 go\r\n250 2.0.0 Ok: queued as 4FJ3kL1abcz\r\n", 250)
    assert queued["body"] == {"enhanced": "2.0.0", "text": "Ok: queued as <queue-id>",
                              "intermediate": [354]}
    exim = lift_reply("CONNECT", b"220 mx.test ESMTP Exim 4.96 Wed, 25 Nov 2026 17:58:30 +0000\r\n", 220)
    assert exim["body"]["text"] == "<host> ESMTP Exim 4.96 <date>"
    assert lift_reply("NOOP", b"", 0)["status"] == 0


def test_registered_by_scheme() -> None:
    assert get_protocol("smtp") is PROTOCOL
    assert protocol_for_url("smtp://127.0.0.1:2525") is PROTOCOL


def test_replay_shows_real_differences_and_delivers_nothing_by_default() -> None:
    old_mta, new_mta = MailHandler(), MailHandler(unknown=frozenset({"bob"}), pipelining=True)
    exchanges = scripted_session("smtp-1", SESSION)
    with serve_smtp(old_mta, "mx.old.test") as old, \
            serve_smtp(new_mta, "mx.new.test", size=10_000_000) as new:
        trials = _replay(exchanges, {"old": old, "new": new}, _options())
    assert "DATA" not in {t.exchange.request.method for t in trials}  # skipped: safe mode
    verdicts = {PROTOCOL.endpoint_key(t.exchange.request) + f"#{t.exchange.id}":
                judge(t, PROTOCOL, Config()) for t in trials}
    shown = {(v.endpoint, d.location, d.kind) for v in verdicts.values() for d in v.divergences}
    assert shown == {
        ("EHLO {host}", "header.size", "header_changed"),
        ("EHLO {host}", "header.pipelining", "header_added"),
        ("RCPT TO:<{local}@example.com>", "status", "status_changed"),
        ("RCPT TO:<{local}@example.com>", "body.enhanced", "value_changed"),
        ("RCPT TO:<{local}@example.com>", "body.text", "value_changed"),
    }
    states = {k: v.state for k, v in verdicts.items()}
    assert states["CONNECT#smtp-1.0"] == states["RCPT TO:<{local}@example.com>#smtp-1.3"] == "identical"
    assert states["RCPT TO:<{local}@elsewhere.org>#smtp-1.5"] == "identical"
    assert old_mta.delivered == new_mta.delivered == []


def test_smtp_deliver_sends_the_message_to_sinks() -> None:
    sink = MailHandler()
    exchanges = scripted_session("smtp-2", ["EHLO c.test", "MAIL FROM:<a@s.test>",
                                            "RCPT TO:<carol@example.com>", "DATA", "QUIT"],
                                 messages=[MESSAGE])
    with serve_smtp(sink, "sink.test") as url:
        trials = _replay(exchanges, {"old": url}, _options(smtp_deliver=True))
    data = trials[4].outcomes["old"]
    assert isinstance(data, Response) and data.status == 250
    assert PROTOCOL.lift(data)["body"]["intermediate"] == [354]
    assert sink.delivered == [b"Subject: hi\r\n\r\n.dot-stuffed line\r\n"]


def test_pipelined_groups_get_their_own_replies() -> None:
    commands = ["EHLO c.test", "MAIL FROM:<a@s.test>", "RCPT TO:<bob@example.com>",
                "RCPT TO:<carol@example.com>", "DATA", "QUIT"]
    exchanges = scripted_session("smtp-3", commands, groups=[1, 4, 1])
    assert all(ex.request.header(":pipeline") == "1 4 1" for ex in exchanges)
    for handler in (MailHandler(unknown=frozenset({"bob"}), pipelining=True),
                    MailHandler(unknown=frozenset({"bob"}))):  # no PIPELINING: one by one
        with serve_smtp(handler, "p.test") as url:
            trials = _replay(exchanges, {"old": url}, _options())
        codes = [getattr(t.outcomes["old"], "status", None) for t in trials]
        assert codes == [220, 250, 250, 550, 250, 221]
        assert handler.delivered == []


@pytest.mark.parametrize(("behaviour", "kind"), [
    ("silent", "timeout"), ("huge", "too_large"), ("garbage", "invalid"), ("drop", "reset"),
])
def test_faults_become_failures_and_the_run_goes_on(behaviour: str, kind: str) -> None:
    exchanges = scripted_session("smtp-4", ["EHLO c.test", "NOOP", "QUIT"])
    with raw_smtp(behaviour) as bad, serve_smtp(MailHandler(), "ok.test") as good:
        trials = _replay(exchanges, {"old": good, "new": bad}, _options(timeout_s=0.5))
    assert len(trials) == 4
    new = [t.outcomes["new"] for t in trials]
    first_failure = next(o for o in new if isinstance(o, Failure))
    assert first_failure.kind == kind
    assert all(isinstance(t.outcomes["old"], Response) for t in trials)
    verdict = judge(trials[-1], PROTOCOL, Config())
    assert verdict.divergences[0].kind == "failure"


def test_refused_target_fails_every_step() -> None:
    from servers import refused_url
    url = refused_url().replace("http://", "smtp://")
    trials = _replay(scripted_session("smtp-5", ["EHLO c.test"]), {"old": url}, _options())
    assert [o.kind for t in trials for o in t.outcomes.values()] == ["refused", "refused"]


def test_pipeline_run_ranks_smtp_divergences_unchanged(tmp_path: Path) -> None:
    capture = tmp_path / "mail.jsonl"
    write_capture(capture, scripted_session("smtp-6", SESSION) + scripted_session(
        "smtp-7", ["HELO c.test", "MAIL FROM:<>", "RCPT TO:<bob@example.com>", "QUIT"]))
    with serve_smtp(MailHandler(), "mx.old.test") as old, \
            serve_smtp(MailHandler(unknown=frozenset({"bob"})), "mx.new.test") as new:
        config = Config(targets=Targets(old=old, new=new),
                        replay=ReplayConfig(methods=tuple(sorted(SAFE_COMMANDS)), timeout_s=2))
        result = run((str(capture),), config, tmp_path / "run")
    keys = [s["key"] for s in result.summary["signatures"]]
    assert "RCPT TO:<{local}@example.com> status status_changed" in keys[:3]
    assert not [k for k in keys if k.startswith(("CONNECT", "MAIL", "HELO", "QUIT"))]
    assert result.exit_code == 1
    assert (tmp_path / "run" / "report.html").exists()


REWRITTEN = ["EHLO c.test", "MAIL FROM:<alice@Customer.test> SIZE=99",
             "RCPT TO:<bob@customer.test>", "RCPT TO:<carol@notcustomer.test>", "DATA", "QUIT"]


def test_rewrite_domains_reaches_the_servers_rewritten_and_keeps_the_endpoints() -> None:
    config = config_from_dict({"smtp": {"rewrite_domains": {"customer.test": "example.com"}}})
    message = b"From: alice@customer.test\r\nTo: bob@customer.test\r\n\r\nhi\r\n.\r\n"
    exchanges = scripted_session("smtp-8", REWRITTEN, messages=[message])
    sink, safe = MailHandler(), MailHandler()
    with serve_smtp(sink, "sink.test") as url, serve_smtp(safe, "safe.test") as safe_url:
        delivered = _replay(exchanges, {"old": url},
                            _options(smtp_deliver=True, smtp=config.replay.smtp))
        _replay(exchanges, {"old": safe_url}, _options(smtp=config.replay.smtp))
    seen = [("alice@example.com", "bob@example.com", False),
            ("alice@example.com", "carol@notcustomer.test", False)]
    assert sink.envelopes == safe.envelopes == seen
    assert [getattr(t.outcomes["old"], "status", None) for t in delivered] == [
        220, 250, 250, 250, 554, 250, 221]
    assert sink.delivered == [b"From: alice@example.com\r\nTo: bob@example.com\r\n\r\nhi\r\n"]
    assert safe.delivered == []  # the message is rewritten only when it is sent at all
    assert PROTOCOL.endpoint_key(delivered[3].exchange.request) == "RCPT TO:<{local}@customer.test>"


def test_rewrite_rules_are_checked() -> None:
    from shadowdiff.errors import ConfigError
    with pytest.raises(ConfigError, match="smtp.rewrite_domains.a@b"):
        config_from_dict({"smtp": {"rewrite_domains": {"a@b": "example.com"}}})
    with pytest.raises(ConfigError, match="smtp.starttls"):
        config_from_dict({"smtp": {"starttls": "yes"}})
    with pytest.raises(ConfigError, match="smtp.rewrite"):
        config_from_dict({"smtp": {"rewrite": {}}})


TLS_SESSION = ["EHLO c.test", "MAIL FROM:<a@s.test>", "RCPT TO:<carol@example.com>", "QUIT"]


def test_starttls_upgrades_after_ehlo_when_the_target_offers_it(tmp_path: Path) -> None:
    tls = self_signed_context(tmp_path)
    secure, plain = MailHandler(), MailHandler()
    options = _options(smtp=SmtpConfig(starttls=True, tls_verify=False))
    with serve_smtp(secure, "tls.test", tls=tls) as url, serve_smtp(plain, "plain.test") as plain_url:
        trials = _replay(scripted_session("smtp-9", TLS_SESSION), {"old": url, "new": plain_url},
                         options)
    assert secure.envelopes == [("a@s.test", "carol@example.com", True)]
    assert plain.envelopes == [("a@s.test", "carol@example.com", False)]  # not offered: plain
    assert [t.outcomes["old"].status for t in trials] == [220, 250, 250, 250, 221]
    ehlo = judge(trials[1], PROTOCOL, Config())  # the plaintext EHLO reply: the offer shows
    assert ("header.starttls", "header_missing") in {(d.location, d.kind) for d in ehlo.divergences}


def test_starttls_with_an_unverifiable_certificate_fails_the_next_step(tmp_path: Path) -> None:
    handler = MailHandler()
    with serve_smtp(handler, "tls.test", tls=self_signed_context(tmp_path)) as url:
        trials = _replay(scripted_session("smtp-10", TLS_SESSION), {"old": url},
                         _options(smtp=SmtpConfig(starttls=True)))
    outcomes = [t.outcomes["old"] for t in trials]
    assert [o.status for o in outcomes[:2]] == [220, 250]
    assert isinstance(outcomes[2], Failure) and "TLS handshake failed" in outcomes[2].detail
    assert handler.envelopes == []


def test_captured_starttls_sessions_still_stop_at_starttls(tmp_path: Path) -> None:
    handler = MailHandler()
    commands = ["EHLO c.test", "STARTTLS"]
    with serve_smtp(handler, "tls.test", tls=self_signed_context(tmp_path)) as url:
        trials = _replay(scripted_session("smtp-11", commands), {"old": url},
                         _options(smtp=SmtpConfig(starttls=True, tls_verify=False)))
    assert [t.outcomes["old"].status for t in trials] == [220, 250, 220]
