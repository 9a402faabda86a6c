"""Command line: parses, calls the pipeline, prints. No logic of its own.

Exit codes (contract): 0 no significant divergence, 1 significant divergences,
2 usage, config or input error (the message names the file and position).
"""

from __future__ import annotations

import gc
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from shadowdiff import __version__
from shadowdiff.cli import capture as cli_capture
from shadowdiff.cli import history as cli_history
from shadowdiff.cli import live as cli_live
from shadowdiff.cli import load as cli_load
from shadowdiff.cli import rules as cli_rules
from shadowdiff.cli.nightly import apply_nightly_flags, nightly_options
from shadowdiff.config import Config, load_config
from shadowdiff.config.sections import check_replay, check_targets, check_window
from shadowdiff.cli.tls import TLS_OPTIONS
from shadowdiff.config.tls import tls_flags
from shadowdiff.replay.options import Targets
from shadowdiff.errors import EXIT_INPUT, ShadowdiffError
from shadowdiff.pipeline.local import auto_workers, start_forkserver


class _Group(click.Group):
    """Turns every ShadowdiffError into one clean line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShadowdiffError as exc:
            click.echo(f"shadowdiff: error: {exc}", err=True)
            ctx.exit(EXIT_INPUT)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="shadowdiff")
def main() -> None:
    """Replay captured traffic to the old and the new system; rank what differs."""


def entry() -> None:
    """The `shadowdiff` command (the console script, `python -m shadowdiff`): main(), then
    an exit that skips the teardown's last garbage collection.

    Why: by then the command has written and closed its files (the suite turns an unclosed
    one into an error), and that collection walks the whole heap once more (pandas,
    matplotlib, Dask): 0.2-0.3 s of every run, measured on a 1-exchange `run`. Frozen
    objects are still freed, as usual, when their last reference goes. Tests call `main`,
    which leaves their process's collector alone."""
    try:
        main()
    finally:
        gc.freeze()


def _parse_header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
    return name.strip(), val.strip()


def build_config(config_path: str | None, **flags: Any) -> Config:
    """The config file, with command-line flags laid over it."""
    config = load_config(config_path)
    t = config.targets
    targets = check_targets(Targets(
        old=flags.get("old") or t.old, new=flags.get("new") or t.new,
        old_replica=flags.get("old_replica") or t.old_replica,
        replay_old_twice=bool(flags.get("replay_old_twice")) or t.replay_old_twice))
    r = config.replay
    methods = flags.get("methods")
    replay_cfg = check_replay(replace(
        tls_flags(r, flags),
        concurrency=flags.get("concurrency") or r.concurrency,
        rate=flags["rate"] if flags.get("rate") is not None else r.rate,
        timeout_s=flags.get("timeout") or r.timeout_s,
        methods=tuple(m.strip().upper() for m in methods.split(",") if m.strip()) if methods else r.methods,
        host_header=flags.get("host_header") or r.host_header,
        headers=r.headers + tuple(_parse_header(h) for h in flags.get("header") or ()),
        max_body_bytes=flags.get("max_body_bytes") or r.max_body_bytes,
        client=flags.get("client") or r.client,
        smtp_deliver=bool(flags.get("smtp_deliver")) or r.smtp_deliver,
        dns=_dns_flags(r.dns, flags.get("dns_allow") or ()),
        breaker=_breaker_flag(r.breaker, flags.get("breaker")),
    ))
    report_cfg = replace(config.report, show_secrets=True) if flags.get("show_secrets") else config.report
    rank_cfg = config.rank
    if flags.get("window_days") is not None:
        rank_cfg = check_window(replace(rank_cfg, window_days=flags["window_days"]))
    redact_cfg = replace(config.redact, keep_secrets=True) if flags.get("keep_secrets") else config.redact
    return replace(config, targets=targets, replay=replay_cfg, report=report_cfg, rank=rank_cfg,
                   redact=redact_cfg)


def _breaker_flag(base: Any, value: str | None) -> Any:
    """`[breaker] threshold` with `--breaker 50%|off` laid over it."""
    if value is None:
        return base
    from shadowdiff.replay.breaker import parse_threshold
    try:
        return replace(base, threshold=parse_threshold(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--breaker") from exc


def _dns_flags(base: Any, allow: tuple[str, ...]) -> Any:
    """`[dns]` with `--dns-allow` added (ConfigError, exit 2, for an unknown opt-in)."""
    from shadowdiff.protocols.dns.config import allowed
    return replace(base, allow=tuple(dict.fromkeys(base.allow + allowed(allow)))) if allow else base


_RUN_OPTIONS = [
    click.option("--old", metavar="URL", help="The system in production now."),
    click.option("--new", metavar="URL", help="The system that will replace it."),
    click.option("--old-replica", metavar="URL",
                 help="A second instance of old, to measure noise (differences old has with itself)."),
    click.option("--replay-old-twice", is_flag=True,
                 help="No replica? Send every request to old twice and measure noise from that."),
    click.option("--openapi", type=click.Path(exists=True, dir_okay=False), metavar="SPEC",
                 help="OpenAPI 3 document: its paths name the endpoints (docs/endpoints.md)."),
    click.option("--route", "routes", multiple=True, metavar="'GET /users/{id}'",
                 help="An endpoint template to match before inference (repeatable)."),
    click.option("--usage", "usage_logs", multiple=True, metavar="LOG",
                 help="Production access log(s) (nginx/Apache combined, JSON), or Exim/Postfix "
                 "mail logs for SMTP: rank by real usage."),
    click.option("--window-days", type=click.FloatRange(min=0, min_open=True), metavar="N",
                 help="Rank by the last N days of --usage logs only (ending at their latest "
                 "day) [all; config: rank.window_days]."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="TOML",
                 help="shadowdiff.toml (docs/configuration.md)."),
    click.option("--out", type=click.Path(file_okay=False), help="Run directory [reports/run-<time>]."),
    click.option("--concurrency", type=click.IntRange(min=1), help="Exchanges in flight [32]."),
    click.option("--rate", type=click.FloatRange(min=0), help="Exchanges per second, 0 = unlimited [0]."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Per-request timeout, seconds [10]."),
    click.option("--methods", help="Methods to replay, comma-separated [GET,HEAD,OPTIONS]. "
                 "Others are skipped and counted: replaying POST can change data."),
    click.option("--host-header", help="'original' (as captured), 'target', or a literal host [original]."),
    click.option("--header", multiple=True, metavar="'NAME: VALUE'",
                 help="Set a header on every replayed request (e.g. a staging token)."),
    click.option("--max-body-bytes", type=click.IntRange(min=1), help="Larger bodies are a too_large failure [10 MiB]."),
    click.option("--client", type=click.Choice(["fast", "aiohttp"]),
                 help="HTTP client: llhttp on bare asyncio (fast) or aiohttp [fast]."),
    *TLS_OPTIONS,
    click.option("--smtp-deliver", is_flag=True,
                 help="The SMTP targets are sinks: send DATA and the message (default: RSET before DATA)."),
    click.option("--dns-allow", multiple=True, metavar="axfr",
                 help="DNS: also send zone transfers (AXFR, IXFR); UPDATE and NOTIFY never go."),
    click.option("--breaker", metavar="50%|off",
                 help="Circuit breaker per target: when this share of a target's recent requests "
                 "fail (timeout, refused, reset, 429/502/503/504), replay pauses and probes with "
                 "backoff; after [breaker] give_up_s open the rest is not tried (counted, never "
                 "judged) [config [breaker] threshold, else 50%]."),
    click.option("--show-secrets", is_flag=True, help="Show Authorization, Cookie and similar values in reports."),
    click.option("--keep-secrets", is_flag=True,
                 help="Replay credentials, cookies and tokens as read; by default they are replaced by "
                 "a keyed hash as the captures are read, so give real ones with --header or [auth] "
                 "(docs/security.md)."),
    click.option("--quiet", "-q", is_flag=True, help="No progress line and no table (for cron)."),
    click.option("--workers", default="auto", metavar="N|auto",
                 help="Judge the capture in partitions on N worker processes (Dask LocalCluster); "
                 "auto: every core for captures of 50,000+ exchanges, else 1 [auto] (docs/scale.md)."),
    click.option("--scheduler", metavar="tcp://HOST:8786",
                 help="Run the partitions on this existing Dask cluster (docs/scale.md)."),
]


def run_options(func: Any) -> Any:
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@run_options
@nightly_options
def run(captures: tuple[str, ...], usage_logs: tuple[str, ...], config_path: str | None,
        out: str | None, quiet: bool, **flags: Any) -> None:
    """Replay CAPTURE files (shadowdiff, HAR, pcap, mitmproxy flows, access logs) to old and new."""
    config = build_config(config_path, **flags)
    config, out, nightly = apply_nightly_flags(config, out, flags)
    workers, scheduler = _workers(flags.pop("workers", "auto"), captures), flags.pop("scheduler", None)
    if workers > 1 and scheduler is None and not nightly.get("resume"):
        start_forkserver()  # its imports now run beside this process's next ones, not after
    from shadowdiff.cli.console import execute
    code = execute(captures, config, out_dir=out, usage_logs=usage_logs, quiet=quiet,
                   openapi=flags.pop("openapi", None), routes=flags.pop("routes", ()),
                   workers=workers, scheduler=scheduler, **nightly)
    sys.exit(code)


def _workers(value: str, captures: tuple[str, ...]) -> int:
    if value == "auto":
        from shadowdiff.cli.progress import capture_total
        return auto_workers(capture_total(captures))
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is not a number of workers or 'auto'",
                                 param_hint="--workers")
    return int(value)


@main.command()
@click.option("--out", type=click.Path(file_okay=False),
              help="Where the demo writes its report [reports/demo, reports/demo-smtp, reports/demo-dns].")
@click.option("--smtp", is_flag=True,
              help="The mail demo: two aiosmtpd MTAs, a mail capture, a Postfix maillog.")
@click.option("--dns", is_flag=True,
              help="The DNS demo: two dnspython name servers, a query list, a BIND query log.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line and no table.")
def demo(out: str | None, smtp: bool, dns: bool, quiet: bool) -> None:
    """Run the whole pipeline on bundled old and new demo services (exits 0 when it worked)."""
    from shadowdiff.cli.demo import run_demo, run_dns_demo, run_smtp_demo
    if dns:
        sys.exit(run_dns_demo(Path(out or "reports/demo-dns"), quiet=quiet))
    if smtp:
        sys.exit(run_smtp_demo(Path(out or "reports/demo-smtp"), quiet=quiet))
    sys.exit(run_demo(Path(out or "reports/demo"), quiet=quiet))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir: str) -> None:
    """Re-render report.md and report.html of a finished run from its summary.json."""
    from shadowdiff.cli.console import rerender
    for path in rerender(Path(run_dir)).values():
        click.echo(str(path))


# Each command group lives in its own module; they are attached here, so that none of them
# imports this module back.
for _command in (cli_capture.capture, cli_capture.usage, cli_rules.rules, cli_live.mirror,
                 cli_live.collect, cli_history.history_cmd, cli_history.accept,
                 cli_history.unaccept, cli_load.load):
    main.add_command(_command)

if __name__ == "__main__":
    main()
