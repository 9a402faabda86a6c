"""shadowdiff.nightly.gates: one test per --fail-on condition, checking the exit code."""

from __future__ import annotations

from testpaths import GOLDEN
import json
from typing import Any

import pytest

from shadowdiff.errors import ConfigError
from shadowdiff.nightly.gates import Condition, evaluate, parse_conditions
from shadowdiff.nightly.history import Acceptance, SinceLast
from shadowdiff.nightly.latency import Finding

GOLDEN = GOLDEN / "summary.json"
TOP = "GET /users/{id} body.email field_missing"          # impact 0.388
ORDERS = "GET /orders/{id} body.items[*].price type_changed"  # impact 0.125
SEARCH = "GET /search body.hint value_changed"             # impact 0.028
HEALTH = "GET /health status status_changed"               # impact 0.001


@pytest.fixture
def summary() -> dict[str, Any]:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["run"]["errors"] = []  # the golden run met an input error; most tests want none
    return data


def clean(summary: dict[str, Any]) -> dict[str, Any]:
    summary["signatures"] = []
    summary["totals"]["diverged"] = 0
    return summary


def accept(*keys: str) -> dict[str, Acceptance]:
    return {k: Acceptance(k, "intended", None, "2024-05-01T00:00:00+00:00") for k in keys}


def since(new: list[str], previous: str | None = "r1") -> SinceLast:
    return SinceLast(previous, new={k: {} for k in new})


def slow(endpoint: str = "GET /health") -> Finding:
    return Finding(endpoint, "p95", 2.0, 900.0, 450.0, 120.0, 800.0, 0.95, 300, 300)


def gate(spec: str, summary: dict[str, Any], **kw: Any) -> int:
    return evaluate(parse_conditions([spec]), summary, **kw).exit_code


# --- parsing ----------------------------------------------------------------------------

def test_parse_every_condition() -> None:
    conds = parse_conditions(["any", "NEW", "impact > 0.5%", "impact>=0.005",
                              "new-failure-rate", "new-failure-rate>2%", "latency",
                              "diverged>10"])
    assert [(c.name, c.threshold, c.inclusive) for c in conds] == [
        ("any", None, False), ("new", None, False), ("impact", 0.005, False),
        ("impact", 0.005, True), ("new-failure-rate", 0.01, False),
        ("new-failure-rate", 0.02, False), ("latency", None, False), ("diverged", 10, False)]


def test_comma_separated_and_duplicates() -> None:
    assert [c.name for c in parse_conditions(["new,latency", "new"])] == ["new", "latency"]


@pytest.mark.parametrize(("spec", "message"), [
    ("nwe", "unknown condition 'nwe'"),
    ("impact", "needs a threshold, e.g. impact>0.5%"),
    ("impact>150%", "at most 100%"),
    ("impact>5", "did you mean 5%"),
    ("new>3", "takes no threshold"),
    ("diverged>2.5", "whole number"),
    ("diverged>10%", "whole number"),
    ("impact<0.5%", "unknown condition"),
])
def test_bad_conditions_are_named(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--fail-on") as info:
        parse_conditions(["any", spec])
    assert message in str(info.value)


def test_the_config_key_is_named_for_config_conditions() -> None:
    with pytest.raises(ConfigError, match="gate.fail_on"):
        parse_conditions(["bogus"], source="gate.fail_on")


# --- one gate per condition ---------------------------------------------------------------

def test_any(summary: dict[str, Any]) -> None:
    assert gate("any", summary) == 1
    assert gate("any", clean(summary)) == 0


def test_any_fails_when_nothing_was_verified(summary: dict[str, Any]) -> None:
    clean(summary)["totals"]["replayed"] = 0
    result = evaluate(parse_conditions(["any"]), summary)
    assert result.exit_code == 1 and "nothing verified" in result.verdict_line


def test_any_passes_when_every_signature_is_accepted(summary: dict[str, Any]) -> None:
    result = evaluate(parse_conditions(["any"]), summary,
                      accepted=accept(TOP, ORDERS, SEARCH, HEALTH))
    assert result.exit_code == 0
    assert result.accepted == (TOP, ORDERS, SEARCH, HEALTH)  # still listed
    assert "4 accepted signatures not counted" in result.verdict_line


def test_new(summary: dict[str, Any]) -> None:
    assert gate("new", summary, since_last=since([])) == 0
    result = evaluate(parse_conditions(["new"]), summary, since_last=since([SEARCH]))
    assert result.exit_code == 1
    assert result.verdict_line == "FAIL: 1 new signature since run r1 (new)"
    assert result.reasons[0].detail == SEARCH
    assert gate("new", summary, since_last=since([SEARCH]), accepted=accept(SEARCH)) == 0


def test_new_without_history_counts_everything(summary: dict[str, Any]) -> None:
    assert gate("new", summary) == 1
    assert gate("new", summary, since_last=since([TOP], previous=None)) == 1
    assert gate("new", clean(summary)) == 0


def test_impact(summary: dict[str, Any]) -> None:
    assert gate("impact>0.5%", summary) == 1
    assert gate("impact>0.5", summary) == 0              # 50%: nothing that big
    assert gate("impact>0.3", summary, accepted=accept(TOP)) == 0
    result = evaluate(parse_conditions(["impact>10%"]), summary)
    assert "2 signatures above 10% of production traffic" in result.verdict_line
    assert result.reasons[0].detail == f"top: {TOP}, 38.77%"


def test_impact_inclusive(summary: dict[str, Any]) -> None:
    summary["signatures"] = [dict(summary["signatures"][0], impact=0.005)]
    assert gate("impact>0.5%", summary) == 0
    assert gate("impact>=0.5%", summary) == 1


def test_new_failure_rate(summary: dict[str, Any]) -> None:
    # golden: 260 replayed, new failed 5 (1.9%), old 0
    assert gate("new-failure-rate", summary) == 1
    assert gate("new-failure-rate>2%", summary) == 0
    summary["totals"]["failed"]["old"] = 4
    assert gate("new-failure-rate", summary) == 0


def test_latency(summary: dict[str, Any]) -> None:
    assert gate("latency", summary, latency_findings=[slow()]) == 1
    assert gate("latency", summary, latency_findings=[]) == 0
    assert gate("latency", summary, latency_findings=[slow()], accepted=accept(slow().key)) == 0
    result = evaluate(parse_conditions(["latency"]), summary, latency_findings=None)
    assert result.exit_code == 0 and "not evaluated" in result.reasons[0].message


def test_diverged(summary: dict[str, Any]) -> None:
    assert gate("diverged>159", summary) == 1             # golden: 160 diverged
    assert gate("diverged>160", summary) == 0
    assert gate("diverged>=160", summary) == 1
    # accepting the top signature (120 affected) leaves at most 40 + 7 + 3 open
    assert gate("diverged>50", summary, accepted=accept(TOP)) == 0
    assert gate("diverged>49", summary, accepted=accept(TOP)) == 1


# --- the result as a whole ------------------------------------------------------------

def test_default_is_any(summary: dict[str, Any]) -> None:
    assert evaluate([], summary).exit_code == 1
    assert evaluate([], clean(summary)).verdict_line.startswith("PASS: 0 open signatures")


def test_several_conditions_name_each_failure(summary: dict[str, Any]) -> None:
    result = evaluate(parse_conditions(["new", "impact>1%", "latency"]), summary,
                      since_last=since([]), latency_findings=[slow()])
    assert result.exit_code == 1
    assert [r.condition for r in result.failed] == ["impact>1%", "latency"]
    assert result.verdict_line == ("FAIL: 3 signatures above 1% of production traffic "
                                   "(impact>1%); 1 latency regression (latency)")
    assert result.failed[0].detail == f"top: {TOP}, 38.77%"
    assert result.failed[1].detail.startswith("worst: GET /health: p95 2.0 ms -> 900.0 ms")


def test_pass_line(summary: dict[str, Any]) -> None:
    result = evaluate(parse_conditions(["new", "impact>50%"]), summary, since_last=since([]))
    assert result.exit_code == 0
    assert result.verdict_line == "PASS: 4 open signatures, within the gates (new, impact>50%)"


def test_input_errors_exit_2(summary: dict[str, Any]) -> None:
    summary["run"]["errors"] = ["captures/demo.jsonl:77: not valid JSON"]
    result = evaluate(parse_conditions(["impact>50%"]), clean(summary))
    assert result.exit_code == 2
    assert result.verdict_line == "INPUT ERROR: captures/demo.jsonl:77: not valid JSON"


def test_an_interrupted_run_says_so(summary: dict[str, Any]) -> None:
    summary["run"]["interrupted"] = True
    assert evaluate([], summary).verdict_line.startswith("interrupted run: FAIL")


def test_condition_value_semantics() -> None:
    cond = Condition("impact", "impact>0.5%", 0.005)
    assert cond.exceeds(0.006) and not cond.exceeds(0.005)
