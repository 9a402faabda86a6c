"""`shadowdiff demo` end to end: every deliberate divergence, ranked by the bundled access log,
and none of the volatile fields."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from shadowdiff.cli.main import main
from shadowdiff.demo.apps import (
    EXPECTED_DIVERGENCES,
    IGNORED_DIVERGENCES,
    NOISE_LOCATIONS,
    SLOW_ENDPOINTS,
    VOLATILE_LOCATIONS,
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    result = CliRunner().invoke(main, ["demo", "--out", str(out)], catch_exceptions=False)
    return result, out, orjson.loads((out / "summary.json").read_bytes())


def test_demo_exits_0_and_writes_the_three_reports(demo_run):
    result, out, _ = demo_run
    assert result.exit_code == 0, result.output
    for name in ("report.html", "report.md", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert "Top divergences, ranked by impact (access_log)" in result.output
    assert str(out / "report.html") in result.output


def test_every_deliberate_divergence_and_nothing_else(demo_run):
    _, _, summary = demo_run
    found = {(s["endpoint"], s["location"], s["kind"]) for s in summary["signatures"]}
    expected = {(s.endpoint, s.location, s.kind) for s in EXPECTED_DIVERGENCES}
    assert found == expected
    ignored = {(s.endpoint, s.location) for s in IGNORED_DIVERGENCES}
    assert not {(e, loc) for e, loc, _ in found} & ignored
    locations = {s["location"] for s in summary["signatures"]}
    assert not locations & set(VOLATILE_LOCATIONS)


def test_ranked_by_production_usage(demo_run):
    _, _, summary = demo_run
    assert summary["usage"]["source"] == "access_log" and summary["usage"]["requests"] == 20000
    scores = [s["score"] for s in summary["signatures"]]
    assert scores == sorted(scores, reverse=True)
    for s in summary["signatures"]:
        assert s["impact"] == pytest.approx(s["usage_share"] * s["rate"])
        assert s["score"] == pytest.approx(s["impact"] * s["severity"])
    # the 404 -> 500 crash is rare but severe: it outranks the equally rare error-code change
    keys = [(s["location"], s["kind"]) for s in summary["signatures"]]
    assert keys.index(("status", "status_changed")) < keys.index(("body.error", "value_changed"))
    assert summary["ranking"]["by"] == "score"
    suggestion = summary["capture_suggestion"]
    assert suggestion["target_share"] == 0.99
    assert "GET /api/categories" in {r["endpoint"] for r in suggestion["rows"]}


def test_coverage_shows_the_untested_busy_endpoints(demo_run):
    _, out, summary = demo_run
    untested = {u["endpoint"] for u in summary["uncovered"]}
    assert {"GET /api/categories", "GET /api/recommendations/{id}", "POST /api/cart"} <= untested
    assert summary["coverage"]["untested_share"] > 0.15
    assert "GET /api/categories" in (out / "report.md").read_text()


def test_the_slow_endpoint_shows_in_latency(demo_run):
    _, _, summary = demo_run
    (endpoint, delay_s), = SLOW_ENDPOINTS.items()
    row = next(e for e in summary["endpoints"] if e["endpoint"] == endpoint)
    assert row["latency_ms"]["new_p50"] - row["latency_ms"]["old_p50"] >= delay_s * 1000 * 0.8


def test_secrets_in_the_capture_never_reach_the_reports(demo_run):
    _, out, _ = demo_run
    text = b"".join((out / n).read_bytes() for n in ("report.html", "report.md", "summary.json",
                                                     "examples.json"))
    assert b"Bearer " not in text.replace(b"Bearer [redacted]", b"")


def test_the_old_replica_measures_the_noise_no_rule_covers(demo_run):
    result, out, summary = demo_run
    noise = summary["noise"]
    assert noise["measured"] and noise["source"] == "old_replica"
    assert noise["exchanges"] == summary["totals"]["replayed"]
    measured = {(e["endpoint"], e["location"]) for e in noise["suppressed"] if e["by"] == "measurement"}
    endpoints = {e["endpoint"] for e in summary["endpoints"]}
    assert measured == {(ep, loc) for ep in endpoints for loc in NOISE_LOCATIONS}
    ruled = {e["location"] for e in noise["suppressed"] if e["by"] == "rule"}
    assert {"body.generated_at", "body.meta.request_id", "header.x-request-id"} <= ruled
    assert all(e["rule"] for e in noise["suppressed"] if e["by"] == "rule")
    assert "## Suppressed as noise" in (out / "report.md").read_text()
    assert 'id="noise"' in (out / "report.html").read_text()
    assert "suppressed as noise:" in result.output
