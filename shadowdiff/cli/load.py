"""`shadowdiff load`: can the new system take the production load? (shadowdiff.load)"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from shadowdiff.cli.tls import tls_options
from shadowdiff.config import load_config
from shadowdiff.config.sections import check_replay
from shadowdiff.config.tls import tls_flags
from shadowdiff.load.generator import StepResult
from shadowdiff.load.run import LoadOptions
from shadowdiff.load.schedule import parse_steps, ramp_steps
from shadowdiff.load.summary import load_test
from shadowdiff.report.load import verdict


def _steps(value: str) -> tuple[float, ...]:
    try:
        return parse_steps(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--steps") from None


@click.command("load")
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--old", required=True, metavar="URL", help="The system in production now.")
@click.option("--new", required=True, metavar="URL", help="The system that will replace it.")
@click.option("--steps", default="1,2,4,8", show_default=True, metavar="M,M,...",
              help="Multiples of the production rate (from the capture's timestamps), rising.")
@click.option("--ramp", is_flag=True, help="Instead of --steps: x1, x2, x4, ... until both "
              "systems break or --max-multiple.")
@click.option("--max-multiple", type=click.FloatRange(min=1), default=64, show_default=True,
              help="Where --ramp stops.")
@click.option("--step-seconds", type=click.FloatRange(min=0, min_open=True), default=10,
              show_default=True, help="How long each step sends, per system.")
@click.option("--max-p99", "max_p99", type=click.FloatRange(min=0, min_open=True), default=1000,
              show_default=True, metavar="MS", help="A step whose p99 latency is above this breaks the system.")
@click.option("--max-errors", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="A step whose error share (failures, 5xx, 429, overflow) is above this breaks it.")
@click.option("--max-inflight", type=click.IntRange(min=1), default=256, show_default=True,
              help="Requests in flight per system; an arrival over it is an overflow error.")
@click.option("--max-requests", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Requests per step and system, at most (with --step-seconds, the bound).")
@click.option("--pause", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between steps, so one step's queue does not spill into the next.")
@click.option("--base-rate", type=click.FloatRange(min=0, min_open=True), metavar="RPS",
              help="Ignore the capture's timestamps: evenly spaced at this production rate.")
@click.option("--methods", help="Methods to send, comma-separated [GET,HEAD,OPTIONS]. "
              "Others are skipped: load-testing POST can change data.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Per-request timeout, seconds [10].")
@click.option("--client", type=click.Choice(["fast", "aiohttp"]), help="HTTP client [fast].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="TOML",
              help="shadowdiff.toml: its [replay] settings (docs/configuration.md).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [reports/load-<time>].")
@click.option("--quiet", "-q", is_flag=True, help="Only the verdict line.")
@tls_options
def load(captures: tuple[str, ...], old: str, new: str, steps: str, ramp: bool,
         max_multiple: float, step_seconds: float, max_p99: float, max_errors: float,
         max_inflight: int, max_requests: int, pause: float, base_rate: float | None,
         config_path: str | None, out: str | None, quiet: bool, **flags: Any) -> None:
    """Replay CAPTURE at the production rate and rising multiples to old, then new.

    Exit 0 when new held as long as old, 1 when new broke at a lower step than old (or
    alone), 2 for bad input, 130 when stopped by Ctrl-C (the report is still written).
    """
    options = LoadOptions(steps=ramp_steps(max_multiple) if ramp else _steps(steps),
                          step_seconds=step_seconds, max_p99_ms=max_p99, max_errors=max_errors,
                          max_inflight=max_inflight, pause_s=pause, max_requests=max_requests,
                          ramp=ramp)
    out_dir = Path(out) if out else _default_out()

    def progress(step: StepResult) -> None:
        if not quiet:
            f = step.figures()
            click.echo(f"{f['role']:>3} x{f['multiple']:g}: {f['target_rate']:g}/s asked, "
                       f"{f['achieved_rate']:g}/s served, p99 {f['p99_ms']} ms, "
                       f"errors {f['error_rate']:.1%}", err=True)

    summary, paths = load_test(captures, {"old": old, "new": new}, _replay(config_path, flags),
                               options, out_dir, base_rate=base_rate, progress=progress)
    click.echo(verdict(summary))
    if not quiet:
        for path in paths.values():
            click.echo(str(path))
    sys.exit(summary["exit_code"])


def _replay(config_path: str | None, flags: dict[str, Any]) -> Any:
    r = tls_flags(load_config(config_path).replay, flags)  # [tls] and --old-address...
    methods = flags.get("methods")
    return check_replay(replace(
        r, timeout_s=flags.get("timeout") or r.timeout_s, client=flags.get("client") or r.client,
        methods=tuple(m.strip().upper() for m in methods.split(",") if m.strip())
        if methods else r.methods))


def _default_out() -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"load-{stamp}"
