"""SMTP sessions synthesized from mail logs (capture/maillog.py), on the committed samples
tests/data/postfix-maillog.log and tests/data/exim-mainlog.log, replayed to loopback MTAs."""

from __future__ import annotations

from testpaths import DATA
import gzip
from collections import defaultdict
from pathlib import Path

from click.testing import CliRunner
from smtp_servers import MailHandler, serve_smtp

from shadowdiff.capture import detect_format
from shadowdiff.capture.jsonl import read_capture, read_header
from shadowdiff.capture.maillog import read_maillog
from shadowdiff.cli.main import main
from shadowdiff.config import Config
from shadowdiff.replay.options import ReplayConfig, Targets
from shadowdiff.model import Exchange
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.protocols.smtp.plugin import PROTOCOL
from shadowdiff.protocols.smtp.session import SAFE_COMMANDS
from shadowdiff.protocols.smtp.session import script_of
from shadowdiff.protocols.smtp.maillog import read_mail_usage

DATA = DATA
POSTFIX, EXIM = DATA / "postfix-maillog.log", DATA / "exim-mainlog.log"


def _sessions(exchanges: list[Exchange]) -> dict[str, list[str]]:
    """session id -> its command lines (every step carries them all)."""
    out: dict[str, list[str]] = {}
    for ex in exchanges:
        out.setdefault(script_of(ex.request).session, list(script_of(ex.request).commands))
    return out


def test_capture_maillog_command_writes_postfix_sessions(tmp_path: Path) -> None:
    out = tmp_path / "mail.jsonl"
    result = CliRunner().invoke(main, ["capture", "maillog", str(POSTFIX), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    exchanges = list(read_capture(out))
    assert _sessions(exchanges) == {
        "postfix-maillog.log:2": [
            "EHLO synthesized.invalid", "MAIL FROM:<alice@sender.test> SIZE=2048",
            "RCPT TO:<nobody@example.com>", "RCPT TO:<sales@example.com>",
            "RCPT TO:<bob@example.com>", "DATA", "QUIT"],
        "postfix-maillog.log:12": ["EHLO spam.test", "MAIL FROM:<x@spam.test>",
                                   "RCPT TO:<eve@elsewhere.org>", "QUIT"],
        "postfix-maillog.log:20": ["EHLO synthesized.invalid", "MAIL FROM:<> SIZE=4096",
                                   "RCPT TO:<dan@partner.test>", "DATA", "QUIT"],
    }
    assert all(ex.recorded is None and ex.marks[:2] == ("synthesized", "maillog:postfix")
               for ex in exchanges)
    marks = {ex.id: ex.marks[2:] for ex in exchanges if ex.request.method == "RCPT"}
    assert marks["postfix-maillog.log:2.3"] == ("logged:rejected",)
    assert marks["postfix-maillog.log:20.3"] == ("logged:deferred",)
    data = next(ex for ex in exchanges if ex.id == "postfix-maillog.log:2.6")
    assert data.request.method == "DATA" and b"logged size 2048" in data.request.body
    stats = read_header(out)["stats"]
    assert (stats["smtp_sessions"], stats["smtp_steps"], stats["maillog_not_smtp"]) == (3, 19, 1)


def test_exim_mainlog_gzipped_is_recognised_and_read(tmp_path: Path) -> None:
    log = tmp_path / "mainlog.1.gz"
    log.write_bytes(gzip.compress(EXIM.read_bytes()))
    assert detect_format(log) == detect_format(POSTFIX) == "maillog"
    stats: dict[str, int] = {}
    exchanges = list(read_maillog(log, stats))
    assert _sessions(exchanges) == {
        "mainlog.1.gz:2": ["EHLO helo.sender.test", "MAIL FROM:<alice@sender.test> SIZE=2048",
                           "RCPT TO:<sales@example.com>", "RCPT TO:<bob@example.com>",
                           "DATA", "QUIT"],
        "mainlog.1.gz:6": ["EHLO spam.test", "MAIL FROM:<x@spam.test>",
                           "RCPT TO:<eve@elsewhere.org>", "QUIT"],
        "mainlog.1.gz:7": ["EHLO mail.bad.test", "MAIL FROM:<liar@forged.test>", "QUIT"],
        "mainlog.1.gz:11": ["EHLO mail.partner.test", "MAIL FROM:<> SIZE=4096",
                            "RCPT TO:<nobody@example.com>", "RCPT TO:<dan@partner.test>",
                            "DATA", "QUIT"],
    }
    assert stats["maillog_rejected"] == 2 and stats["maillog_not_smtp"] == 1  # the local one
    assert exchanges[0].seen_at == 1795629510.0  # 2026-11-25 17:58:30 UTC
    assert {ex.marks[1] for ex in exchanges} == {"maillog:exim"}


def test_synthesized_endpoints_join_the_usage_of_the_same_log() -> None:
    for log in (POSTFIX, EXIM):
        keys = {PROTOCOL.endpoint_key(ex.request) for ex in read_maillog(log)}
        usage = read_mail_usage([log])
        rcpts = {k for k in keys if k.startswith("RCPT")}
        assert rcpts and rcpts <= set(usage.outcomes), (log.name, rcpts - set(usage.outcomes))
        assert "MAIL FROM:<{local}@sender.test>" in keys & set(usage.counts)


def test_run_replays_a_mail_log_to_loopback_mtas_and_delivers_nothing(tmp_path: Path) -> None:
    old_mta, new_mta = MailHandler(), MailHandler(unknown=frozenset({"bob"}))
    with serve_smtp(old_mta, "mx.old.test") as old, serve_smtp(new_mta, "mx.new.test") as new:
        config = Config(targets=Targets(old=old, new=new),
                        replay=ReplayConfig(methods=tuple(sorted(SAFE_COMMANDS)), timeout_s=2))
        result = run((str(EXIM),), config, tmp_path / "run")
    keys = [s["key"] for s in result.summary["signatures"]]
    assert "RCPT TO:<{local}@example.com> status status_changed" in keys
    assert not [k for k in keys if k.startswith(("CONNECT", "EHLO", "MAIL", "QUIT"))]
    seen: dict[str, set[str]] = defaultdict(set)
    for sender, rcpt, _ in old_mta.envelopes:
        seen[sender].add(rcpt)
    assert seen == {"alice@sender.test": {"sales@example.com", "bob@example.com"},
                    "x@spam.test": {"eve@elsewhere.org"},
                    "<>": {"nobody@example.com", "dan@partner.test"}}
    assert old_mta.delivered == new_mta.delivered == []  # DATA skipped: safe by default
