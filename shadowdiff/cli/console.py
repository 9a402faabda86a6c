"""Terminal side of a run: the live progress line and the closing ranked table (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from shadowdiff.cli.nightly import notification_lines
from shadowdiff.config import Config
from shadowdiff.protocols.http.templater import Templater
from shadowdiff.pipeline.orchestrate import default_out_dir, run
from shadowdiff.pipeline.partitioned import Engine, shared_engine
from shadowdiff.rank.traffic import Usage
from shadowdiff.rank.routing import build_templater, usage_from_logs
from shadowdiff.report.markdown import example_sides
from shadowdiff.report import charts


def load_usage(paths: Sequence[str], config: Config | None = None, *,
               openapi: str | None = None, routes: Sequence[str] = (),
               engine: Engine | None = None) -> tuple[Usage | None, Templater]:
    """Production usage from access logs, and the endpoint templater that counted it.

    The same templater then names the capture's endpoints, so capture and logs join.
    With the run's Dask `engine`, its workers count the log blocks.
    """
    config = config or Config()
    base = Path(config.source).parent if config.source else None
    templater = build_templater(config.routes, base_dir=base, openapi=openapi, extra_routes=routes)
    from shadowdiff.rank.routing import query_log_usage  # DNS query logs: their own counts
    queries = query_log_usage(paths, config.replay.dns.zones) if paths else None
    if queries is not None:
        return queries, templater
    spread = {"executor": engine, "workers": engine.size} if engine is not None else {}
    return usage_from_logs(paths, templater, config.routes, window_days=config.rank.window_days,
                           half_life_days=config.rank.half_life_days, **spread)


def execute(captures: tuple[str, ...], config: Config, *, out_dir: str | Path | None,
            usage_logs: Sequence[str] = (), quiet: bool = False,
            console: Console | None = None, openapi: str | None = None,
            routes: Sequence[str] = (), junit: Path | None = None,
            resume: bool = False, workers: int = 1, scheduler: str | None = None) -> int:
    """Run with progress and a closing table; returns the exit code.

    With `quiet` (cron), no bar and no table: the one-line verdict on standard output.
    """
    workers = 1 if resume else workers
    # One cluster for the logs and the run; while it starts, the report's imports.
    with shared_engine(workers, scheduler, meanwhile=charts.warm) as engine:
        usage, templater = load_usage(usage_logs, config, openapi=openapi, routes=routes,
                                      engine=engine)
        options: dict[str, Any] = {"usage": usage, "templater": templater, "junit": junit,
                                   "resume": resume, "workers": workers, "scheduler": scheduler,
                                   "client": engine.client if engine else None}
        return _execute(captures, config, out_dir, options, quiet, console)


def _execute(captures: tuple[str, ...], config: Config, out_dir: str | Path | None,
             options: dict[str, Any], quiet: bool, console: Console | None) -> int:
    from shadowdiff.cli.progress import capture_total, replay_progress

    console = console or Console(stderr=True)
    target = Path(out_dir) if out_dir else default_out_dir()
    if quiet:
        result = run(captures, config, target, **options)
        print(result.summary["verdict"], flush=True)
    else:
        with replay_progress(console, capture_total(captures)) as progress:
            result = run(captures, config, target, progress=progress, **options)
        print_summary(result.summary, result.paths, Console())
    for error in result.summary["run"]["errors"]:  # even with --quiet: cron must see it
        console.print(f"shadowdiff: error: {error} (the report covers what was read before it)",
                      markup=False, highlight=False)
    for line in notification_lines(result.summary.get("notifications"), quiet=quiet):
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line: grep-able
    return result.exit_code


def print_summary(summary: dict[str, Any], paths: dict[str, Path], console: Console,
                  top: int = 15) -> None:
    """The ranked signatures as a table, the verdict, and where the reports are."""
    t = summary["totals"]
    console.print(f"[bold]{t['replayed']}[/] replayed, {t['identical']} identical, "
                  f"[yellow]{t['diverged']}[/] diverged, {t['failed_both']} failed on both, "
                  f"{t['skipped']} skipped ({t['exchanges_per_s']:,.0f} exchanges/s)")
    if summary["signatures"]:
        table = Table(title=f"Top divergences, ranked by impact ({summary['usage']['source']})")
        for col, justify in (("#", "right"), ("impact", "right"), ("endpoint", "left"),
                             ("location", "left"), ("kind", "left"), ("affected", "right"),
                             ("example", "left")):
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for sig in summary["signatures"][:top]:
            old, new = example_sides(sig["kind"], sig["example"], limit=40)
            table.add_row(str(sig["rank"]), f"{sig['impact']:.2%}", sig["endpoint"],
                          sig["location"], sig["kind"], f"{sig['affected']}/{sig['replayed']}",
                          f"{old or '(absent)'} → {new or '(absent)'}")
        console.print(table)
        if len(summary["signatures"]) > top:
            console.print(f"… and {len(summary['signatures']) - top} more in the report")
    noise = summary.get("noise")
    if noise and noise["suppressed"]:
        by = {b: sum(1 for e in noise["suppressed"] if e["by"] == b)
              for b in ("measurement", "replica", "rule")}
        console.print(f"[dim]suppressed as noise: {by['measurement']} by measurement, "
                      f"{by['replica']} by the old replica per request, {by['rule']} by rules "
                      f"(see 'Suppressed as noise' in the report)[/]")
    elif noise is not None and not noise["measured"]:
        console.print("[dim]noise not measured: no old replica (--old-replica URL or "
                      "--replay-old-twice)[/]")
    colour = "green" if summary["exit_code"] == 0 else "red" if summary["exit_code"] == 2 else "yellow"
    console.print(f"[bold {colour}]{summary['verdict']}[/]")
    if summary["usage"]["note"]:
        console.print(f"[dim]{summary['usage']['note']}[/]")
    for name, path in paths.items():
        console.print(f"{name}: {path}")


def rerender(run_dir: Path) -> dict[str, Path]:
    """Write report.md and report.html again from summary.json and examples.json."""
    from shadowdiff.errors import ReportError
    from shadowdiff.report import write_reports
    try:
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        examples_path = run_dir / "examples.json"
        examples = orjson.loads(examples_path.read_bytes()) if examples_path.exists() else {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ReportError(f"{run_dir}: cannot read the run's summary.json: {exc}") from exc
    return write_reports(run_dir, summary, examples)
