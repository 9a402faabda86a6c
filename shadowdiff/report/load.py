"""The load test's report.md and report.html, from load.json's values (shadowdiff.load).

Report stage. The HTML is one self-contained file: inline SVG chart (charts.load_chart),
its only style block admitted by the Content-Security-Policy's hash, every value escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from shadowdiff.report.charts import load_chart

_COLUMNS = ("role", "multiple", "target rate/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms",
            "error rate", "errors")

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
          "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ccc;"
          "text-align:right}td:first-child,th:first-child{text-align:left}.broke{color:#cf222e}"
          "svg.chart{max-width:100%}@media(prefers-color-scheme:dark){body{background:#0d1117;"
          "color:#e6edf3}}")


def _cells(step: Mapping[str, Any]) -> list[str]:
    errors = ", ".join(f"{k} {v}" for k, v in step["errors"].items()) or "-"
    return [step["role"], f"x{step['multiple']:g}", f"{step['target_rate']:g}",
            f"{step['achieved_rate']:g}", _ms(step["p50_ms"]), _ms(step["p95_ms"]),
            _ms(step["p99_ms"]), f"{step['error_rate']:.1%}", errors]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def verdict(summary: Mapping[str, Any]) -> str:
    """One sentence: where each system broke and what the exit code says."""
    parts = []
    for role in ("old", "new"):
        b = summary["broke"].get(role)
        parts.append(f"{role} broke at x{b['multiple']:g} ({b['target_rate']:g}/s: {b['reason']})"
                     if b else f"{role} held every step it ran")
    tail = ("interrupted (Ctrl-C): partial" if summary["interrupted"]
            else "new broke earlier than old" if summary["exit_code"] == 1
            else "new held as long as old")
    return "; ".join(parts) + f". Verdict: {tail} (exit {summary['exit_code']})."


def render_load_markdown(summary: Mapping[str, Any]) -> str:
    """report.md: the verdict and one table row per step and target."""
    sched = summary["schedule"]
    lines = ["# shadowdiff load", "",
             f"Production rate {sched['base_rate']:g} requests/s from {sched['arrivals']} "
             f"arrivals over {sched['capture_span_s']:g} s; old and new loaded alternately, "
             f"{summary['limits']['step_seconds']:g} s a step.", "", verdict(summary), "",
             "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for step in summary["steps"]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(step)) + " |")
    return "\n".join(lines) + "\n"


def render_load_html(summary: Mapping[str, Any]) -> str:
    """report.html: verdict, chart and table, self-contained."""
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    chart = load_chart(summary["steps"], summary["limits"]["max_p99_ms"])
    rows = []
    for step in summary["steps"]:
        broke = summary["broke"].get(step["role"])
        cls = ' class="broke"' if broke and broke["multiple"] == step["multiple"] else ""
        rows.append(Markup("<tr{}>{}</tr>").format(Markup(cls), Markup("").join(
            Markup("<td>{}</td>").format(c) for c in _cells(step))))
    head = Markup("").join(Markup("<th>{}</th>").format(c) for c in _COLUMNS)
    csp = f"default-src 'none'; style-src 'sha256-{digest}'"
    return str(Markup(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="Content-Security-Policy" content="{}">'
        "<title>shadowdiff load</title><style>{}</style></head><body>"
        "<h1>shadowdiff load</h1><p>{}</p><p>{}</p>{}"
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table></body></html>\n").format(
            csp, Markup(_STYLE), _targets(summary), verdict(summary), chart or "",
            head, Markup("").join(rows)))


def _targets(summary: Mapping[str, Any]) -> str:
    t = summary["targets"]  # plain text: Markup.format escapes it
    return f"old {t['old']}, new {t['new']}; methods {', '.join(summary['methods'])}"
