"""The nightly parts of report.html: the morning overview, since last run, latency.

Report stage, beside html.py: plain view values from the summary's `gate`, `trend`,
`since_last`, `accepted` and `latency` keys (docs/report-schema.md), laid out by
templates/nightly.html.j2. A summary written before those keys existed gets the
sections it can (None for the others), so `shadowdiff report` still renders old runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadowdiff.model import DIVERGENCE_KINDS
from shadowdiff.report.charts import latency_chart, trend_chart


def nightly_view(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Everything templates/nightly.html.j2 shows."""
    accepted = {a["key"]: a for a in summary.get("accepted", [])}
    return {
        "morning": _morning(summary),
        "since": _since(summary.get("since_last"), accepted),
        "accepted": list(accepted.values()),
        "latency": _latency(summary.get("latency"), accepted),
        "new_keys": set((summary.get("since_last") or {}).get("new", {})),
    }


def _morning(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The one-screen answer: shares, verdict, gate, which way the trend goes."""
    cov, trend = summary["coverage"], summary.get("trend") or []
    previous = trend[-2] if len(trend) >= 2 else None
    delta = None if previous is None else cov["diverging_share"] - previous["diverging_share"]
    gate = summary.get("gate")
    return {
        "verdict": summary["verdict"],
        "ok": summary["exit_code"] == 0,
        "shares": [("verified", "verified identical", cov["verified_share"]),
                   ("diverging", "diverging", cov["diverging_share"]),
                   ("untested", "untested", cov["untested_share"])],
        "delta": delta,
        "direction": None if delta is None else ("better" if delta < 0 else
                                                 "worse" if delta > 0 else "same"),
        "reasons": gate["reasons"] if gate else [],
        "trend_chart": trend_chart(trend),
        "runs": len(trend),
    }


def _since(since: Mapping[str, Any] | None, accepted: Mapping[str, Any]) -> dict[str, Any] | None:
    if since is None:
        return None
    groups = []
    for name, title in (("new", "New"), ("resolved", "Resolved"), ("persisting", "Persisting")):
        entries = [_entry(key, figures, accepted) for key, figures in since[name].items()]
        entries.sort(key=lambda e: -e["impact"])
        groups.append({"name": name, "title": title, "entries": entries})
    return {"previous_run_id": since["previous_run_id"],
            "previous_started_at": since.get("previous_started_at"),
            "groups": groups, "counts": {g["name"]: len(g["entries"]) for g in groups}}


def _entry(key: str, figures: Mapping[str, Any], accepted: Mapping[str, Any]) -> dict[str, Any]:
    kind = figures["kind"]
    return {"key": key, "endpoint": figures["endpoint"], "location": figures["location"],
            "kind": kind, "kind_class": f"k-{kind}" if kind in DIVERGENCE_KINDS else "k-other",
            "impact": figures["impact"], "previous_impact": figures.get("previous_impact"),
            "accepted": accepted.get(key)}


def _latency(latency: Mapping[str, Any] | None,
             accepted: Mapping[str, Any]) -> dict[str, Any] | None:
    if not latency:
        return None
    metric = latency["metric"]
    rows = sorted(latency["endpoints"], key=lambda e: (not e["regression"], e["endpoint"]))
    return {
        "metric": metric, "min_ratio": latency["min_ratio"], "confidence": latency["confidence"],
        "rows": [_latency_row(e) for e in rows],
        "regressions": [{**f, "accepted_by": accepted.get(f["key"])}
                        for f in latency["regressions"]],
        "chart": latency_chart(latency),
    }


def _latency_row(e: Mapping[str, Any]) -> dict[str, Any]:
    return {**e, "cells": [(p, e["old"][p], e["new"][p]) for p in ("p50", "p95", "p99")]}


def ratio(old: float | None, new: float | None) -> str:
    """`x1.35` for a cell's tooltip; empty without both sides."""
    if old is None or new is None or old <= 0:
        return ""
    return f"x{new / old:.2f}"

