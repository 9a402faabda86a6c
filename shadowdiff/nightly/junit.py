"""JUnit XML: a run's result in the format every CI system already displays.

A report-stage renderer beside report/markdown.py: it turns the summary into text and
never touches the disk. Mapping, chosen so CI test history tracks endpoints across runs:

- one `<testcase>` per replayed endpoint (classname `shadowdiff.endpoint`, name the
  endpoint template); one `<failure>` per open divergence signature on it (type = the
  kind), and one per latency regression;
- accepted signatures are not failures, but are listed in the testcase's `<system-out>`;
- endpoints production uses but the capture never replayed are `<skipped>` testcases:
  untested is not identical;
- an endpoint where no request got a usable answer from both sides carries an `<error>`
  (type `not_verified`): nothing compared is not a pass;
- input errors met mid-run are `<error>`s on a `shadowdiff.run` / `input` testcase.

The output validates against the Jenkins xUnit junit-10.xsd (tests/data/junit-10.xsd).

>>> xml = render_junit(summary)           # doctest: +SKIP
>>> Path(run_dir, "junit.xml").write_text(xml, encoding="utf-8")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

CLASSNAME = "shadowdiff.endpoint"
MAX_TEXT = 4000  # characters of example values per failure: enough to see, not a dump

# Characters XML 1.0 cannot carry at all, escaped or not (controls, lone surrogates,
# U+FFFE/FFFF). ElementTree would write them as they are and produce a broken file.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_junit(summary: Mapping[str, Any], *, accepted: Mapping[str, Any] | None = None,
                 latency_findings: Sequence[Any] = ()) -> str:
    """The JUnit XML text for a summary (UTF-8 declared; write it with encoding="utf-8").

    `accepted` maps signature key -> acceptance (anything with `reason` and `until`);
    `latency_findings` are latency.Finding values to report as failures.
    """
    accepted = accepted or {}
    run = summary.get("run", {})
    suite = ET.Element("testsuite", {"name": "shadowdiff", "id": _clean(str(run.get("id", ""))),
                                     "timestamp": _timestamp(run.get("started_at")),
                                     "time": _seconds(run.get("duration_s", 0))})
    _properties(suite, summary)
    cases = [*_endpoint_cases(summary, accepted, latency_findings),
             *_uncovered_cases(summary), *_error_cases(summary)]
    suite.extend(cases)
    _text_child(suite, "system-out", str(summary.get("verdict", "")))
    _set_counts(suite, cases)
    root = ET.Element("testsuites", {"name": "shadowdiff"})
    for attr in ("tests", "failures", "errors", "time"):
        root.set(attr, suite.get(attr, "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _properties(suite: ET.Element, summary: Mapping[str, Any]) -> None:
    run, cov = summary.get("run", {}), summary.get("coverage", {})
    targets = run.get("targets", {})
    values = {
        "run_id": run.get("id"), "old": targets.get("old"), "new": targets.get("new"),
        "old_replica": targets.get("old_replica"),
        "captures": ", ".join(run.get("captures", [])),
        "usage_source": summary.get("usage", {}).get("source"),
        "verified_share": cov.get("verified_share"), "diverging_share": cov.get("diverging_share"),
        "untested_share": cov.get("untested_share"), "verdict": summary.get("verdict"),
    }
    props = ET.SubElement(suite, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(props, "property", {"name": name, "value": _clean(str(value))})


def _endpoint_cases(summary: Mapping[str, Any], accepted: Mapping[str, Any],
                    latency_findings: Sequence[Any]) -> list[ET.Element]:
    by_endpoint: dict[str, list[Mapping[str, Any]]] = {
        e["endpoint"]: [] for e in summary.get("endpoints", [])}
    for sig in summary.get("signatures", []):
        by_endpoint.setdefault(sig["endpoint"], []).append(sig)
    slow: dict[str, list[Any]] = {}
    for finding in latency_findings:
        slow.setdefault(finding.endpoint, []).append(finding)
        by_endpoint.setdefault(finding.endpoint, [])
    unverified = _unverified(summary)
    out = []
    for ep, sigs in by_endpoint.items():
        case = _endpoint_case(ep, sigs, slow.get(ep, []), accepted)
        if ep in unverified:
            _text_child(case, "error", unverified[ep], {
                "type": "not_verified", "message": "no replayed request got a usable answer "
                                                   "from both old and new"})
        out.append(case)
    return out


def _unverified(summary: Mapping[str, Any]) -> dict[str, str]:
    """Endpoints where nothing could be compared: a silent pass would be a lie."""
    failures: dict[str, list[str]] = {}
    for f in summary.get("failures", []):
        failures.setdefault(f["endpoint"], []).append(
            f"{f['role']}: {f['count']} x {f['kind']} ({f.get('detail', '')})")
    return {e["endpoint"]: "\n".join(failures.get(e["endpoint"], [])) or "every request failed"
            for e in summary.get("endpoints", [])
            if e.get("replayed") and not e.get("identical") and not e.get("diverged")}


def _endpoint_case(endpoint: str, signatures: Sequence[Mapping[str, Any]],
                   findings: Sequence[Any], accepted: Mapping[str, Any]) -> ET.Element:
    case = _case(CLASSNAME, endpoint)
    notes = []
    for sig in signatures:
        if sig["key"] in accepted:
            notes.append(_accepted_note(sig["key"], accepted[sig["key"]]))
            continue
        _text_child(case, "failure", _signature_text(sig), {
            "type": sig["kind"],
            "message": f"{sig['location']} {sig['kind']}: {sig['affected']} of "
                       f"{sig['replayed']} requests ({float(sig['rate']):.1%}), "
                       f"impact {float(sig['impact']):.2%} of production traffic"})
    for finding in findings:
        if finding.key in accepted:
            notes.append(_accepted_note(finding.key, accepted[finding.key]))
            continue
        _text_child(case, "failure", finding.describe(),
                    {"type": "latency_regression", "message": finding.describe()})
    if notes:
        _text_child(case, "system-out", "\n".join(notes))
    return case


def _signature_text(sig: Mapping[str, Any]) -> str:
    example = sig.get("example") or {}
    lines = [f"signature: {sig['key']}",
             f"example exchange: {example.get('exchange_id', '-')} at "
             f"{example.get('location', sig['location'])}",
             f"old: {_json(example.get('old'))}", f"new: {_json(example.get('new'))}"]
    return "\n".join(lines)


def _accepted_note(key: str, acceptance: Any) -> str:
    reason = getattr(acceptance, "reason", "")
    until = getattr(acceptance, "until", None)
    return f"accepted: {key}: {reason}" + (f" (until {until})" if until else "")


def _uncovered_cases(summary: Mapping[str, Any]) -> list[ET.Element]:
    cases = []
    for entry in summary.get("uncovered", []):
        case = _case(CLASSNAME, entry["endpoint"])
        _text_child(case, "skipped", "", {
            "message": f"never replayed: {float(entry['usage_share']):.2%} of production "
                       f"traffic ({entry['requests']} requests) untested"})
        cases.append(case)
    return cases


def _error_cases(summary: Mapping[str, Any]) -> list[ET.Element]:
    errors = summary.get("run", {}).get("errors") or []
    if not errors:
        return []
    case = _case("shadowdiff.run", "input")
    for error in errors:
        _text_child(case, "error", str(error), {"type": "input_error", "message": str(error)})
    return [case]


def _case(classname: str, name: str) -> ET.Element:
    return ET.Element("testcase", {"classname": classname, "name": _clean(name), "time": "0"})


def _text_child(parent: ET.Element, tag: str, text: str,
                attrs: Mapping[str, str] | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag, {k: _clean(v) for k, v in (attrs or {}).items()})
    if text:
        child.text = _clean(text)
    return child


def _set_counts(suite: ET.Element, cases: Sequence[ET.Element]) -> None:
    """JUnit counts test cases, not failure elements."""
    def having(tag: str) -> int:
        return sum(1 for c in cases if c.find(tag) is not None)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(having("failure")))
    suite.set("errors", str(having("error")))
    suite.set("skipped", str(having("skipped")))


def _clean(text: str) -> str:
    """Text XML 1.0 can hold: characters it cannot are written as \\uXXXX escapes."""
    text = _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more]"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _timestamp(value: Any) -> str:
    """Ant's form: UTC, no offset (Jenkins reads it as local time otherwise)."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        parsed = dt.datetime.now(dt.timezone.utc)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds")


def _seconds(value: Any) -> str:
    # junit-10.xsd's SUREFIRE_TIME: digits, at most three decimals, no sign or exponent
    return f"{max(float(value or 0), 0.0):.3f}"
