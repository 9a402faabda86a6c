"""`shadowdiff history`, `accept` and `unaccept`: the run history from the command line.

Thin, like cli.py: the store is shadowdiff.nightly.history; these commands open it (the same
path rules as `run`: --history, else [history] path in --config, else
$SHADOWDIFF_HISTORY, else reports/history.sqlite), print, and exit. A damaged or locked
store is a HistoryError: one line, exit 2, the file untouched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shadowdiff.config import load_config
from shadowdiff.nightly.config import history_path
from shadowdiff.errors import ShadowdiffError
from shadowdiff.nightly.history import History, RunRow
from shadowdiff.report.text import format_pct

_STORE_OPTIONS = [
    click.option("--history", "history_opt", type=click.Path(dir_okay=False), metavar="PATH",
                 help="History store [[history] path, $SHADOWDIFF_HISTORY, "
                      "else reports/history.sqlite]."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="TOML",
                 help="shadowdiff.toml, for its [history] path."),
]


def _store_options(func: Any) -> Any:
    for option in reversed(_STORE_OPTIONS):
        func = option(func)
    return func


def _path(history_opt: str | None, config_path: str | None) -> str:
    if history_opt:
        return history_opt
    return history_path(load_config(config_path).history)


@click.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many recent runs to list.")
@_store_options
def history_cmd(limit: int, history_opt: str | None, config_path: str | None) -> None:
    """List recorded runs, newest first, with their headline figures and the trend."""
    path = _path(history_opt, config_path)
    with History.open(path) as store:
        runs = store.runs(limit)
        accepted = store.accepted()
    console = Console(width=200) if not Console().is_terminal else Console()
    if not runs:
        console.print(f"no runs recorded in {path} yet")
        return
    console.print(runs_table(runs, path))
    console.print(trend_line(list(reversed(runs))), highlight=False)
    if accepted:
        console.print(f"{len(accepted)} accepted signature{'s' * (len(accepted) != 1)} in "
                      "force (they fail no gate):", highlight=False)
        for a in accepted.values():
            until = f" until {a.until}" if a.until else ""
            console.print(f"  {a.key}: {a.reason}{until}", markup=False, highlight=False)


def runs_table(runs: list[RunRow], path: str) -> Table:
    """One row per run: when, gate, figures, shares of production traffic."""
    table = Table(title=f"runs recorded in {path}")
    for col, justify in (("run", "left"), ("started", "left"), ("exit", "right"),
                         ("replayed", "right"), ("diverged", "right"), ("signatures", "right"),
                         ("verified", "right"), ("diverging", "right"), ("untested", "right"),
                         ("verdict", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in runs:
        verdict = ("[interrupted] " if r.interrupted else "") + r.verdict
        table.add_row(r.run_id, r.started_at, str(r.exit_code), f"{r.replayed:,}",
                      f"{r.diverged:,}", str(r.signature_count), format_pct(r.verified_share),
                      format_pct(r.diverging_share), format_pct(r.untested_share), verdict)
    return table


def trend_line(oldest_first: list[RunRow]) -> str:
    """The diverging share over the listed runs, oldest first, and which way it went."""
    shares = [r.diverging_share for r in oldest_first]
    arrows = " → ".join(format_pct(s) for s in shares)
    if len(shares) < 2:
        return f"diverging share of production traffic: {arrows}"
    delta = shares[-1] - shares[-2]
    way = "down" if delta < 0 else "up" if delta > 0 else "unchanged"
    return (f"diverging share of production traffic, oldest → newest: {arrows} "
            f"({way} since the previous run)")


@click.command()
@click.argument("signature")
@click.option("--reason", required=True, help="Why the difference is intended (a ticket, ...).")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Last day the acceptance holds; after it the signature counts again.")
@_store_options
def accept(signature: str, reason: str, until: dt.datetime | None, history_opt: str | None,
           config_path: str | None) -> None:
    """Accept SIGNATURE (a key from summary.json or the report): it fails no gate, and
    the reports still list it as accepted."""
    path = _path(history_opt, config_path)
    with History.open(path) as store:
        try:
            done = store.accept(signature, reason, until.date() if until else None)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        known = store.seen(done.key) or done.key.endswith(" latency_regression")
    if not known:
        click.echo(f"shadowdiff: warning: no recorded run showed {done.key!r}; check the key "
                   "(summary.json signatures[].key)", err=True)
    until_text = f" until {done.until}" if done.until else ""
    click.echo(f"accepted{until_text}: {done.key}")


@click.command()
@click.argument("signature")
@_store_options
def unaccept(signature: str, history_opt: str | None, config_path: str | None) -> None:
    """Withdraw the acceptance of SIGNATURE: it counts for the gates again."""
    path = _path(history_opt, config_path)
    with History.open(path) as store:
        if not store.unaccept(signature.strip()):
            raise ShadowdiffError(f"{signature!r} is not accepted in {path} "
                                  "(`shadowdiff history` lists the acceptances in force)")
    click.echo(f"no longer accepted: {signature.strip()}")
