"""report.html: the report for people, one self-contained file that works offline.

Report stage: takes the summary dict and, per signature, one example exchange (request
and both responses) and renders templates/report.html.j2. This module builds plain view
values (lines of bodies, which lines to highlight, formatted figures); the template only
lays them out.

Safety: everything captured is attacker-controlled text. Jinja2 autoescapes every value,
highlighting is done by choosing CSS classes for whole lines (never by inserting markup
into captured text), and a Content-Security-Policy meta tag forbids any network load and
any script but our own (pinned by its hash).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from shadowdiff.errors import ReportError
from shadowdiff.model import DIVERGENCE_KINDS, USAGE_SOURCES, signature_location
from shadowdiff.report.markdown import example_sides, noise_intro, suppressed_by
from shadowdiff.report.text import format_pct
from shadowdiff.report.breakers import breaker_view
from shadowdiff.report.nightly_html import nightly_view
from shadowdiff.report.tls import insecure_warning, view as tls_view
from shadowdiff.report.region import region_view

_TEMPLATES = Path(__file__).parent / "templates"

#: One step of a location after its root: `.name`, `[3]`, `[*]` or `["any key"]`.
_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+|\*)\]|\[("(?:[^"\\]|\\.)*")\]|(@[A-Za-z_:][A-Za-z0-9_.:-]*)')
_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_WILDCARD = object()  # `[*]` in a signature location: any index

Path_ = tuple[Any, ...]
Line = tuple[int | None, str, str]  # (line number or None for a gap, text, css class)


def render_html(
    summary: Mapping[str, Any], examples: Mapping[str, Mapping[str, Any]], *, max_body_lines: int = 400
) -> str:
    """The text of report.html; `examples` maps a signature key to its example exchange.

    >>> html = render_html(summary, examples)   # doctest: +SKIP
    """
    try:
        template = _environment().get_template("report.html.j2")
        return template.render(**_context(summary, examples, max_body_lines))
    except jinja2.TemplateError as exc:
        raise ReportError(f"report.html: template failed: {exc}") from exc


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing field is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = format_pct
    env.filters["num"] = lambda n: f"{n:,}"
    env.filters["usage_source"] = lambda source: USAGE_SOURCES.get(source, source)
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:,.1f}"
    env.filters["csp_hash"] = _csp_hash
    return env


def _csp_hash(text: str) -> Markup:
    digest = hashlib.sha256(str(text).encode("utf-8")).digest()
    # Markup: base64 and quotes only, and `&#39;` in a CSP source list hurts readability
    return Markup("'sha256-" + base64.b64encode(digest).decode("ascii") + "'")


def kind_class(kind: str) -> str:
    """The CSS class for a divergence kind; unknown kinds share one neutral class."""
    return f"k-{kind}" if kind in DIVERGENCE_KINDS else "k-other"


# --- the page's values ---------------------------------------------------------------


def _context(
    summary: Mapping[str, Any], examples: Mapping[str, Mapping[str, Any]], max_lines: int
) -> dict[str, Any]:
    signatures = summary["signatures"]
    top = max((s["impact"] for s in signatures), default=0) or 1
    totals = summary["totals"]
    return {
        "summary": summary,
        "run": summary["run"],
        "totals": totals,
        "usage": summary["usage"],
        "coverage": _coverage_segments(summary["coverage"]),
        "signatures": [_signature_view(s, examples.get(s["key"]), top, max_lines) for s in signatures],
        "endpoints": [_endpoint_view(e) for e in summary["endpoints"]],
        "failures": summary["failures"],
        "tls": tls_view(summary),
        "insecure": insecure_warning(summary),
        "uncovered": summary["uncovered"],
        "skipped": sorted(totals["skipped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])),
        "replica": summary["run"]["targets"].get("old_replica") is not None,
        "noise": _noise_view(summary.get("noise")),
        "nightly": nightly_view(summary),  # morning overview, since last run, latency
        "breakers": breaker_view(summary),  # None unless a circuit breaker opened
        "ok": summary["exit_code"] == 0,
    }


def _noise_view(noise: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The suppressed-noise section: what was hidden, by what, how often (None: old summary)."""
    if not noise:
        return None
    entries = []
    for e in noise["suppressed"]:
        old, new = example_sides(e["kind"], e["example"], limit=60) if e.get("example") else (None, None)
        entries.append({**e, "share": e["count"] / max(e["out_of"], 1), "why": suppressed_by(e),
                        "kind_class": kind_class(e["kind"]), "old": old, "new": new,
                        "has_example": bool(e.get("example"))})
    return {"intro": noise_intro(noise), "measured": noise["measured"], "entries": entries}


def _coverage_segments(coverage: Mapping[str, float]) -> list[dict[str, Any]]:
    """The stacked bar: x and width in percent of the bar, one segment per share."""
    parts = [("verified", "verified identical", coverage["verified_share"]),
             ("diverging", "diverging", coverage["diverging_share"]),
             ("untested", "untested", coverage["untested_share"])]
    segments, x = [], 0.0
    for css, label, share in parts:
        width = max(0.0, min(share * 100, 100 - x))
        segments.append({"css": css, "label": label, "share": share,
                         "x": f"{x:.3f}", "width": f"{width:.3f}"})
        x += width
    return segments


def _endpoint_view(e: Mapping[str, Any]) -> dict[str, Any]:
    lat = e["latency_ms"]
    old, new = lat.get("old_p95"), lat.get("new_p95")
    # a hint, not a verdict: the new p95 at least doubled and by a noticeable amount
    slow = old is not None and new is not None and new >= 2 * old and new - old >= 20
    return {**e, "slow": slow}


def _signature_view(
    s: Mapping[str, Any], example: Mapping[str, Any] | None, top: float, max_lines: int
) -> dict[str, Any]:
    old, new = example_sides(s["kind"], s["example"], limit=60)
    return {
        **s,
        "kind_class": kind_class(s["kind"]),
        "bar": f"{100 * s['impact'] / top:.2f}",
        "old": old,
        "new": new,
        "drill": None if example is None else _drill_view(s, example, max_lines),
    }


def _drill_view(s: Mapping[str, Any], example: Mapping[str, Any], max_lines: int) -> dict[str, Any]:
    focus = (s["location"], s["kind"])
    divergences = [_divergence_view(d, focus) for d in example.get("divergences", [])]
    marks = [(d["steps"], "focus" if d["focus"] else "hl") for d in divergences if d["steps"]]
    old, new = example.get("old", {}), example.get("new", {})
    old_lines, new_lines = _body_pair(old, new, marks, max_lines)
    request = example.get("request", {})
    return {
        "exchange_id": example.get("exchange_id", s["example"]["exchange_id"]),
        "request": {
            "method": request.get("method", ""),
            "target": request.get("target", ""),
            "headers": request.get("headers", []),
            "body": _cap(_text_lines(request.get("body", "")), set(), max_lines),
        },
        "divergences": divergences,
        "region": region_view(example, focus),  # markup/text: the change, old beside new
        "old": _side_view(old, marks, old_lines),
        "new": _side_view(new, marks, new_lines),
    }


def _divergence_view(d: Mapping[str, Any], focus: tuple[str, str]) -> dict[str, Any]:
    old, new = example_sides(d["kind"], d, limit=200)
    return {
        "location": d["location"],
        "kind": d["kind"],
        "kind_class": kind_class(d["kind"]),
        "old": old,
        "new": new,
        "focus": (signature_location(d["location"]), d["kind"]) == focus,
        "steps": parse_location(d["location"]),
    }


def _side_view(
    outcome: Mapping[str, Any], marks: Sequence[tuple[Path_, str]], body: list[Line]
) -> dict[str, Any]:
    if "failure" in outcome:
        return {"failure": outcome["failure"], "hl": _mark_for(("failure",), marks)}
    headers = [(k, v, _mark_for(("header", str(k).lower()), marks)) for k, v in outcome.get("headers", [])]
    return {
        "failure": None,
        "status": outcome.get("status"),
        "status_class": _mark_for(("status",), marks),
        "elapsed_ms": outcome.get("elapsed_ms"),
        "headers": headers,
        "body": body,
    }


# --- locations and highlighting ------------------------------------------------------


def parse_location(location: str) -> Path_ | None:
    """A location string as steps: `body.items[3]["a b"]` -> ('body', 'items', 3, 'a b').

    Returns None for a string that is not a location (then nothing is highlighted).
    """
    root = _ROOT.match(location)
    if root is None:
        return None
    steps: list[Any] = [root.group()]
    pos = root.end()
    while pos < len(location):
        m = _STEP.match(location, pos)
        if m is None:
            return None
        name, index, quoted, attribute = m.groups()
        if attribute is not None:  # a markup attribute (paths.py): the key "@name"
            steps.append(attribute)
        elif name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(_WILDCARD if index == "*" else int(index))
        else:
            steps.append(json.loads(quoted))
        pos = m.end()
    return tuple(steps)


def _covers(mark: Path_, path: Path_) -> bool:
    """True when `path` is at or under `mark` (a line inside a changed subtree)."""
    if len(path) < len(mark):
        return False
    return all(m is _WILDCARD or m == p for m, p in zip(mark, path))


def _mark_for(path: Path_, marks: Sequence[tuple[Path_, str]]) -> str:
    classes = {css for mark, css in marks if _covers(mark, path)}
    return "focus" if "focus" in classes else ("hl" if classes else "")


def _body_pair(
    old: Mapping[str, Any], new: Mapping[str, Any], marks: Sequence[tuple[Path_, str]], max_lines: int
) -> tuple[list[Line], list[Line]]:
    """Both bodies as numbered lines with highlight classes, cut to `max_lines` each."""
    old_tree, new_tree = _parse_json(old.get("body")), _parse_json(new.get("body"))
    if old_tree is not None and new_tree is not None:
        return (_json_side(old_tree, marks, max_lines), _json_side(new_tree, marks, max_lines))
    old_text, new_text = _text_lines(old.get("body") or ""), _text_lines(new.get("body") or "")
    changed = any(m[: 1] == ("body",) for m, _ in marks)
    old_hl, new_hl = _changed_lines(old_text, new_text) if changed else (set(), set())
    return _cap(old_text, old_hl, max_lines), _cap(new_text, new_hl, max_lines)


def _json_side(tree: Any, marks: Sequence[tuple[Path_, str]], max_lines: int) -> list[Line]:
    try:
        pairs = list(_json_lines(tree, ("body",), 0, "", ""))
    except RecursionError:  # absurdly deep JSON: show it as text, unhighlighted
        return _cap(_text_lines(json.dumps(tree, indent=2)), set(), max_lines)
    classes = [_mark_for(path, marks) for _, path in pairs]
    lines = [text for text, _ in pairs]
    return _cap(lines, {i for i, c in enumerate(classes) if c}, max_lines, classes)


def _parse_json(body: Any) -> Any:
    if not isinstance(body, str) or not body.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _json_lines(value: Any, path: Path_, depth: int, prefix: str, comma: str) -> Iterator[tuple[str, Path_]]:
    """Pretty-printed JSON (indent 2), one line at a time, each with the path it shows."""
    pad = "  " * depth
    if isinstance(value, (dict, list)) and value:
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        yield f"{pad}{prefix}{opening}", path
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        for i, (key, item) in enumerate(items):
            label = json.dumps(key, ensure_ascii=False) + ": " if isinstance(value, dict) else ""
            yield from _json_lines(item, (*path, key), depth + 1, label, "," if i < len(items) - 1 else "")
        yield f"{pad}{closing}{comma}", path
    else:
        yield f"{pad}{prefix}{json.dumps(value, ensure_ascii=False)}{comma}", path


def _text_lines(text: Any) -> list[str]:
    return str(text).splitlines() if text else []


def _changed_lines(old: list[str], new: list[str]) -> tuple[set[int], set[int]]:
    """Indices of lines that differ, on each side (difflib, bounded to stay fast)."""
    limit = 5000
    matcher = difflib.SequenceMatcher(None, old[:limit], new[:limit], autojunk=False)
    old_hl: set[int] = set()
    new_hl: set[int] = set()
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            old_hl.update(range(i1, i2))
            new_hl.update(range(j1, j2))
    return old_hl, new_hl


def _cap(lines: list[str], marked: set[int], max_lines: int, classes: list[str] | None = None) -> list[Line]:
    """Numbered lines; past `max_lines`, keep the start and the context of marked lines."""
    keep = set(range(len(lines)))
    if len(lines) > max_lines:
        near = {j for i in marked for j in range(i - 3, i + 4) if 0 <= j < len(lines)}
        keep = set(sorted(near)[:max_lines])
        keep |= set(range(min(len(lines), max(max_lines - len(keep), 0))))
    out: list[Line] = []
    previous = -1
    for i in sorted(keep):
        if i != previous + 1:
            out.append((None, f"⋯ {i - previous - 1:,} lines", "gap"))
        css = classes[i] if classes is not None else ("hl" if i in marked else "")
        out.append((i + 1, lines[i], css))
        previous = i
    if lines and previous != len(lines) - 1:
        out.append((None, f"⋯ {len(lines) - previous - 1:,} lines", "gap"))
    return out
