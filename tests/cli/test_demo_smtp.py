"""`shadowdiff demo --smtp` end to end: two aiosmtpd MTAs that differ on purpose, the bundled
mail capture, ranked by the bundled Postfix maillog; every deliberate divergence is listed,
nothing else is, and nothing was delivered (safe by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from shadowdiff.cli.main import main
from shadowdiff.demo.mail import EXPECTED_SMTP_DIVERGENCES, mail_servers
from shadowdiff.cli.demo import replay_smtp_demo
from shadowdiff.report.json import validate_summary


@pytest.fixture(scope="module")
def smtp_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict[str, Any], Any]:
    out = tmp_path_factory.mktemp("demo") / "demo-smtp"
    with mail_servers() as (old, new, policies):
        code = replay_smtp_demo(out, old, new, quiet=True)
    return code, out, orjson.loads((out / "summary.json").read_bytes()), policies


def test_exits_0_and_writes_the_reports(smtp_demo: Any) -> None:
    code, out, summary, _ = smtp_demo
    assert code == 0
    assert validate_summary(summary) == []
    assert summary["exit_code"] == 1 and summary["totals"]["replayed"] > 300
    markdown = (out / "report.md").read_text()
    assert "Production usage from mail logs" in markdown
    assert "Production usage from mail logs" in (out / "report.html").read_text()


def test_every_deliberate_divergence_and_nothing_else(smtp_demo: Any) -> None:
    _, _, summary, _ = smtp_demo
    found = {(s["endpoint"], s["location"], s["kind"]) for s in summary["signatures"]}
    expected = {(s.endpoint, s.location, s.kind) for s in EXPECTED_SMTP_DIVERGENCES}
    assert expected <= found
    # The rest are the same changes seen in the reply's other fields, on the same endpoints.
    assert {e for e, _, _ in found} == {s.endpoint for s in EXPECTED_SMTP_DIVERGENCES}
    assert summary["noise"]["suppressed"] == []


def test_nothing_was_delivered(smtp_demo: Any) -> None:
    _, _, summary, policies = smtp_demo
    assert policies["old"].delivered == [] and policies["new"].delivered == []
    assert summary["totals"]["skipped_by_reason"] == {"method DATA": 60}


def test_ranked_by_the_maillog(smtp_demo: Any) -> None:
    _, _, summary, _ = smtp_demo
    usage = summary["usage"]
    assert usage["source"] == "mail_log" and usage["files"][0].endswith("demo-maillog.log")
    by_key = {(s["endpoint"], s["location"]): s for s in summary["signatures"]}
    partner = by_key[("RCPT TO:<{local}@partner.test>", "status")]
    vrfy = by_key[("VRFY {name}", "status")]
    assert partner["usage_share"] > vrfy["usage_share"] > 0
    assert partner["rate"] == vrfy["rate"] == 1.0


def test_cli_flag(tmp_path: Path) -> None:
    out = tmp_path / "demo-smtp"
    result = CliRunner().invoke(main, ["demo", "--smtp", "--out", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert orjson.loads((out / "summary.json").read_bytes())["usage"]["source"] == "mail_log"
