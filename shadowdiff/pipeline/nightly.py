"""The nightly stages after the summary: latency, since last run, trend, acceptances, gate.

`pipeline.run` calls them in this order (docs/nightly.md):

1. `open_history` before anything is replayed, so a locked or damaged store stops the
   run at once (exit 2) instead of after an hour of replay; the store is never modified
   to "repair" it.
2. `assess` once the summary is built: latency findings from the tally's reservoirs, the
   comparison with the last complete run, the trend, the acceptances in force, and the
   gate, whose exit code and one-line verdict replace the summary's. Every key it adds
   is additive to summary.json (docs/report-schema.md).
3. the reports are written (`write_junit` too, when asked);
4. `notify` once they exist, so the message points at files that are there: when the run
   meets `[notify] when`, every target gets the message, and what each delivery did is
   added to summary.json (`notifications`); a failed delivery never changes the exit code;
5. `record` last: a run that could not write its reports is not in the history.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowdiff.config import Config
from shadowdiff.nightly.config import HistoryConfig, LatencyGate, NotifyConfig, history_path
from shadowdiff.nightly.gates import GateResult, evaluate, parse_conditions
from shadowdiff.nightly.history import Acceptance, History, SinceLast

TREND_RUNS = 30  # runs on the trend chart, this one included


@dataclass(frozen=True)
class Assessment:
    """What `assess` decided, for the JUnit file and the history."""

    gate: GateResult
    accepted: dict[str, Acceptance]
    findings: list[Any]          # latency.Finding, worst first


@contextmanager
def open_history(cfg: HistoryConfig) -> Iterator[History | None]:
    """The history store, or None with `--no-history`. Raises HistoryError (exit 2)."""
    if not cfg.enabled:
        yield None
        return
    from shadowdiff.nightly import history as store  # looked up now: tests shorten the wait

    with History.open(history_path(cfg), timeout_s=store.DEFAULT_TIMEOUT_S) as history:
        yield history


def assess(summary: MutableMapping[str, Any], samples: Mapping[str, Mapping[str, Sequence[float]]],
           history: History | None, config: Config) -> Assessment:
    """Add latency, since_last, trend, accepted and gate to `summary`; set its verdict and
    exit code from the gate. `samples` is endpoint -> role -> latency samples (ms)."""
    summary["latency"], findings = latency_section(samples, summary, config.gate.latency)
    accepted = history.accepted() if history else {}
    since = history.since_last(summary) if history else None
    for sig in summary["signatures"]:
        sig["accepted"] = sig["key"] in accepted
    for finding in summary["latency"]["regressions"]:
        finding["accepted"] = finding["key"] in accepted
    tls_divergences = (summary.get("tls") or {}).get("divergences", [])
    for divergence in tls_divergences:
        divergence["accepted"] = divergence["key"] in accepted
    summary["since_last"] = _since_last(since, history)
    summary["trend"] = _trend(summary, history)
    present = ({s["key"] for s in summary["signatures"]} | {f.key for f in findings}
               | {d["key"] for d in tls_divergences})
    summary["accepted"] = [_acceptance(a, a.key in present) for a in accepted.values()]
    conditions = parse_conditions(config.gate.fail_on, source="--fail-on")
    gate = evaluate(conditions, summary, since, accepted, findings)
    summary["gate"] = {
        "conditions": [c.text for c in conditions],
        "passed": gate.exit_code == 0,
        "reasons": [{"condition": r.condition, "failed": r.failed, "message": r.message,
                     "detail": r.detail} for r in gate.reasons],
    }
    summary["verdict"], summary["exit_code"] = gate.verdict_line, gate.exit_code
    return Assessment(gate, accepted, findings)


def stamp_run(summary: MutableMapping[str, Any], journal: Any) -> None:
    """The run's identity comes from its journal: a resumed run keeps its id and start
    (so the history replaces its record in place); `run.resumed` counts the exchanges
    taken over from the interrupted attempt (0 for a fresh run)."""
    run = summary["run"]
    run["id"] = journal.run_id
    run["resumed"] = journal.restored
    started = journal.meta.get("started_at")
    if journal.restored and started:
        run["started_at"] = started
        begin = dt.datetime.fromisoformat(started)
        end = dt.datetime.fromisoformat(run["finished_at"])
        run["duration_s"] = round(max((end - begin).total_seconds(), 0.0), 3)


def latency_section(samples: Mapping[str, Mapping[str, Sequence[float]]],
                    summary: Mapping[str, Any], gate: LatencyGate) -> tuple[dict[str, Any], list[Any]]:
    """summary.json's `latency`, and the regressions as latency.Finding values."""
    from shadowdiff.nightly.latency import compare_endpoints  # numpy: only once a run is done

    rows = compare_endpoints(samples, summary, metric=gate.metric, min_ratio=gate.min_ratio,
                             confidence=gate.confidence)
    findings = sorted((r.finding for r in rows if r.finding is not None),
                      key=lambda f: (-f.ratio, f.endpoint))
    section = {
        "metric": gate.metric, "min_ratio": gate.min_ratio, "confidence": gate.confidence,
        "endpoints": [{
            "endpoint": r.endpoint, "old": _pcts(r.old), "new": _pcts(r.new),
            "old_error_rate": r.old_error_rate, "new_error_rate": r.new_error_rate,
            "regression": r.finding is not None,
        } for r in rows],
        "regressions": [_finding(f) for f in findings],
    }
    return section, findings


def _pcts(p: Any) -> dict[str, Any]:
    return {"n": p.n, "p50": p.p50, "p95": p.p95, "p99": p.p99}


def _finding(f: Any) -> dict[str, Any]:
    return {"key": f.key, "endpoint": f.endpoint, "metric": f.metric, "old_ms": f.old_ms,
            "new_ms": f.new_ms, "ratio": f.ratio, "ratio_low": f.ratio_low,
            "ratio_high": f.ratio_high, "confidence": f.confidence, "n_old": f.n_old,
            "n_new": f.n_new, "description": f.describe()}


def _since_last(since: SinceLast | None, history: History | None) -> dict[str, Any] | None:
    if since is None or history is None:
        return None
    out = since.to_dict()
    previous = [r for r in history.runs(limit=TREND_RUNS * 4) if r.run_id == since.previous_run_id]
    out["previous_started_at"] = previous[0].started_at if previous else None
    return out


def _trend(summary: Mapping[str, Any], history: History | None) -> list[dict[str, Any]]:
    """Past runs' coverage shares, oldest first, ending with this run."""
    run_id = summary["run"]["id"]
    past = [p for p in history.trend(TREND_RUNS) if p.run_id != run_id] if history else []
    cov = summary["coverage"]
    points = [{**p._asdict(), "current": False} for p in past[-(TREND_RUNS - 1):]]
    points.append({"run_id": run_id, "started_at": summary["run"]["started_at"],
                   "diverging_share": cov["diverging_share"],
                   "verified_share": cov["verified_share"],
                   "untested_share": cov["untested_share"], "current": True})
    return points


def _acceptance(a: Acceptance, present: bool) -> dict[str, Any]:
    return {"key": a.key, "reason": a.reason, "until": a.until.isoformat() if a.until else None,
            "accepted_at": a.accepted_at, "present": present}


def write_junit(path: str | Path, summary: Mapping[str, Any], assessment: Assessment) -> Path:
    """junit.xml for CI test views, written atomically (a CI upload never sees half)."""
    from shadowdiff.errors import ReportError
    from shadowdiff.nightly.junit import render_junit

    path = Path(path)
    text = render_junit(summary, accepted=assessment.accepted,
                        latency_findings=assessment.findings)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return path


def record(history: History | None, summary: Mapping[str, Any], out_dir: Path) -> None:
    """Record the run last, once its reports exist (a no-op with --no-history)."""
    if history is not None:
        history.record(summary, str(out_dir))


def notify(summary: MutableMapping[str, Any], paths: Mapping[str, Path],
           cfg: NotifyConfig) -> dict[str, Any] | None:
    """Send the run's notification when `cfg.when` says so; add `notifications` to the
    summary (None, and nothing added, without targets). Never raises for a delivery."""
    if not cfg.urls:
        return None
    from shadowdiff.nightly.deliver import Mail, deliver
    from shadowdiff.nightly.notify import (build_message, mail_subject, render_text,
                                           report_locations, triggered)

    events = triggered(summary, cfg.when)
    section: dict[str, Any] = {"when": list(cfg.when), "events": events, "deliveries": []}
    if events:
        where = {name: p for name, p in paths.items() if name in ("html", "markdown", "json")}
        message = build_message(summary, report_locations(where, cfg.report_url), events,
                                top=cfg.top)
        body = message["shadowdiff"]
        mail = Mail(mail_subject(body), render_text(body, chat=False))
        payload = json.dumps(message, ensure_ascii=False).encode("utf-8")
        section["deliveries"] = [d.as_dict() for d in deliver(cfg.urls, payload, mail, cfg)]
    summary["notifications"] = section
    return section
