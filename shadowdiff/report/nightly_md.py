"""The nightly parts of report.md: gate, since last run, latency regressions.

Report stage, beside markdown.py and with its escaping (`md_code`, `md_text`): short
enough for a CI job summary. Sections a summary lacks (written before the nightly job,
or with --no-history) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadowdiff.report.text import format_pct, md_code, md_text

MAX_ROWS = 15


def gate_section(summary: Mapping[str, Any]) -> str:
    """Each `--fail-on` condition, pass or fail, with the trend of the diverging share."""
    gate = summary.get("gate")
    if not gate:
        return ""
    lines = [f"- **{'FAIL' if r['failed'] else 'pass'}** {md_code(r['condition'])}: "
             f"{md_text(r['message'])}" + (f" ({md_text(r['detail'])})" if r["detail"] else "")
             for r in gate["reasons"]]
    trend = summary.get("trend") or []
    if len(trend) >= 2:
        shares = " → ".join(format_pct(p["diverging_share"]) for p in trend[-8:])
        lines.append(f"- Diverging share of production traffic, last {min(len(trend), 8)} "
                     f"runs: {shares}")
    return "## Gate\n\n" + "\n".join(lines)


def since_last_section(summary: Mapping[str, Any]) -> str:
    """New, resolved and persisting signatures; accepted ones marked as such."""
    since = summary.get("since_last")
    if not since:
        return ""
    accepted = {a["key"]: a for a in summary.get("accepted", [])}
    prev = since["previous_run_id"]
    head = (f"Against run {md_code(prev)}, the last complete recorded run: "
            if prev else "No complete run was recorded before this one: ")
    counts = ", ".join(f"**{len(since[g])}** {g}" for g in ("new", "resolved", "persisting"))
    parts = ["## Since the last run", head + counts + "."]
    for group in ("new", "resolved"):
        rows = sorted(since[group].items(), key=lambda kv: -kv[1]["impact"])
        parts += [f"**{group.capitalize()}**:\n\n" + "\n".join(
            _since_line(k, f, accepted) for k, f in rows[:MAX_ROWS])] if rows else []
    return "\n\n".join(parts)


def _since_line(key: str, figures: Mapping[str, Any], accepted: Mapping[str, Any]) -> str:
    line = (f"- {md_code(figures['endpoint'])} {md_code(figures['location'])} "
            f"{md_text(figures['kind'])}, impact {format_pct(figures['impact'], 2)}")
    if key in accepted:
        line += f" (accepted: {md_text(accepted[key]['reason'])})"
    return line


def latency_section_md(summary: Mapping[str, Any]) -> str:
    """Sound latency regressions, one line each (the full table is in report.html)."""
    latency = summary.get("latency")
    if not latency or not latency["regressions"]:
        return ""
    lines = [f"- {md_text(f['description'])}" + (" (accepted)" if f.get("accepted") else "")
             for f in latency["regressions"][:MAX_ROWS]]
    return "## Latency regressions\n\n" + "\n".join(lines)
