"""load.json: the figures of a load test (docs/load.md), and the run directory it goes in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from shadowdiff import __version__
from shadowdiff.errors import ConfigError
from shadowdiff.load.run import ROLES, LoadOptions, LoadRun, ProgressFn, exit_code, run_load
from shadowdiff.load.schedule import Plan, load_plan
from shadowdiff.protocols.base import protocol_for_url
from shadowdiff.replay.options import SAFE_METHODS, ReplayConfig
from shadowdiff.replay.runner import ReplayPolicy
from shadowdiff.report.load import render_load_html, render_load_markdown

SCHEMA = "shadowdiff.load/1"


def load_summary(run: LoadRun, plan: Plan, options: LoadOptions, *,
                 captures: Sequence[str], targets: Mapping[str, str],
                 methods: Sequence[str]) -> dict[str, Any]:
    """Everything the reports show, as plain values."""
    return {
        "schema": SCHEMA, "version": __version__, "started_at": run.started_at,
        "captures": list(captures), "targets": {r: targets[r] for r in ROLES},
        "methods": sorted(methods),
        "schedule": {"base_rate": round(plan.base_rate, 3), "arrivals": len(plan.offsets),
                     "capture_span_s": round(plan.span_s, 3), "skipped": plan.skipped,
                     "truncated": plan.truncated, "order": "old and new alternately, "
                     "one step at a time"},
        "limits": {"max_p99_ms": options.max_p99_ms, "max_errors": options.max_errors,
                   "max_inflight": options.max_inflight, "step_seconds": options.step_seconds,
                   "max_requests": options.max_requests},
        "steps_planned": list(options.steps), "ramp": options.ramp,
        "steps": [step.figures() for step in run.steps],
        "broke": {role: run.broke.get(role) for role in ROLES},
        "interrupted": run.interrupted,
        "exit_code": exit_code(run),
    }


def write_load_reports(out_dir: Path, summary: Mapping[str, Any]) -> dict[str, Path]:
    """load.json, report.md and report.html in `out_dir` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "load.json", "markdown": out_dir / "report.md",
             "html": out_dir / "report.html"}
    paths["json"].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    paths["markdown"].write_text(render_load_markdown(summary), encoding="utf-8")
    paths["html"].write_text(render_load_html(summary), encoding="utf-8")
    return paths


def load_test(captures: Sequence[str], targets: Mapping[str, str], replay: ReplayConfig,
              options: LoadOptions, out_dir: Path, *, base_rate: float | None = None,
              progress: ProgressFn | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Read the captures, run the steps against old and new, write the run directory.

    >>> summary, paths = load_test(["c.jsonl"], {"old": OLD, "new": NEW}, ReplayConfig(),
    ...                            LoadOptions(steps=(1, 2)), Path("reports/load"))  # doctest: +SKIP
    """
    protocol = protocol_for_url(targets["old"])
    if protocol_for_url(targets["new"]) is not protocol:
        raise ConfigError(f"targets mix protocols ({targets['old']} and {targets['new']})",
                          key="targets")
    methods = frozenset(replay.methods)
    if replay.methods == SAFE_METHODS and hasattr(protocol, "replay_methods"):
        methods = frozenset(protocol.replay_methods(replay))  # the plugin's own safe default
    plan = load_plan(captures, ReplayPolicy(methods=methods, protocol=protocol.name),
                     base_rate=base_rate)
    out_dir.mkdir(parents=True, exist_ok=True)  # fail on an unwritable --out before loading
    run = run_load(plan, targets, protocol, replay, options, progress)
    summary = load_summary(run, plan, options, captures=captures, targets=targets,
                           methods=sorted(methods))
    return summary, write_load_reports(out_dir, summary)
