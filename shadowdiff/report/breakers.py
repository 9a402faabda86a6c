"""The circuit breakers' part of report.md and report.html: when and how long each target's
breaker was open, whether replay gave up on it, and which exchanges were not tried
(summary.json's `breakers`).

Shown only when a breaker opened: a run whose breakers stayed closed says nothing of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadowdiff.report.text import md_code, md_text

#: Open intervals, and endpoints not tried, listed per report (summary.json keeps more).
SHOWN_INTERVALS = 10
SHOWN_ENDPOINTS = 10


def breaker_view(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The rows both reports print, or None when no breaker opened (or an older summary)."""
    section = summary.get("breakers")
    if not section or not any(t["opened"] for t in section["targets"]):
        return None
    targets = [t for t in section["targets"] if t["opened"]]
    intervals = sorted(({**i, "role": t["role"]} for t in targets for i in t["intervals"]),
                       key=lambda i: i["opened_at"])
    not_tried = [{"role": t["role"], "endpoint": endpoint, "count": n}
                 for t in targets for endpoint, n in t["not_tried_endpoints"].items()]
    return {
        "intro": (f"A target's breaker opens when {section['threshold']:.0%} of its last "
                  f"{section['window']} requests (at least {section['min_requests']}) failed "
                  "(timeouts, refused or reset connections, statuses "
                  f"{', '.join(str(s) for s in section['statuses'])}); replay then pauses and "
                  "probes with backoff. Only a breaker open for "
                  f"{section['give_up_s']:g} s gives up: the exchanges left were not tried "
                  f"({section['not_tried']:,}), never judged identical."),
        "targets": targets,
        "intervals": intervals[:SHOWN_INTERVALS],
        "more": max(0, sum(t["opened"] for t in targets) - SHOWN_INTERVALS),
        "not_tried": not_tried[:SHOWN_ENDPOINTS],
        "examples": [(t["role"], t["not_tried_examples"]) for t in targets
                     if t["not_tried_examples"]],
    }


def breaker_section_md(summary: Mapping[str, Any]) -> str:
    """The report.md section ('' when no breaker opened)."""
    view = breaker_view(summary)
    if view is None:
        return ""
    lines = ["## Circuit breakers", "", md_text(view["intro"]), "",
             "| role | target | opened | open | probes | gave up | not tried |",
             "| --- | --- | --: | --: | --: | --- | --: |"]
    for t in view["targets"]:
        lines.append(f"| {t['role'].replace('_', ' ')} | {md_code(t['target'])} | {t['opened']:,} "
                     f"| {t['open_s']:,.1f} s | {t['probes']:,} | {'yes' if t['gave_up'] else 'no'} "
                     f"| {t['not_tried']:,} |")
    lines += ["", "| role | opened at | closed at | open | failing | probes | not tried |",
              "| --- | --- | --- | --: | --: | --: | --: |"]
    for i in view["intervals"]:
        closed = md_text(i["closed_at"]) if i["closed_at"] else (
            "gave up" if i["gave_up"] else "still open at the end")
        lines.append(f"| {i['role'].replace('_', ' ')} | {md_text(i['opened_at'])} | {closed} "
                     f"| {i['duration_s']:,.2f} s | {i['failure_rate']:.0%} | {i['probes']:,} "
                     f"| {i['not_tried']:,} |")
    if view["more"]:
        lines += ["", f"…and {view['more']:,} more openings (summary.json lists up to 50 per role)."]
    if view["not_tried"]:
        lines += ["", "Not tried, by endpoint:", "", "| role | endpoint | exchanges |",
                  "| --- | --- | --: |"]
        lines += [f"| {r['role'].replace('_', ' ')} | {md_code(r['endpoint'])} | {r['count']:,} |"
                  for r in view["not_tried"]]
    for role, ids in view["examples"]:
        lines += ["", f"Not tried ({role.replace('_', ' ')}), first ids: "
                  + ", ".join(md_code(i) for i in ids)]
    return "\n".join(lines)
