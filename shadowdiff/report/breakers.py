"""The circuit breakers' part of report.md and report.html: when and how long each target's
breaker was open, and how many exchanges were not tried (summary.json's `breakers`).

Shown only when a breaker opened: a run whose breakers stayed closed says nothing of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadowdiff.report.text import md_code, md_text

#: Open intervals listed per report (summary.json keeps more).
SHOWN_INTERVALS = 10


def breaker_view(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The rows both reports print, or None when no breaker opened (or an older summary)."""
    section = summary.get("breakers")
    if not section or not any(t["opened"] for t in section["targets"]):
        return None
    targets = [t for t in section["targets"] if t["opened"]]
    intervals = sorted(({**i, "role": t["role"]} for t in targets for i in t["intervals"]),
                       key=lambda i: i["opened_at"])
    return {
        "intro": (f"{section['not_tried']:,} exchanges were not tried: a target's breaker opens "
                  f"when {section['threshold']:.0%} of its last {section['window']} requests "
                  f"(at least {section['min_requests']}) failed; while it is open nothing is "
                  "sent and the exchange is skipped, never judged identical."),
        "targets": targets,
        "intervals": intervals[:SHOWN_INTERVALS],
        "more": max(0, sum(t["opened"] for t in targets) - SHOWN_INTERVALS),
    }


def breaker_section_md(summary: Mapping[str, Any]) -> str:
    """The report.md section ('' when no breaker opened)."""
    view = breaker_view(summary)
    if view is None:
        return ""
    lines = ["## Circuit breakers", "", md_text(view["intro"]), "",
             "| role | target | opened | open | probes | not tried |",
             "| --- | --- | --: | --: | --: | --: |"]
    for t in view["targets"]:
        lines.append(f"| {t['role'].replace('_', ' ')} | {md_code(t['target'])} | {t['opened']:,} "
                     f"| {t['open_s']:,.1f} s | {t['probes']:,} | {t['not_tried']:,} |")
    lines += ["", "| role | opened at | closed at | open | failing | probes | not tried |",
              "| --- | --- | --- | --: | --: | --: | --: |"]
    for i in view["intervals"]:
        closed = md_text(i["closed_at"]) if i["closed_at"] else "still open at the end"
        lines.append(f"| {i['role'].replace('_', ' ')} | {md_text(i['opened_at'])} | {closed} "
                     f"| {i['duration_s']:,.2f} s | {i['failure_rate']:.0%} | {i['probes']:,} "
                     f"| {i['not_tried']:,} |")
    if view["more"]:
        lines += ["", f"…and {view['more']:,} more openings (summary.json lists up to 50 per role)."]
    return "\n".join(lines)
