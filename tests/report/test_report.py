"""Tests for shadowdiff/report: summary.json, report.md (golden files) and report.html.

Golden files live in tests/golden/. Regenerate them only on purpose, with
`pytest --update-golden` (or SHADOWDIFF_UPDATE_GOLDEN=1), and review the diff like code.
"""

from __future__ import annotations

from testpaths import GOLDEN, REPO
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowdiff.errors import ReportError
from shadowdiff.model import DIVERGENCE_KINDS, FAILURE_KINDS
from shadowdiff.report import (
    SCHEMA_VERSION,
    read_summary,
    render_html,
    render_json,
    render_markdown,
    validate_summary,
    write_reports,
)
from shadowdiff.report.html import _csp_hash, parse_location
from shadowdiff.report.json import SUMMARY_SPEC, _Optional
from shadowdiff.report.text import md_code, md_text

GOLDEN = GOLDEN
XSS_BODY = "<script>alert(1)</script>"
XSS_TARGET = '/search?q="><img src=x onerror=alert(1)>'


# --- fixed input ---------------------------------------------------------------------


def _signature(rank: int, endpoint: str, location: str, kind: str, affected: int, replayed: int,
               usage: float, example: dict[str, Any]) -> dict[str, Any]:
    rate = affected / replayed
    return {
        "rank": rank, "key": f"{endpoint} {location} {kind}", "endpoint": endpoint,
        "location": location, "kind": kind, "affected": affected, "replayed": replayed,
        "rate": rate, "usage_share": usage, "impact": usage * rate, "example": example,
    }


def _example(exchange_id: str, location: str, old: Any, new: Any) -> dict[str, Any]:
    return {"exchange_id": exchange_id, "location": location, "old": old, "new": new}


def _signatures() -> list[dict[str, Any]]:
    return [
        _signature(1, "GET /users/{id}", "body.email", "field_missing", 120, 130, 0.42,
                   _example("ex-0001", "body.email", "ann@example.com", None)),
        _signature(2, "GET /orders/{id}", "body.items[*].price", "type_changed", 40, 80, 0.25,
                   _example("ex-0002", "body.items[3].price", 9.5, "9.50")),
        _signature(3, "GET /search", "body.hint", "value_changed", 7, 20, 0.08,
                   _example("ex-0003", "body.hint", "a|b `tick`\nnext line " + "x" * 50, XSS_BODY)),
        _signature(4, "GET /health", "status", "status_changed", 3, 30, 0.01,
                   _example("ex-0004", "status", 200, 503)),
    ]


def _noise() -> dict[str, Any]:
    def entry(endpoint: str, location: str, kind: str, by: str, rule: str | None, count: int,
              out_of: int, old_replica: int | None, old: Any, new: Any) -> dict[str, Any]:
        return {"key": f"{endpoint} {location} {kind}", "endpoint": endpoint, "location": location,
                "kind": kind, "by": by, "rule": rule, "count": count, "out_of": out_of,
                "old_replica": old_replica, "example": _example("ex-0100", location, old, new)}
    return {
        "measured": True, "source": "old_replica", "exchanges": 200, "min_relative_pct": 20.0,
        "min_absolute_pct": 0.03, "audited": 150,
        "suppressed": [
            entry("GET /users/{id}", "body.nonce", "value_changed", "measurement", None, 130, 130,
                  130, "a1", "b2"),
            entry("GET /orders/{id}", "header.x-served-by", "header_changed", "replica", None, 2, 70,
                  2, "old-a", XSS_BODY),
            entry("GET /users/{id}", "body.meta.request_id", "value_changed", "rule",
                  'ignore_paths "body.meta.request_id"', 100, 100, None, "r1", "r2"),
        ],
    }


def make_summary() -> dict[str, Any]:
    """A pinned run: fixed ids and times, and captured values that need escaping."""
    return {
        "schema": "shadowdiff-summary", "schema_version": SCHEMA_VERSION,
        "run": {
            "id": "20240501T020000Z-abc123", "started_at": "2024-05-01T02:00:00+00:00",
            "finished_at": "2024-05-01T02:00:12+00:00", "duration_s": 12.25,
            "shadowdiff_version": "0.1.0", "captures": ["captures/demo.jsonl"],
            "targets": {"old": "http://127.0.0.1:8001", "new": "http://127.0.0.1:8002", "old_replica": None},
            "config": None, "interrupted": False,
            "errors": ["captures/demo.jsonl:77: not valid JSON"],
        },
        "totals": {
            "exchanges": 300, "replayed": 260, "skipped": 40,
            "skipped_by_reason": {"method POST": 31, "method DELETE": 9},
            "identical": 95, "diverged": 160, "failed": {"old": 0, "new": 5, "old_replica": 0},
            "noise_suppressed": 12, "exchanges_per_s": 21.2,
        },
        "usage": {"source": "access_log", "files": ["logs/access.log"], "requests": 100000,
                  "malformed": 3, "note": ""},
        "coverage": {"verified_share": 0.55, "diverging_share": 0.4, "untested_share": 0.05},
        "endpoints": [
            {"endpoint": "GET /users/{id}", "replayed": 130, "identical": 10, "diverged": 120, "failed": 0,
             "usage_share": 0.42, "usage_requests": 42000,
             "latency_ms": {"old_p50": 3.1, "new_p50": 3.4, "old_p95": 8.0, "new_p95": 9.0}},
            {"endpoint": "GET /health", "replayed": 30, "identical": 22, "diverged": 3, "failed": 5,
             "usage_share": 0.01, "usage_requests": 1000,
             "latency_ms": {"old_p50": 1.0, "new_p50": 250.0, "old_p95": 2.0, "new_p95": 900.0}},
        ],
        "signatures": _signatures(),
        "noise": _noise(),
        "uncovered": [{"endpoint": "GET /admin|stats", "requests": 4000, "usage_share": 0.04},
                      {"endpoint": "GET /export", "requests": 1000, "usage_share": 0.01}],
        "failures": [{"role": "new", "kind": "timeout", "count": 5, "endpoint": "GET /health",
                      "example_exchange_id": "ex-0009", "detail": "no response in 10 s"}],
        "verdict": "4 significant divergences", "exit_code": 1,
    }


def _response(body: Any, status: int = 200, headers: list[list[str]] | None = None) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body, indent=2)
    return {"status": status, "headers": headers or [["content-type", "application/json"]],
            "body": text, "elapsed_ms": 3.5}


def _div(location: str, kind: str, old: Any, new: Any) -> dict[str, Any]:
    return {"location": location, "kind": kind, "old": old, "new": new}


def make_examples(summary: dict[str, Any]) -> dict[str, Any]:
    """One example exchange per signature, the third one carrying hostile content."""
    user = {"id": 7, "name": "Ann", "email": "ann@example.com"}
    new_user = {"id": 7, "name": "Ann"}
    order = {"id": 1, "items": [{"sku": f"s{i}", "price": 9.5} for i in range(5)]}
    new_order = copy.deepcopy(order)
    new_order["items"][3]["price"] = "9.50"
    hostile_request = {"method": "GET", "target": XSS_TARGET,
                       "headers": [["authorization", "[redacted]"], ["x-evil", XSS_BODY]], "body": ""}
    bodies = [
        (user, new_user, [_div("body.email", "field_missing", "ann@example.com", None)]),
        (order, new_order, [_div("body.items[3].price", "type_changed", 9.5, "9.50")]),
        ({"hint": "plain"}, {"hint": XSS_BODY}, [_div("body.hint", "value_changed", "plain", XSS_BODY)]),
        ("ok\n", "<html>" + XSS_BODY + "</html>\n",
         [_div("status", "status_changed", 200, 503), _div("body", "body_changed", "ok", "?")]),
    ]
    plain_request = {"method": "GET", "target": "/x/1", "headers": [], "body": ""}
    examples = {}
    for sig, (old, new, divs) in zip(summary["signatures"], bodies):
        request = hostile_request if sig["rank"] == 3 else plain_request
        new_status = 503 if sig["kind"] == "status_changed" else 200
        examples[sig["key"]] = {"exchange_id": sig["example"]["exchange_id"], "request": request,
                                "old": _response(old), "new": _response(new, new_status), "divergences": divs}
    return examples


@pytest.fixture
def summary() -> dict[str, Any]:
    return make_summary()


@pytest.fixture
def examples(summary: dict[str, Any]) -> dict[str, Any]:
    return make_examples(summary)


def _check_golden(name: str, actual: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(actual, encoding="utf-8", newline="\n")
        pytest.skip(f"rewrote {path}; review the diff")
    assert path.exists(), f"{path} missing: run pytest --update-golden and review it"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


# --- summary.json --------------------------------------------------------------------


def test_summary_json_matches_golden(summary: dict[str, Any], update_golden: bool) -> None:
    _check_golden("summary.json", render_json(summary), update_golden)


def test_render_json_round_trips_keeping_key_order(summary: dict[str, Any]) -> None:
    text = render_json(summary)
    back = json.loads(text)
    assert back == summary
    assert list(back) == list(summary)
    assert text.endswith("}\n") and "\\u" not in text  # UTF-8, not ASCII escapes


def test_render_json_refuses_values_json_cannot_carry(summary: dict[str, Any]) -> None:
    summary["totals"]["exchanges_per_s"] = float("nan")
    with pytest.raises(ReportError, match="not plain JSON"):
        render_json(summary)


def test_validate_accepts_the_pinned_summary(summary: dict[str, Any]) -> None:
    assert validate_summary(summary) == []


@pytest.mark.parametrize("key", [k for k, v in SUMMARY_SPEC.items() if not isinstance(v, _Optional)])
def test_validate_names_each_missing_top_level_key(summary: dict[str, Any], key: str) -> None:
    del summary[key]
    assert f"{key}: missing" in validate_summary(summary)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("run", "targets"), {"old": "http://a"}, "run.targets.new: missing"),
        (("signatures", 1, "kind"), "renamed", "signatures[1].kind: expected one of"),
        (("signatures", 0, "affected"), True, "signatures[0].affected: expected an integer"),
        (("coverage", "untested_share"), 1.5, "coverage.untested_share: expected a number in 0..1"),
        (("failures", 0, "kind"), "boom", "failures[0].kind: expected one of"),
        (("run", "captures"), "one.jsonl", "run.captures: expected a list"),
        (("endpoints", 0, "latency_ms", "new_p95"), "slow",
         "endpoints[0].latency_ms.new_p95: expected a number"),
        (("exit_code",), 3, "exit_code: expected one of 0, 1, 2"),
        (("schema",), "other", "schema: expected one of"),
    ],
)
def test_validate_names_where_a_value_is_wrong(summary: dict[str, Any], path: tuple[Any, ...],
                                               value: Any, where: str) -> None:
    target = summary
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    problems = validate_summary(summary)
    assert any(p.startswith(where) for p in problems), problems


def test_validate_refuses_a_newer_schema_and_shuffled_ranks(summary: dict[str, Any]) -> None:
    summary["schema_version"] = SCHEMA_VERSION + 1
    summary["signatures"].reverse()
    problems = validate_summary(summary)
    assert any("newer than this shadowdiff reads" in p for p in problems)
    assert any(p.startswith("signatures: ranks") for p in problems)


def test_a_summary_from_before_the_noise_section_still_validates_and_renders(
        summary: dict[str, Any], examples: dict[str, Any]) -> None:
    del summary["noise"]
    assert validate_summary(summary) == []
    assert "Suppressed as noise" not in render_markdown(summary)
    assert "Suppressed as noise" not in render_html(summary, examples)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("noise", "suppressed", 0, "by"), "magic", "noise.suppressed[0].by: expected one of"),
        (("noise", "source"), "guess", "noise.source: expected one of"),
        (("noise", "suppressed", 1, "count"), -1, "noise.suppressed[1].count: expected an integer"),
        (("signatures", 0, "noise"), {"raw": 1}, "signatures[0].noise: expected an A/A test"),
    ],
)
def test_validate_checks_the_noise_fields(summary: dict[str, Any], path: tuple[Any, ...],
                                          value: Any, where: str) -> None:
    target = summary
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert any(p.startswith(where) for p in validate_summary(summary)), validate_summary(summary)


def test_noise_section_in_both_reports_says_what_suppressed_what(
        summary: dict[str, Any], examples: dict[str, Any]) -> None:
    md = render_markdown(summary)
    section = md[md.index("## Suppressed as noise"):]
    assert "130/130" in section and "measurement: old vs replica 130/130" in section
    assert 'ignore\\_paths "body.meta.request\\_id"' in section
    html = render_html(summary, examples)
    assert 'id="noise"' in html and "old replica, per request" in html
    assert XSS_BODY not in html  # the example value is escaped like every captured value


def test_validate_allows_additive_fields(summary: dict[str, Any]) -> None:
    summary["totals"]["future_field"] = 1
    summary["signatures"][0]["trend"] = "new"
    assert validate_summary(summary) == []
    assert validate_summary([summary]) == ["summary: expected an object, got a list"]


def test_read_summary_validates_and_names_the_file(summary: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "summary.json"
    good.write_text(render_json(summary), encoding="utf-8")
    assert read_summary(good) == summary
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "shadowdiff-summary"}', encoding="utf-8")
    with pytest.raises(ReportError, match="bad.json: not a valid summary: schema_version: missing"):
        read_summary(bad)
    with pytest.raises(ReportError, match="nothere.json: cannot read"):
        read_summary(tmp_path / "nothere.json")


def test_schema_doc_lists_every_kind_and_top_level_key() -> None:
    doc = (REPO / "docs" / "report-schema.md").read_text(encoding="utf-8")
    for name in (*DIVERGENCE_KINDS, *FAILURE_KINDS, *SUMMARY_SPEC):
        assert f"`{name}`" in doc, name


# --- report.md -----------------------------------------------------------------------


def test_report_md_matches_golden(summary: dict[str, Any], update_golden: bool) -> None:
    _check_golden("report.md", render_markdown(summary), update_golden)


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_signature_rows_keep_their_columns(summary: dict[str, Any]) -> None:
    lines = render_markdown(summary).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| # |"))
    rows = lines[header + 2: header + 2 + len(summary["signatures"])]
    assert [r.split(" | ")[0] for r in rows] == [f"| {s['rank']}" for s in summary["signatures"]]
    assert {_unescaped_pipes(r) for r in rows} == {_unescaped_pipes(lines[header])}
    assert "<script>" not in "\n".join(line for line in lines if "`" not in line)


def test_markdown_cuts_long_lists_and_says_how_many_more(summary: dict[str, Any]) -> None:
    text = render_markdown(summary, max_signatures=1, max_uncovered=1)
    assert f"…and {len(summary['signatures']) - 1:,} more in summary.json" in text
    assert f"…and {len(summary['uncovered']) - 1:,} more." in text
    assert summary["signatures"][1]["location"] not in text


def test_markdown_without_divergences_says_so(summary: dict[str, Any]) -> None:
    summary["signatures"] = []
    text = render_markdown(summary)
    assert "No divergences" in text and "| # |" not in text


@given(st.text(max_size=120))
def test_md_code_is_one_inert_cell(text: str) -> None:
    cell = md_code(text, limit=200)
    assert "\n" not in cell and "\r" not in cell
    assert _unescaped_pipes(cell) == 0
    fence = re.match(r"`+", cell)
    if fence:  # the fence is longer than any backtick run inside, so nothing closes it early
        inner = cell[len(fence.group()):-len(fence.group())]
        assert all(len(run) < len(fence.group()) for run in re.findall(r"`+", inner))


@given(st.text(max_size=120))
def test_md_text_escapes_markup(text: str) -> None:
    out = md_text(text)
    assert "\n" not in out and _unescaped_pipes(out) == 0
    assert not re.search(r"(?<!\\)[<>`*_\[\]]", out.replace("\\\\", ""))


# --- report.html ---------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects tags, attributes, <details> ids and highlighted code lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.details: dict[str, str] = {}
        self.lines: list[tuple[str, str]] = []  # (class, text) of .code lines
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._stack: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("details", "script", "style") or (tag == "div" and "l" in (attributes.get("class") or "").split()):
            self._stack.append((tag, attributes.get("id") or attributes.get("class") or "", []))
            return
        for _, _, texts in self._stack:
            texts.append(" ")  # keep words in neighbouring cells apart

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1][0] == tag:
            kind, label, texts = self._stack.pop()
            text = "".join(texts)
            if kind == "details":
                self.details[label] = text
            elif kind == "script":
                self.scripts.append(text)
            elif kind == "style":
                self.styles.append(text)
            else:
                self.lines.append((label, text))

    def handle_data(self, data: str) -> None:
        for _, _, texts in self._stack:
            texts.append(data)


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def test_html_escapes_captured_content(summary: dict[str, Any], examples: dict[str, Any]) -> None:
    html = render_html(summary, examples)
    assert XSS_BODY not in html and "<img" not in html and "<html>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    page = _page(html)
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert not any(tag == "img" for tag, _ in page.tags)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    # what a browser shows is the original text, so escaping did not mangle it either
    assert XSS_TARGET in page.details["sig-3"]


def test_html_is_self_contained(summary: dict[str, Any], examples: dict[str, Any]) -> None:
    html = render_html(summary, examples)
    page = _page(html)
    assert not any(tag in ("link", "iframe", "object", "embed", "base") for tag, _ in page.tags)
    url_attrs = {"src", "href", "action", "formaction", "xlink:href", "poster", "data"}
    for _, attrs in page.tags:
        for name, value in attrs.items():
            if name in url_attrs:
                assert value is not None and value.startswith("#"), (name, value)
    assert "@import" not in html and "url(" not in html
    csp = next(a["content"] for t, a in page.tags
               if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp
    assert _csp_hash(page.scripts[0]) in csp  # the CSP admits exactly our inline script
    assert _csp_hash(page.styles[0]) in csp and "unsafe-inline" not in csp


def test_html_has_a_drill_down_per_signature(summary: dict[str, Any], examples: dict[str, Any]) -> None:
    page = _page(render_html(summary, examples))
    for sig in summary["signatures"]:
        text = page.details[f"sig-{sig['rank']}"]
        assert sig["key"] in text and sig["example"]["exchange_id"] in text
        assert "Request" in text and "old" in text and "new" in text


def test_html_highlights_the_divergent_lines(summary: dict[str, Any], examples: dict[str, Any]) -> None:
    page = _page(render_html(summary, examples))
    focus = [text for css, text in page.lines if "focus" in css.split()]
    old_email = examples[summary["signatures"][0]["key"]]["old"]["body"]
    assert [line for line in old_email.splitlines() if '"email"' in line][0].strip() in " ".join(focus)
    assert any('"price": "9.50"' in text for text in focus)
    assert not any('"sku"' in text for text in focus)  # siblings of a changed field stay plain
    # a text body (no JSON paths) gets its changed lines marked by a line diff
    changed = [text for css, text in page.lines if "hl" in css.split()]
    assert any(XSS_BODY in text for text in changed) and any(text.strip() == "ok" for text in changed)


def test_html_keeps_highlighted_lines_when_a_body_is_cut(summary: dict[str, Any],
                                                         examples: dict[str, Any]) -> None:
    key = summary["signatures"][0]["key"]
    big = {f"k{i:04d}": i for i in range(1000)}
    examples[key]["old"]["body"] = json.dumps({**big, "email": "ann@example.com"}, indent=2)
    examples[key]["new"]["body"] = json.dumps(big, indent=2)
    page = _page(render_html(summary, examples, max_body_lines=40))
    assert any("email" in text for css, text in page.lines if "focus" in css.split())
    assert any("gap" in css.split() for css, _ in page.lines)
    assert len(page.lines) < 300


def test_html_shows_failures_and_missing_examples(summary: dict[str, Any], examples: dict[str, Any]) -> None:
    failed = summary["signatures"][3]
    examples[failed["key"]]["new"] = {"failure": {"kind": "timeout", "detail": "no answer <in> 10 s"}}
    del examples[summary["signatures"][1]["key"]]
    page = _page(render_html(summary, examples))
    assert "failure: timeout" in page.details["sig-4"] and "no answer <in> 10 s" in page.details["sig-4"]
    assert "No example exchange was kept" in page.details["sig-2"]


@pytest.mark.parametrize(
    ("location", "steps"),
    [
        ("status", ("status",)),
        ("header.content-type", ("header", "content-type")),
        ('body.items[3]["odd key"].x', ("body", "items", 3, "odd key", "x")),
        ("not a location!", None),
    ],
)
def test_parse_location(location: str, steps: tuple[Any, ...] | None) -> None:
    assert parse_location(location) == steps


# --- write_reports -------------------------------------------------------------------


def test_write_reports_writes_the_three_files(summary: dict[str, Any], examples: dict[str, Any],
                                              tmp_path: Path) -> None:
    paths = write_reports(tmp_path / "run", summary, examples)
    assert {p.name for p in paths.values()} == {"summary.json", "report.md", "report.html"}
    assert paths["json"].read_text(encoding="utf-8") == render_json(summary)
    assert paths["markdown"].read_text(encoding="utf-8") == render_markdown(summary)
    assert paths["html"].read_text(encoding="utf-8") == render_html(summary, examples)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in paths.values())


def test_write_reports_refuses_a_broken_summary(summary: dict[str, Any], tmp_path: Path) -> None:
    del summary["signatures"][0]["impact"]
    with pytest.raises(ReportError, match=r"signatures\[0\]\.impact: missing"):
        write_reports(tmp_path / "run", summary, {})
    assert not (tmp_path / "run").exists()


def test_write_reports_names_an_unwritable_directory(summary: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ReportError, match="cannot create the run directory"):
        write_reports(blocker, summary, {})
