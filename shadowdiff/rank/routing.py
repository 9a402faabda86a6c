"""Routing: one endpoint function for the capture and the logs, from config, OpenAPI and logs.

The endpoint template is what ranking joins on, so it must be the same function on both
sides. This module builds it once per run: user routes and OpenAPI routes first, then id
positions learned from the logs' cardinality, then inference (docs/endpoints.md). Routes
are HTTP paths, so only the HTTP plugin's endpoint key is replaced; other protocols keep
their own.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowdiff.protocols.http.routes import Route, RouteTable, load_openapi
from shadowdiff.protocols.http.templater import Templater
from shadowdiff.errors import ConfigError
from shadowdiff.tables import check_keys
from shadowdiff.model import Request
from shadowdiff.protocols.smtp.maillog import MailUsage, is_mail_log, read_mail_usage
from shadowdiff.rank.traffic import Usage


ROUTES_KEYS = {"paths", "openapi", "openapi_base_path", "id_after", "learn_ids",
               "learn_threshold"}


@dataclass(frozen=True)
class RoutesConfig:
    """`[routes]`: how requests map to endpoint templates."""

    paths: tuple[str, ...] = ()
    """User routes, `GET /users/{id}` or `/files/{path*}` (any method)."""
    openapi: str | None = None
    """An OpenAPI 3 (or Swagger 2) document whose paths become routes."""
    openapi_base_path: str | None = None
    """Overrides the document's servers' base path."""
    id_after: tuple[str, ...] = ()
    """Prefixes whose next segment is an id, e.g. `/products` for slugs."""
    learn_ids: bool = True
    """Learn such prefixes from the production logs' cardinality."""
    learn_threshold: int = 50
    """Distinct values under one parent that make a segment an id."""


def parse_routes(table: Any, src: str) -> RoutesConfig:
    """`[routes]` from TOML, checked; errors name the file and key."""
    check_keys(table, ROUTES_KEYS, "routes.", src)
    cfg = RoutesConfig(**table)
    for name, kind in (("paths", tuple), ("id_after", tuple), ("learn_ids", bool),
                       ("learn_threshold", int)):
        value = getattr(cfg, name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(cfg, name, value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"must be {'a list of strings' if kind is tuple else kind.__name__}",
                              path=src, key=f"routes.{name}")
    for i, spec in enumerate(cfg.paths):
        try:
            Route.parse(spec, source=src)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad route {spec!r}: {exc}", path=src, key=f"routes.paths[{i}]") from exc
    if cfg.openapi is not None and not isinstance(cfg.openapi, str):
        raise ConfigError("must be a file path", path=src, key="routes.openapi")
    return cfg


def build_templater(cfg: RoutesConfig, *, base_dir: Path | None = None,
                    openapi: str | None = None, extra_routes: Sequence[str] = ()) -> Templater:
    """Routes from the config (and flags), OpenAPI routes, configured id positions."""
    table = RouteTable([*cfg.paths, *extra_routes])
    spec = openapi or cfg.openapi
    if spec:
        path = Path(spec)
        if not path.is_absolute() and base_dir is not None and not openapi:
            path = base_dir / path  # a config's relative path is relative to the config
        table = table + load_openapi(path, base_path=cfg.openapi_base_path)
    return Templater(table, frozenset(cfg.id_after))


def usage_from_logs(paths: Sequence[str], templater: Templater, cfg: RoutesConfig, *,
                    window_days: float | None = None,
                    half_life_days: float | None = None,
                    executor: Any = None, workers: int = 2) -> tuple[Usage | None, Templater]:
    """Production usage per endpoint, and the templater refined by what the logs show.

    With `window_days`, counts are the logs' last N days (`severity.weight_recent`). Ids
    are learned from the whole log first (more distinct values, surer evidence), then the
    day buckets are re-templated like the totals, so windowed counts join the capture too.
    Mail logs keep whole-log counts (they have no day buckets); the usage then says so.
    `executor` and `workers`: where and how many access-log blocks are counted at once
    (read_usage; a run on Dask passes its engine).
    """
    if not paths:
        return None, templater
    from shadowdiff.rank.usage import read_usage

    mail = mail_usage(paths)
    if mail is not None:
        return mail, templater
    table = read_usage(list(paths), endpoint=templater, executor=executor, workers=workers)
    counts = table.requests_by_endpoint()
    buckets = table.by_day
    if cfg.learn_ids:
        templater = templater.learn(counts, threshold=cfg.learn_threshold)
        counts = templater.refine(counts)
        buckets = refine_buckets(templater, buckets)
    notes = [f"{table.malformed} malformed log lines skipped (first: {table.malformed_example})"
             if table.malformed else "", *table.problems]
    if templater.id_slots:
        notes.append("id positions learned from the logs: " + ", ".join(sorted(templater.id_slots)))
    if window_days is not None:
        counts, said = windowed_counts(buckets, window_days, half_life_days, table.undated,
                                       tuple(table.files))
        notes.append(said)
    note = "; ".join(n for n in notes if n)
    return Usage(counts, "access_log", tuple(table.files), table.malformed, note,
                 window_days=window_days,
                 half_life_days=half_life_days if window_days is not None else None), templater


def refine_buckets(templater: Templater, buckets: Mapping[tuple[str, float], int]
                   ) -> dict[tuple[str, float], int]:
    """Per-day counts re-templated by a refined templater, as `Templater.refine` does totals."""
    names: dict[str, str] = {}
    out: Counter[tuple[str, float]] = Counter()
    for (endpoint, day), n in buckets.items():
        if endpoint not in names:
            names[endpoint] = next(iter(templater.refine({endpoint: 0})))
        out[(names[endpoint], day)] += n
    return dict(out)


def windowed_counts(buckets: Mapping[tuple[str, float], int], window_days: float,
                    half_life_days: float | None, undated: int, files: tuple[str, ...]
                    ) -> tuple[dict[str, int], str]:
    """Requests per endpoint in the last `window_days` of the logs, and a sentence on it.

    Weighted counts are rounded to whole requests, because every figure downstream (the
    report, the capture suggestion) counts requests; an endpoint rounded to 0 drops out.
    """
    from shadowdiff.rank.severity import weight_recent

    if not buckets:
        raise ConfigError(f"a usage window (rank.window_days = {window_days:g}) needs logs "
                          f"with a time field; none was parsed in {', '.join(files)}",
                          key="rank.window_days")
    weighted = weight_recent(buckets, window_days, half_life_days=half_life_days)
    counts = {e: round(n) for e, n in weighted.items() if round(n) > 0}
    last = max(day for _, day in buckets)
    first = last - (math.ceil(window_days) - 1) * 86_400
    said = (f"usage window: the last {window_days:g} days of the logs "
            f"({_day(first)} to {_day(last)} UTC)")
    if half_life_days:
        said += f", a day {half_life_days:g} days older counting half"
    if undated:
        said += f"; {undated:,} requests without a parsable time left out"
    return counts, said


def _day(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d")


def mail_usage(paths: Sequence[str]) -> Usage | None:
    """Usage from Exim/Postfix logs when the files are mail logs (by content), else None.

    Mail logs count SMTP endpoints the way the SMTP plugin names them, so routes and
    learned ids (HTTP paths) do not apply. Mixed with access logs they are an error:
    one run ranks one protocol's endpoints.
    """
    mail = logs_of_kind(paths, is_mail_log, "mail logs")
    return usage_of_mail(read_mail_usage(mail)) if mail else None


def logs_of_kind(paths: Sequence[str], is_kind: Callable[[str], bool], what: str) -> list[str]:
    """The files (globs expanded) when every one is of the kind `is_kind` tells by content;
    [] when none is; an error when some are: one run ranks one protocol's endpoints."""
    from shadowdiff.rank.usage.sources import expand_paths

    files = expand_paths(list(paths))
    found = [f for f in files if is_kind(f)]
    if found and len(found) != len(files):
        other = next(f for f in files if f not in found)
        raise ConfigError(f"--usage mixes {what} ({found[0]}) and other logs ({other}): "
                          "give the logs of the protocol being replayed")
    return found


def usage_of_mail(mail: MailUsage) -> Usage:
    """Mail-log counts as the ranking takes them: source `mail_log`, the only mail-specific bit."""
    return Usage(dict(mail.counts), "mail_log", tuple(mail.files), 0, note=mail.note())


def endpoint_function(protocol_name: str, templater: Templater | None,
                      default: Callable[[Request], str]) -> Callable[[Request], str]:
    """The endpoint key for requests of `protocol_name`: the templater for HTTP, else the plugin's."""
    if templater is None or protocol_name != "http" or _trivial(templater):
        return default
    endpoint = templater.endpoint
    return lambda request: endpoint(request.method, request.target)


def _trivial(templater: Templater) -> bool:
    """Nothing configured or learned: the plugin's own key gives the same answer, faster."""
    from shadowdiff.protocols.http.endpoints import http_endpoint
    return not templater.routes.routes and not templater.id_slots and templater.infer is http_endpoint


def query_log_usage(paths: Sequence[str], zones: Sequence[str] = ()) -> Usage | None:
    """Usage from DNS query logs (BIND, Unbound, Knot, dnsmasq, name lists), or None when
    the files are not query logs."""
    from shadowdiff.protocols.dns.endpoints import dns_endpoint
    from shadowdiff.protocols.dns.logs import is_query_log, parse_line, query_lines

    logs = logs_of_kind(paths, is_query_log, "DNS query logs")
    if not logs:
        return None
    counts: Counter[str] = Counter()
    skipped = 0
    for path in logs:
        for _, line in query_lines(path):
            query = parse_line(line)
            if query is None:
                skipped += bool(line.strip())
                continue
            counts[dns_endpoint(query.qtype, query.name, zones)] += 1
    note = "DNS query logs: one count per logged query"
    return Usage(dict(counts), "query_log", tuple(logs), skipped, note=note)
