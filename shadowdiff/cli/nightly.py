"""The nightly job's `run` flags: gates, JUnit, history, resume, notifications
(docs/nightly.md).

Kept out of cli.py so the flags and how they lay over the config live in one place;
`run` applies them with `apply_nightly_flags`. Command-line values replace the
config's: `--fail-on` replaces `[gate] fail_on` as a whole, `--history` replaces
`[history] path`, `--notify` replaces `[notify] urls` and `--notify-when` `[notify] when`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from shadowdiff.config import Config
from shadowdiff.nightly.config import NOTIFY_EVENTS, check_notify
from shadowdiff.nightly.gates import parse_conditions

_OPTIONS = [
    click.option("--fail-on", "fail_on", multiple=True, metavar="COND",
                 help="Gate condition, repeatable or comma-separated: any, new, impact>0.5%, "
                      "new-failure-rate[>2%], latency, diverged>N [config [gate] fail_on, "
                      "else any]."),
    click.option("--junit", type=click.Path(dir_okay=False), metavar="PATH",
                 help="Also write the result as JUnit XML (one test case per endpoint)."),
    click.option("--history", "history_path", type=click.Path(dir_okay=False), metavar="PATH",
                 help="Run history store [config [history] path, $SHADOWDIFF_HISTORY, "
                      "else reports/history.sqlite]."),
    click.option("--no-history", is_flag=True,
                 help="Neither read nor record the run history (no since-last-run section)."),
    click.option("--resume", type=click.Path(file_okay=False, exists=True), metavar="RUN_DIR",
                 help="Continue the interrupted or killed run in RUN_DIR (same captures and "
                      "targets): nothing is replayed twice."),
    click.option("--notify", "notify", multiple=True, metavar="URL|mailto:ADDR",
                 help="Post the result to this webhook (JSON with a Slack/Mattermost `text`) or "
                      "mail it (via [notify] smtp_host), when --notify-when says; repeatable "
                      "[config [notify] urls]."),
    click.option("--notify-when", "notify_when", multiple=True, metavar="EVENT",
                 help=f"When to notify, repeatable or comma-separated: {', '.join(NOTIFY_EVENTS)} "
                      "[config [notify] when, else gate-failed,new-signatures]."),
]


def nightly_options(func: Any) -> Any:
    """Decorate `run` with the nightly flags."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def apply_nightly_flags(config: Config, out: str | None,
                        flags: dict[str, Any]) -> tuple[Config, str | None, dict[str, Any]]:
    """Lay the nightly flags over `config` (popping them from `flags`).

    Returns the config, the run directory (`--resume RUN_DIR` is the run directory) and
    the keyword arguments for console.execute (junit, resume).
    """
    fail_on = flags.pop("fail_on", ()) or ()
    history, no_history = flags.pop("history_path", None), flags.pop("no_history", False)
    junit, resume = flags.pop("junit", None), flags.pop("resume", None)
    if fail_on:
        parse_conditions(fail_on)  # a bad condition is a usage error before any replay
        config = replace(config, gate=replace(config.gate, fail_on=tuple(fail_on)))
    if history or no_history:
        config = replace(config, history=replace(
            config.history, path=history or config.history.path, enabled=not no_history))
    config = _notify_flags(config, flags.pop("notify", ()) or (),
                           flags.pop("notify_when", ()) or ())
    if resume:
        if out and Path(out).resolve() != Path(resume).resolve():
            raise click.UsageError(f"--resume {resume} continues that run in its own "
                                   f"directory; drop --out {out}")
        out = resume
    return config, out, {"junit": Path(junit) if junit else None, "resume": bool(resume)}


def _notify_flags(config: Config, urls: tuple[str, ...], when: tuple[str, ...]) -> Config:
    """`[notify]` with --notify and --notify-when laid over it, checked before any replay
    (a typo in a webhook URL is exit 2 now, not a lost message after an hour)."""
    if not urls and not when:
        return config
    events = tuple(e.strip() for w in when for e in w.split(",") if e.strip())
    notify = replace(config.notify, urls=tuple(urls) or config.notify.urls,
                     when=events or config.notify.when)
    if not notify.urls:
        raise click.UsageError("--notify-when needs a target: --notify URL|mailto:ADDR or "
                               "[notify] urls")
    return replace(config, notify=check_notify(notify))


def notification_lines(section: dict[str, Any] | None, *, quiet: bool = False) -> list[str]:
    """What the notifications did, for the terminal: a failed delivery always (a warning,
    even with --quiet: cron mails it), the rest unless `quiet`."""
    if section is None:
        return []
    if not section["events"]:
        return [] if quiet else [f"notify: not sent (no event of {', '.join(section['when'])})"]
    lines = []
    for d in section["deliveries"]:
        tries = f"{d['attempts']} attempt{'s' * (d['attempts'] != 1)}"
        if d["ok"]:
            if not quiet:
                lines.append(f"notify: sent to {d['target']} ({', '.join(section['events'])}; "
                             f"{tries})")
        else:
            lines.append(f"shadowdiff: warning: notification to {d['target']} failed after "
                         f"{tries}: {d['error']} (the exit code is still the gate's; "
                         "summary.json: notifications)")
    return lines
