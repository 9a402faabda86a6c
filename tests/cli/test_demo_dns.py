"""`shadowdiff demo --dns` end to end: two dnspython name servers that differ on purpose, the
bundled query list, ranked by the bundled BIND query log; every deliberate divergence is
listed, and none of the differences the rules must absorb (record order, TTLs within the
tolerance, NSID) is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from shadowdiff.cli.main import main
from shadowdiff.demo.dns import EXPECTED_DNS_DIVERGENCES, dns_servers
from shadowdiff.cli.demo import replay_dns_demo
from shadowdiff.report.json import validate_summary


@pytest.fixture(scope="module")
def dns_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict[str, Any], Any]:
    out = tmp_path_factory.mktemp("demo") / "demo-dns"
    with dns_servers() as (old, new, servers):
        code = replay_dns_demo(out, old, new, quiet=True)
    return code, out, orjson.loads((out / "summary.json").read_bytes()), servers


def test_exits_0_and_writes_valid_reports(dns_demo: Any) -> None:
    code, out, summary, servers = dns_demo
    assert code == 0 and summary["exit_code"] == 1
    assert validate_summary(summary) == []
    assert "DNS query logs" in (out / "report.md").read_text()
    # old is asked twice (replay_old_twice measures noise), new once; transfers never
    assert servers["new"].queries == summary["totals"]["replayed"]
    assert servers["old"].queries == 2 * summary["totals"]["replayed"]
    assert summary["totals"]["skipped_by_reason"] == {"method AXFR": 3}


def test_every_deliberate_divergence_and_no_absorbed_noise(dns_demo: Any) -> None:
    _, _, summary, _ = dns_demo
    found = {(s["endpoint"], s["location"], s["kind"]) for s in summary["signatures"]}
    assert {(s.endpoint, s.location, s.kind) for s in EXPECTED_DNS_DIVERGENCES} <= found
    assert not [f for f in found if ".ttl" in f[1] or f[1].startswith("body.opt")
                or f[2] == "order_changed" or f[1].startswith("header")]
    # answers both servers give alike: NXDOMAIN, NODATA, REFUSED outside the zone
    identical = {e["endpoint"] for e in summary["endpoints"] if e["diverged"] == 0}
    assert "A other.org" in identical


def test_ranked_by_the_query_log(dns_demo: Any) -> None:
    _, _, summary, _ = dns_demo
    usage = summary["usage"]
    assert usage["source"] == "query_log" and usage["files"][0].endswith("demo-dns-querylog.log")
    by_key = {(s["endpoint"], s["location"]): s for s in summary["signatures"]}
    referral = by_key[("A {host}.example.com", 'body.authority["example.com. NS"]')]
    dmarc = by_key[("TXT _dmarc.example.com", 'body.answer["_dmarc.example.com. TXT"]')]
    assert referral["usage_share"] > dmarc["usage_share"] > 0


def test_cli_flag(tmp_path: Path) -> None:
    out = tmp_path / "demo-dns"
    result = CliRunner().invoke(main, ["demo", "--dns", "--out", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert orjson.loads((out / "summary.json").read_bytes())["usage"]["source"] == "query_log"
