"""Build the summary: the one dict summary.json, report.md and report.html are made from.

Its shape is a contract (docs/report-schema.md, SCHEMA_VERSION). The exit code is
decided here too, so the CLI and every report agree on the verdict.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shadowdiff.config import Config
from shadowdiff.rank import Usage, coverage, endpoint_table, rank_signatures, uncovered
from shadowdiff.tally import Tally

SCHEMA_NAME = "shadowdiff-summary"
SCHEMA_VERSION = 1

EXIT_CLEAN, EXIT_DIVERGED, EXIT_INPUT = 0, 1, 2


def _totals(tally: Tally, state: Any) -> dict[str, Any]:
    eps = tally.endpoints.values()
    failed = {role: 0 for role in ("old", "new", "old_replica")}
    for f in tally.failures.values():
        failed[f["role"]] += f["count"]
    replayed = sum(e.replayed for e in eps)
    return {
        "exchanges": sum(e.captured for e in eps),
        "replayed": replayed,
        "skipped": sum(tally.skipped.values()),
        "skipped_by_reason": dict(sorted(tally.skipped.items())),
        "identical": sum(e.identical for e in eps),
        "diverged": sum(e.diverged for e in eps),
        "failed_both": sum(e.failed for e in eps),
        "failed": failed,
        "noise_suppressed": tally.noise_suppressed,
        "exchanges_per_s": round(state.rate, 1),
    }


def _verdict(totals: dict[str, Any], signatures: list[Any], state: Any) -> tuple[str, int]:
    if state.errors:
        return f"input error: {state.errors[0]} (the report covers what was read before it)", EXIT_INPUT
    if signatures:
        return (f"{len(signatures)} divergence signature{'s' * (len(signatures) != 1)} across "
                f"{totals['diverged']} of {totals['replayed']} replayed exchanges"), EXIT_DIVERGED
    if totals["replayed"] and totals["failed_both"] == totals["replayed"]:
        return "nothing verified: every replayed request failed on both old and new", EXIT_DIVERGED
    if not totals["replayed"]:
        return ("nothing verified: no exchange was replayed (see the skipped counts)",
                EXIT_DIVERGED)
    return f"no divergence in {totals['replayed']} replayed exchanges", EXIT_CLEAN


def build_summary(tally: Tally, usage: Usage, state: Any, *, config: Config,
                  captures: tuple[str, ...], started_at: dt.datetime,
                  version: str) -> dict[str, Any]:
    """The summary dict (docs/report-schema.md)."""
    finished = dt.datetime.now(dt.timezone.utc)
    totals = _totals(tally, state)
    signatures = rank_signatures(tally, usage)
    verdict, exit_code = _verdict(totals, signatures, state)
    if state.interrupted:
        verdict = "interrupted: " + verdict
    t = config.targets
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": uuid.uuid4().hex[:12],
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "duration_s": round((finished - started_at).total_seconds(), 3),
            "shadowdiff_version": version,
            "captures": list(captures),
            "targets": {"old": t.old, "new": t.new, "old_replica": t.old_replica},
            "config": config.source,
            "interrupted": state.interrupted,
            "errors": list(state.errors),
        },
        "totals": totals,
        "usage": {"source": usage.source, "files": list(usage.files), "requests": usage.total,
                  "malformed": usage.malformed, "note": usage.note},
        "coverage": coverage(tally, usage),
        "endpoints": endpoint_table(tally, usage),
        "signatures": signatures,
        "uncovered": uncovered(tally, usage),
        "failures": sorted(tally.failures.values(), key=lambda f: (-f["count"], f["role"],
                                                                   f["kind"], f["endpoint"])),
        "verdict": verdict,
        "exit_code": exit_code,
    }
