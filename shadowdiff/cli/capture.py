"""`shadowdiff capture ...` and `shadowdiff usage ...`: importers and log tables on the command line."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import click

from shadowdiff.errors import EXIT_INPUT
from shadowdiff.errors import CaptureError, ShadowdiffError
from shadowdiff.model import Exchange

_FORMATS = {"har": "har", "pcap": "pcap", "mitm": "mitm", "maillog": "maillog", "dnslog": "dnslog",
            "log": "log"}


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date/time (2026-11-25T03:00:00+00:00)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


_FILTER_OPTIONS = [
    click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                 help="Capture file to write (.jsonl, or .jsonl.gz to compress)."),
    click.option("--method", "methods", multiple=True, help="Keep only these methods (repeatable)."),
    click.option("--host", "hosts", multiple=True, help="Keep only these Host values (repeatable)."),
    click.option("--path-regex", help="Keep only requests whose path (without the query) matches this regex."),
    click.option("--since", help="Keep exchanges seen at or after this ISO time."),
    click.option("--until", help="Keep exchanges seen before this ISO time."),
    click.option("--sample", type=click.FloatRange(0, 1, min_open=True),
                 help="Keep this fraction, chosen by request so reruns keep the same ones."),
    click.option("--dedupe", is_flag=True, help="Merge identical requests, keeping their count for ranking."),
]

SECRET_OPTIONS = [  # capture, collect and mirror: where secrets are first stored
    click.option("--keep-secrets", is_flag=True,
                 help="Store Authorization, cookies, tokens and passwords as captured; by default "
                 "they are replaced by a keyed hash (docs/security.md)."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="TOML",
                 help="shadowdiff.toml: its [redact] section says what is a secret."),
]


def redactor_for(config_path: str | None, keep_secrets: bool) -> Any:
    """The capture-time Redactor of `[redact]` (in --config), or keeping all with the flag."""
    from shadowdiff.config import load_config
    from shadowdiff.scrub import Redactor
    return Redactor(load_config(config_path).redact.keeping(keep_secrets))


def _filter(methods: tuple[str, ...], hosts: tuple[str, ...], path_regex: str | None,
            since: str | None, until: str | None, sample: float | None, dedupe: bool) -> Any:
    from shadowdiff.capture.filters import Filter
    try:
        return Filter.build(methods=methods, hosts=hosts, path_regex=path_regex,
                            since=_parse_time(since), until=_parse_time(until), sample=sample,
                            dedupe=dedupe)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--path-regex") from exc


@click.group()
def capture() -> None:
    """Turn traffic recorded by other tools into a shadowdiff capture file."""


def _import(fmt: str, inputs: tuple[str, ...], output: str, flt: Any,
            extra: dict[str, Any], quiet: bool = False, redactor: Any = None) -> None:
    from shadowdiff.capture import read_exchanges
    from shadowdiff.capture.filters import apply_filters
    from shadowdiff.capture.jsonl import CaptureWriter
    from shadowdiff.scrub import KEEP_SECRETS

    stats: dict[str, Any] = {}
    error: ShadowdiffError | None = None

    def stream() -> Iterator[Exchange]:
        nonlocal error
        for path in inputs:
            try:
                # the writer redacts (once, and records it in the header), not the reader
                yield from read_exchanges(path, fmt=fmt, stats=stats, secrets=KEEP_SECRETS,
                                          **extra)
            except CaptureError as exc:
                error = exc  # keep what was read before the bad spot
                return

    from rich.console import Console

    from shadowdiff.cli.progress import import_progress

    writer = CaptureWriter(output, source=f"{fmt}:{','.join(inputs)}", redactor=redactor)
    with import_progress(Console(stderr=True), f"importing {fmt}", not quiet) as count:
        writer.write_all(count(apply_filters(stream(), flt, stats)))
    if error is not None:
        stats["error"] = str(error)
    writer.stats.update(stats)
    writer.close()
    counts = ", ".join(f"{k} {v}" for k, v in stats.items() if isinstance(v, (int, float)))
    click.echo(f"wrote {writer.written} exchanges to {output}" + (f" ({counts})" if counts else ""))
    if error is not None:
        click.echo(f"shadowdiff: error: {error} (the exchanges read before it were written)", err=True)
        sys.exit(EXIT_INPUT)


def _make_capture_command(fmt: str, help_text: str, *, ports: bool = False) -> None:
    def command(inputs: tuple[str, ...], output: str, port: tuple[int, ...] = (),
                quiet: bool = False, dns_port: tuple[int, ...] = (), keep_secrets: bool = False,
                config_path: str | None = None, **filters: Any) -> None:
        extra = {"ports": set(port) or None, "dns_ports": set(dns_port)} if ports else {}
        _import(fmt, inputs, output, _filter(**filters), extra, quiet,
                redactor_for(config_path, keep_secrets))

    command.__doc__ = help_text
    for option in reversed(_FILTER_OPTIONS + SECRET_OPTIONS):
        command = option(command)
    command = click.option("--quiet", "-q", is_flag=True, help="No progress display.")(command)
    if ports:
        command = click.option("--port", multiple=True, type=int,
                               help="Server port(s) to import; each connection is HTTP or SMTP, by port "
                                    "(25, 587: SMTP) and by content [every port].")(command)
        command = click.option("--dns-port", multiple=True, type=int,
                               help="More server ports that carry DNS over UDP and TCP, beside 53 "
                                    "(queries are also found by content on any port).")(command)
    command = click.argument("inputs", nargs=-1, required=True,
                             type=click.Path(exists=True, dir_okay=False))(command)
    capture.command(fmt)(command)


_make_capture_command("har", "Import HAR 1.2 files (browser dev tools, proxies).")
_make_capture_command("pcap", "Import pcap/pcapng files: TCP reassembly, HTTP/1.x and SMTP sessions.", ports=True)
_make_capture_command("mitm", "Import mitmproxy flow files (mitmdump -w).")
_make_capture_command("maillog", "Synthesize SMTP sessions from Postfix maillogs and Exim mainlogs "
                                 "(one per logged message; no content, so DATA carries a stand-in).")
_make_capture_command("dnslog", "Queries from DNS query logs (BIND, Unbound, Knot, dnsmasq) or "
                                "`name type` lists, rebuilt as a stub resolver sends them.")
_make_capture_command("log", "Turn access logs into replayable GET/HEAD requests (logs carry no bodies).")


@click.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("--top", default=25, show_default=True, help="How many endpoints to show.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="TOML",
              help="shadowdiff.toml: its [routes] name the endpoints.")
@click.option("--openapi", type=click.Path(exists=True, dir_okay=False), metavar="SPEC",
              help="OpenAPI 3 document whose paths name the endpoints.")
@click.option("--route", "routes", multiple=True, help="An endpoint template (repeatable).")
@click.option("--suggest", is_flag=True,
              help="Also print the smallest capture that covers --target-share of the traffic.")
@click.option("--target-share", type=click.FloatRange(0, 1, min_open=True), default=0.99,
              show_default=True, help="Share of production traffic the suggestion covers.")
def usage(logs: tuple[str, ...], top: int, config_path: str | None, openapi: str | None,
          routes: tuple[str, ...], suggest: bool, target_share: float) -> None:
    """Production endpoint table from access logs alone (files, globs, .gz, rotated)."""
    from rich.console import Console

    from shadowdiff.config import load_config
    from shadowdiff.rank.coverage import render_suggestion, suggest_sample
    from shadowdiff.rank.routing import build_templater
    from shadowdiff.rank.usage import read_usage, render_usage_table

    config = load_config(config_path)
    base = Path(config_path).parent if config_path else None
    templater = build_templater(config.routes, base_dir=base, openapi=openapi, extra_routes=routes)
    table = read_usage(list(logs), endpoint=templater)
    console = Console()
    console.print(render_usage_table(table, top=top))
    if suggest:
        counts = table.requests_by_endpoint()
        rows = suggest_sample(counts, target_share)
        console.print(render_suggestion(rows, target_share=target_share, usage_counts=counts))
