"""The `[targets]`, `[replay]`, `[rank]` and `[report]` sections, and the checks that the
command line's flags go through too (`check_targets`, `check_replay`, `check_window`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from shadowdiff.tables import check_keys, simple_table, str_list, typed
from shadowdiff.errors import ConfigError
from shadowdiff.rank.options import RankConfig
from shadowdiff.redact import ReportConfig
from shadowdiff.replay.breaker import BreakerConfig, check_breaker, parse_threshold
from shadowdiff.replay.options import CLIENTS, HTTP2_MODES, ReplayConfig, Targets


def parse_targets(table: Any, src: str) -> Targets:
    check_keys(table, {"old", "new", "old_replica", "replay_old_twice"}, "targets.", src)
    values = {k: typed(table, k, str, "targets.", src, None) for k in table
              if k != "replay_old_twice"}
    twice = typed(table, "replay_old_twice", bool, "targets.", src, False)
    return check_targets(Targets(**values, replay_old_twice=twice), src)


def check_targets(targets: Targets, src: str = "<flags>") -> Targets:
    """A replica and replaying old twice are two ways to measure the same noise: one only."""
    if targets.old_replica and targets.replay_old_twice:
        raise ConfigError("give either an old replica or replay_old_twice, not both",
                          path=src, key="targets.replay_old_twice")
    return targets


def parse_replay(table: Any, src: str) -> ReplayConfig:
    p = "replay."
    check_keys(table, {"concurrency", "rate", "timeout_s", "methods", "host_header", "headers",
                        "max_body_bytes", "client", "smtp_deliver", "http2"}, p, src)
    base = ReplayConfig()
    headers = typed(table, "headers", dict, p, src, {})
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError("header values must be strings", path=src, key=p + "headers")
    cfg = replace(
        base,
        concurrency=typed(table, "concurrency", int, p, src, base.concurrency),
        rate=float(typed(table, "rate", (int, float), p, src, base.rate)),
        timeout_s=float(typed(table, "timeout_s", (int, float), p, src, base.timeout_s)),
        methods=tuple(m.upper() for m in str_list(table, "methods", p, src)) or base.methods,
        host_header=typed(table, "host_header", str, p, src, base.host_header),
        headers=tuple(headers.items()),
        max_body_bytes=typed(table, "max_body_bytes", int, p, src, base.max_body_bytes),
        client=typed(table, "client", str, p, src, base.client),
        smtp_deliver=typed(table, "smtp_deliver", bool, p, src, base.smtp_deliver),
        http2=typed(table, "http2", str, p, src, base.http2),
    )
    return check_replay(cfg, src)


def parse_breaker(table: Any, src: str) -> BreakerConfig:
    """The `[breaker]` table (replay/breaker.py); `threshold` is "50%", 0.5, "off" or false."""
    p, base = "breaker.", BreakerConfig()
    check_keys(table, set(BreakerConfig.__dataclass_fields__), p, src)
    raw = typed(table, "threshold", (str, int, float, bool), p, src, None)
    threshold = base.threshold
    if raw is False:
        threshold = None
    elif raw is not None:
        try:
            threshold = parse_threshold(str(raw))
        except ValueError as exc:
            raise ConfigError(str(exc), path=src, key=p + "threshold") from exc
    statuses = typed(table, "statuses", list, p, src, list(base.statuses))
    if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in statuses):
        raise ConfigError("must be a list of statuses (HTTP numbers, DNS rcode names)",
                          path=src, key=p + "statuses")
    number = (int, float)
    cfg = BreakerConfig(
        threshold=threshold,
        window=typed(table, "window", int, p, src, base.window),
        min_requests=typed(table, "min_requests", int, p, src, base.min_requests),
        backoff_s=float(typed(table, "backoff_s", number, p, src, base.backoff_s)),
        max_backoff_s=float(typed(table, "max_backoff_s", number, p, src, base.max_backoff_s)),
        give_up_s=float(typed(table, "give_up_s", number, p, src, base.give_up_s)),
        statuses=tuple(v.upper() if isinstance(v, str) else v for v in statuses),
        kinds=str_list(table, "kinds", p, src) if "kinds" in table else base.kinds)
    problem = check_breaker(cfg)
    if problem:
        key, _, message = problem.partition(": ")
        raise ConfigError(message, path=src, key=p + key)
    return cfg


def check_replay(cfg: ReplayConfig, src: str = "<flags>") -> ReplayConfig:
    """Reject values that cannot work (used for the file and for flags)."""
    if cfg.concurrency < 1:
        raise ConfigError("must be at least 1", path=src, key="replay.concurrency")
    if cfg.rate < 0:
        raise ConfigError("must be 0 (unlimited) or positive", path=src, key="replay.rate")
    if cfg.timeout_s <= 0:
        raise ConfigError("must be positive", path=src, key="replay.timeout_s")
    if cfg.client not in CLIENTS:
        raise ConfigError(f"must be one of {', '.join(CLIENTS)}", path=src, key="replay.client")
    if cfg.http2 not in HTTP2_MODES:
        raise ConfigError(f"must be one of {', '.join(HTTP2_MODES)}", path=src, key="replay.http2")
    if cfg.max_body_bytes < 1:
        raise ConfigError("must be positive", path=src, key="replay.max_body_bytes")
    problem = check_breaker(cfg.breaker)
    if problem:
        key, _, message = problem.partition(": ")
        raise ConfigError(message, path=src, key="breaker." + key)
    return cfg


def parse_rank(table: Any, src: str) -> RankConfig:
    from shadowdiff.rank.severity import severity_weights  # checks names and values

    table = dict(table) if isinstance(table, dict) else table
    weights = table.pop("severity_weights", {}) if isinstance(table, dict) else {}
    window = {k: table.pop(k) for k in ("window_days", "half_life_days")
              if isinstance(table, dict) and k in table}
    base = check_window(replace(simple_table(RankConfig, table, "rank", src), **window), src)
    if not isinstance(weights, dict):
        raise ConfigError("must be a table of kind = weight", path=src, key="rank.severity_weights")
    try:
        severity_weights(weights)
    except ValueError as exc:
        raise ConfigError(str(exc), path=src, key="rank.severity_weights") from exc
    return replace(base, severity_weights=tuple((k, float(v)) for k, v in weights.items()))


def check_window(cfg: RankConfig, src: str = "<flags>") -> RankConfig:
    """A usage window is a positive, finite number of days (file and flags alike)."""
    for key in ("window_days", "half_life_days"):
        value = getattr(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number of days, not {type(value).__name__}",
                              path=src, key=f"rank.{key}")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"must be a positive number of days, not {value!r}",
                              path=src, key=f"rank.{key}")
    if cfg.half_life_days is not None and cfg.window_days is None:
        raise ConfigError("a half-life weighs days inside a window: set window_days too",
                          path=src, key="rank.half_life_days")
    return replace(cfg, **{k: float(getattr(cfg, k)) for k in ("window_days", "half_life_days")
                           if getattr(cfg, k) is not None})


def parse_report(table: Any, src: str) -> ReportConfig:
    p = "report."
    check_keys(table, {"show_secrets", "secret_headers", "max_body_chars"}, p, src)
    base = ReportConfig()
    extra = tuple(h.lower() for h in str_list(table, "secret_headers", p, src))
    return ReportConfig(
        show_secrets=typed(table, "show_secrets", bool, p, src, False),
        secret_headers=base.secret_headers + tuple(h for h in extra if h not in base.secret_headers),
        max_body_chars=typed(table, "max_body_chars", int, p, src, base.max_body_chars),
    )
