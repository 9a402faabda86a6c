"""Build the summary: the one dict summary.json, report.md and report.html are made from.

Its shape is a contract (docs/report-schema.md, SCHEMA_VERSION). The exit code is
decided here too, so the CLI and every report agree on the verdict.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shadowdiff.config import Config
from shadowdiff.errors import EXIT_CLEAN, EXIT_DIVERGED, EXIT_INPUT
from shadowdiff.compare.noise import NoiseTest
from shadowdiff.rank.coverage import suggest_sample
from shadowdiff.model import USAGE_SOURCES, Signature
from shadowdiff.rank.impact import coverage, endpoint_table, rank_signatures, uncovered
from shadowdiff.rank.traffic import Usage
from shadowdiff.rank.severity import severity_weights
from shadowdiff.rank.tally import Tally
from shadowdiff.replay.breaker import SKIP_PREFIX
from shadowdiff.replay.breaker_log import BreakerBook

SCHEMA_NAME = "shadowdiff-summary"
SCHEMA_VERSION = 1



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


def _noise_tests(tally: Tally, config: Config) -> tuple[dict[Signature, NoiseTest], set[Signature]]:
    """Each signature's A/A test, and the ones measured as noise (the tally settles on them)."""
    seen = set(tally.signatures) | {s for s, n in tally.noise.signatures.items() if n.raw}
    tests = tally.noise.tests(config.rank.min_relative_pct, config.rank.min_absolute_pct, seen)
    noise_sigs = {sig for sig, test in tests.items() if not test.significant}
    tally.settle(noise_sigs)
    return tests, noise_sigs


def build_summary(tally: Tally, usage: Usage, state: Any, *, config: Config,
                  captures: tuple[str, ...], started_at: dt.datetime,
                  version: str, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary dict (docs/report-schema.md); `tls` from judging.tls_section."""
    tests, noise_sigs = _noise_tests(tally, config)
    totals = _totals(tally, state)
    signatures = rank_signatures(tally, usage, exclude=noise_sigs,
                                 noise={sig: t.as_dict() for sig, t in tests.items()},
                                 weights=severity_weights(dict(config.rank.severity_weights)),
                                 by_severity=config.rank.severity)
    verdict, exit_code = _verdict(totals, signatures, state)
    if state.interrupted:
        verdict = "interrupted: " + verdict
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "run": _run_section(state, config, captures, started_at, version),
        "totals": totals,
        "usage": _usage_section(usage),
        "coverage": coverage(tally, usage),
        "endpoints": endpoint_table(tally, usage),
        "signatures": signatures,
        "noise": noise_section(tally, tests, config),
        "uncovered": uncovered(tally, usage),
        "ranking": ranking_explained(config, usage),
        "capture_suggestion": capture_suggestion(tally, usage),
        "failures": sorted(tally.failures.values(), key=lambda f: (-f["count"], f["role"],
                                                                   f["kind"], f["endpoint"])),
        **({"tls": tls} if tls is not None else {}),
        "verdict": verdict,
        "exit_code": exit_code,
    }


def _run_section(state: Any, config: Config, captures: tuple[str, ...],
                 started_at: dt.datetime, version: str) -> dict[str, Any]:
    finished = dt.datetime.now(dt.timezone.utc)
    t = config.targets
    return {
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
    }


def _usage_section(usage: Usage) -> dict[str, Any]:
    return {"source": usage.source, "files": list(usage.files), "requests": usage.total,
            "malformed": usage.malformed, "note": usage.note,
            "window_days": usage.window_days, "half_life_days": usage.half_life_days}


def ranking_explained(config: Config, usage: Usage) -> dict[str, Any]:
    """How each figure of the ranking was computed, in words the report prints."""
    source = (f"production {USAGE_SOURCES.get(usage.source, usage.source)}"
              if usage.from_production
              else "the capture's own endpoint frequencies (no access log given)")
    if usage.window_days is not None:
        source += f", last {usage.window_days:g} days only" + (
            f" (half-life {usage.half_life_days:g} days)" if usage.half_life_days else "")
    return {
        "by": "score" if config.rank.severity else "impact",
        "usage_share": f"the endpoint's share of requests in {source}",
        "rate": "exchanges of the endpoint showing the signature / exchanges of it replayed",
        "impact": "usage_share x rate: the share of production traffic that would see it",
        "severity": "weight of the kind of change (e.g. status to 5xx 3.0, changed header 0.5; "
                    "docs/endpoints.md)",
        "score": "impact x severity",
    }


def capture_suggestion(tally: Tally, usage: Usage, target_share: float = 0.99,
                       top: int = 25) -> dict[str, Any] | None:
    """What to capture next so the replay covers `target_share` of production traffic."""
    if not usage.from_production or not usage.total:
        return None
    have = {ep: s.captured for ep, s in tally.endpoints.items() if s.captured}
    rows = suggest_sample(usage.counts, target_share, have=have)
    return {"target_share": target_share, "endpoints": len(rows),
            "rows": [{"endpoint": r.endpoint, "requests": r.requests, "share": r.share,
                      "cumulative_share": r.cumulative_share, "capture": r.capture,
                      "have": r.have} for r in rows[:top]]}


_BY_ORDER = {"measurement": 0, "replica": 1, "rule": 2}


def noise_section(tally: Tally, tests: dict[Signature, NoiseTest], config: Config) -> dict[str, Any]:
    """What was suppressed as noise, by what, how often: nothing is hidden without a trace."""
    book = tally.noise
    entries = []
    for sig, test in tests.items():
        if not test.significant:
            shown = tally.signatures.get(sig)
            example = (shown.example if shown else None) or book.signatures[sig].example
            entries.append(_entry(sig, "measurement", None, test.raw, test.measured,
                                  test.noise, example))
    for sig, counts in book.signatures.items():
        if counts.masked and (sig not in tests or tests[sig].significant):
            entries.append(_entry(sig, "replica", None, counts.masked,
                                  book.measured[sig.endpoint], counts.noise, counts.example))
    for (sig, rule), hit in book.rules.items():
        entries.append(_entry(sig, "rule", rule, hit.count, book.audited[sig.endpoint], None,
                              hit.example))
    entries.sort(key=lambda e: (_BY_ORDER[e["by"]], -e["count"], e["key"], e["rule"] or ""))
    return {
        "measured": bool(book.measured),
        "source": config.targets.noise_source,
        "exchanges": sum(book.measured.values()),
        "min_relative_pct": config.rank.min_relative_pct,
        "min_absolute_pct": config.rank.min_absolute_pct,
        "audited": sum(book.audited.values()),
        "suppressed": entries,
    }


def _entry(sig: Signature, by: str, rule: str | None, count: int, out_of: int,
           old_replica: int | None, example: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": sig.key, "endpoint": sig.endpoint, "location": sig.location, "kind": sig.kind,
            "by": by, "rule": rule, "count": count, "out_of": max(out_of, count),
            "old_replica": old_replica, "example": example}


def breaker_section(tally: Tally, book: BreakerBook, config: Config,
                    protocol: Any) -> dict[str, Any]:
    """summary.json's `breakers` (docs/report-schema.md): each role's circuit breaker, when
    and how long it was open, and the exchanges not tried. `not_tried` counts an exchange
    once however many roles gave up on it (the skip reasons `circuit breaker gave up: ...`);
    each target's `not_tried` counts it for that role."""
    from shadowdiff.pipeline.judging import breakers_apply

    cfg = config.replay.breaker
    return {"enabled": breakers_apply(protocol, config), "threshold": cfg.threshold,
            "window": cfg.window, "min_requests": cfg.min_requests, "backoff_s": cfg.backoff_s,
            "max_backoff_s": cfg.max_backoff_s, "give_up_s": cfg.give_up_s,
            "statuses": list(cfg.statuses), "kinds": list(cfg.kinds),
            "not_tried": sum(n for reason, n in tally.skipped.items()
                             if reason.startswith(SKIP_PREFIX)),
            "targets": book.targets()}
