"""shadowdiff.nightly.junit: JUnit XML that CI systems read, valid against junit-10.xsd."""

from __future__ import annotations

from testpaths import TESTS
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowdiff.nightly.history import Acceptance
from shadowdiff.nightly.junit import CLASSNAME, render_junit
from shadowdiff.nightly.latency import Finding

HERE = TESTS
GOLDEN = HERE / "golden" / "summary.json"
XSD = HERE / "data" / "junit-10.xsd"
TOP = "GET /users/{id} body.email field_missing"


@pytest.fixture(scope="module")
def schema() -> Any:
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (dev dependency) validates "
                                    "against junit-10.xsd")
    return xmlschema.XMLSchema(str(XSD))


def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml.encode("utf-8"))
    return {c.get("name", ""): c for c in root.iter("testcase")}


def test_the_golden_summary_validates(schema: Any) -> None:
    xml = render_junit(golden())
    schema.validate(xml)  # raises with the first violation


def test_one_testcase_per_endpoint_and_a_failure_per_signature() -> None:
    xml = render_junit(golden())
    found = cases(xml)
    users = found["GET /users/{id}"]
    assert users.get("classname") == CLASSNAME
    failures = users.findall("failure")
    assert [f.get("type") for f in failures] == ["field_missing"]
    assert failures[0].get("message") == ("body.email field_missing: 120 of 130 requests "
                                          "(92.3%), impact 38.77% of production traffic")
    assert 'old: "ann@example.com"' in (failures[0].text or "")
    assert [f.get("type") for f in found["GET /health"].findall("failure")] == ["status_changed"]
    assert found["GET /orders/{id}"].find("failure") is not None  # only in signatures[]


def test_uncovered_endpoints_are_skipped_and_input_errors_are_errors() -> None:
    found = cases(render_junit(golden()))
    skipped = found["GET /admin|stats"].find("skipped")
    assert skipped is not None and "4.00% of production traffic" in skipped.get("message", "")
    error = found["input"].find("error")
    assert error is not None and error.get("message") == "captures/demo.jsonl:77: not valid JSON"


def test_counts_are_of_testcases() -> None:
    root = ET.fromstring(render_junit(golden()))
    suite = root.find("testsuite")
    assert suite is not None
    # endpoints: users, health (replayed) + orders, search (signatures) + 2 uncovered + input
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7", "failures": "4", "errors": "1", "skipped": "2"}
    assert (root.get("tests"), root.get("failures")) == ("7", "4")
    assert suite.get("timestamp") == "2024-05-01T02:00:00"
    assert suite.get("time") == "12.250"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["new"] == "http://127.0.0.1:8002"
    assert props["verdict"] == "4 significant divergences"


def test_accepted_signatures_are_listed_not_failed(schema: Any) -> None:
    acceptance = Acceptance(TOP, "renamed to contact.email", None, "2024-05-01T00:00:00+00:00")
    xml = render_junit(golden(), accepted={TOP: acceptance})
    users = cases(xml)["GET /users/{id}"]
    assert users.find("failure") is None
    out = users.find("system-out")
    assert out is not None and out.text == f"accepted: {TOP}: renamed to contact.email"
    schema.validate(xml)


def test_latency_regressions_are_failures(schema: Any) -> None:
    finding = Finding("GET /health", "p95", 2.0, 900.0, 450.0, 120.0, 800.0, 0.95, 300, 300)
    xml = render_junit(golden(), latency_findings=[finding])
    types = [f.get("type") for f in cases(xml)["GET /health"].findall("failure")]
    assert types == ["status_changed", "latency_regression"]
    schema.validate(xml)


def test_hostile_text_is_escaped(schema: Any) -> None:
    summary = golden()
    sig = summary["signatures"][2]
    hostile = 'a<b>&"c\' ]]> \x00\x1b\x7f \ud800 \ufffe end\r\n<script>alert(1)</script>'
    sig["endpoint"] = sig["key"] = "GET /x<&>\"'"
    sig["location"] = 'body["<&>"]'
    sig["example"]["new"] = hostile
    summary["verdict"] = hostile
    summary["run"]["errors"] = [hostile]
    xml = render_junit(summary)
    schema.validate(xml)
    found = cases(xml)
    failure = found["GET /x<&>\"'"].find("failure")
    assert failure is not None and "<script>alert(1)</script>" in (failure.text or "")
    assert "\\u0000\\u001b" in (failure.text or "") and "\\ud800" in (failure.text or "")
    assert "<script>" not in xml  # escaped, never markup
    xml.encode("utf-8")  # no lone surrogate survives


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_text_yields_well_formed_xml(endpoint: str, value: str) -> None:
    summary = golden()
    summary["signatures"] = [dict(summary["signatures"][0], endpoint=endpoint,
                                  key=f"{endpoint} body value_changed",
                                  example={"exchange_id": value, "old": value, "new": None})]
    summary["uncovered"] = [{"endpoint": value, "requests": 1, "usage_share": 0.1}]
    root = ET.fromstring(render_junit(summary).encode("utf-8"))
    assert len(list(root.iter("testcase"))) >= 2


def test_an_endpoint_with_nothing_compared_is_an_error(schema: Any) -> None:
    summary = golden()
    health = summary["endpoints"][1]
    health.update(identical=0, diverged=0, failed=30)
    xml = render_junit(summary)
    error = cases(xml)["GET /health"].find("error")
    assert error is not None and error.get("type") == "not_verified"
    assert error.text == "new: 5 x timeout (no response in 10 s)"
    assert cases(xml)["GET /users/{id}"].find("error") is None
    schema.validate(xml)


def test_an_empty_run_is_still_valid(schema: Any) -> None:
    summary = golden()
    for key in ("endpoints", "signatures", "uncovered", "failures"):
        summary[key] = []
    summary["run"]["errors"] = []
    xml = render_junit(summary)
    schema.validate(xml)
    assert ET.fromstring(xml).get("tests") == "0"
