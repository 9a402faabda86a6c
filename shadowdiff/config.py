"""Configuration: one TOML file, read once into frozen dataclasses; flags override it.

Unknown keys are errors that name the key and the file, because a misspelt rule that is
silently ignored would hide (or invent) divergences. Documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from shadowdiff.config_nightly import GateConfig, HistoryConfig, parse_gate, parse_history
from shadowdiff.config_smtp import SmtpConfig, parse_smtp
from shadowdiff.protocols.dns.config import DnsConfig, parse_dns
from shadowdiff.errors import ConfigError
from shadowdiff.normalize import DEFAULT_HEADER_SETS, DEFAULT_IGNORE_HEADERS, Mask, Rules, Tolerance
from shadowdiff.paths import compile_path
from shadowdiff.rules.masks import MASK_NAME
from shadowdiff.routing import RoutesConfig, parse_routes
from shadowdiff.rules.presets import PRESETS

CLIENTS: tuple[str, ...] = ("fast", "aiohttp")
SAFE_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
SECRET_HEADERS: tuple[str, ...] = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token",
)


@dataclass(frozen=True)
class Targets:
    """Where to replay: URLs whose scheme picks the protocol."""

    old: str | None = None
    new: str | None = None
    old_replica: str | None = None
    replay_old_twice: bool = False
    """Without a replica: send every request to old twice, the second under `old_replica`."""

    @property
    def noise_source(self) -> str | None:
        """`old_replica`, `replay_old_twice`, or None when noise is not measured."""
        if self.old_replica:
            return "old_replica"
        return "replay_old_twice" if self.replay_old_twice and self.old else None


@dataclass(frozen=True)
class ReplayConfig:
    """How to replay."""

    concurrency: int = 32
    rate: float = 0.0                       # exchanges per second; 0 = unlimited
    timeout_s: float = 10.0
    methods: tuple[str, ...] = SAFE_METHODS
    host_header: str = "original"           # "original" | "target" | a literal host
    headers: tuple[tuple[str, str], ...] = ()   # set on every replayed request
    max_body_bytes: int = 10 * 1024 * 1024
    client: str = "fast"                     # "fast" | "aiohttp"
    smtp_deliver: bool = False              # SMTP targets are sinks: send DATA and the message
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    """The `[smtp]` section (config_smtp.py), here so every sender gets it with these options."""
    dns: DnsConfig = field(default_factory=DnsConfig)
    """The `[dns]` section (protocols/dns/config.py), likewise."""


@dataclass(frozen=True)
class EndpointRules:
    """Extra rules for the endpoints whose template matches `match`."""

    match: str
    rules: Rules


@dataclass(frozen=True)
class RankConfig:
    """Significance margins (noise) and the severity weighting of the ranking."""

    min_relative_pct: float = 20.0
    min_absolute_pct: float = 0.03
    severity: bool = True
    """Rank by score = impact x severity of the kind; False ranks by impact alone."""
    severity_weights: tuple[tuple[str, float], ...] = ()
    """Overrides of shadowdiff.severity.DEFAULT_WEIGHTS (docs/endpoints.md)."""
    window_days: float | None = None
    """Count only the logs' last N days (ending at their latest day): today's traffic mix,
    not last quarter's. None counts every logged request."""
    half_life_days: float | None = None
    """Within the window, a day this old counts half (needs `window_days`)."""


@dataclass(frozen=True)
class ReportConfig:
    """What reports may show."""

    show_secrets: bool = False
    secret_headers: tuple[str, ...] = SECRET_HEADERS
    max_body_chars: int = 20_000


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    targets: Targets = field(default_factory=Targets)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    rules: Rules = field(default_factory=Rules)
    endpoints: tuple[EndpointRules, ...] = ()
    rank: RankConfig = field(default_factory=RankConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    source: str | None = None

    def rules_for(self, endpoint: str) -> Rules:
        """The global rules merged with every matching per-endpoint section."""
        return _rules_for(self, endpoint)


@lru_cache(maxsize=4096)
def _rules_for(config: Config, endpoint: str) -> Rules:
    rules = config.rules
    for section in config.endpoints:
        if _endpoint_matches(section.match, endpoint):
            rules = merge_rules(rules, section.rules)
    return rules


def merge_rules(base: Rules, extra: Rules) -> Rules:
    """`base` plus `extra`: name sets are united, pattern lists appended."""
    values = {}
    for f in dataclasses.fields(Rules):
        a, b = getattr(base, f.name), getattr(extra, f.name)
        values[f.name] = a | b if isinstance(a, frozenset) else a + b
    return Rules(**values)


def _endpoint_matches(match: str, endpoint: str) -> bool:
    """`GET /users/{id}` matches exactly; `*` is a wildcard; a bare path matches any method."""
    if " " not in match:
        match = "* " + match
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", match))
    return re.fullmatch(regex, endpoint) is not None


# -- loading ------------------------------------------------------------------------------

_TOP_KEYS = {"targets", "replay", "normalize", "endpoint", "rank", "report", "routes", "gate",
             "history", "smtp", "dns"}


def load_config(path: str | Path | None) -> Config:
    """Read and check a TOML file; None gives the defaults.

    >>> load_config(None).replay.methods
    ('GET', 'HEAD', 'OPTIONS')
    """
    if path is None:
        return Config()
    src = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=src) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=src) from exc
    return config_from_dict(data, src)


def config_from_dict(data: dict[str, Any], src: str = "<config>") -> Config:
    """Build a Config from already-parsed TOML data."""
    _check_keys(data, _TOP_KEYS, "", src)
    endpoints = data.get("endpoint", [])
    if not isinstance(endpoints, list):
        raise ConfigError("must be an array of tables ([[endpoint]])", path=src, key="endpoint")
    return Config(
        targets=_targets(data.get("targets", {}), src),
        replay=replace(_replay(data.get("replay", {}), src),
                       smtp=parse_smtp(data.get("smtp", {}), src),
                       dns=parse_dns(data.get("dns", {}), src)),
        rules=_rules(data.get("normalize", {}), "normalize", src, defaults=True),
        endpoints=tuple(_endpoint(e, i, src) for i, e in enumerate(endpoints)),
        rank=_rank(data.get("rank", {}), src),
        report=_report(data.get("report", {}), src),
        routes=parse_routes(data.get("routes", {}), src),
        gate=parse_gate(data.get("gate", {}), src),
        history=parse_history(data.get("history", {}), src),
        source=src,
    )


def _check_keys(table: Any, allowed: set[str], prefix: str, src: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError("must be a table", path=src, key=prefix.rstrip(".") or "<root>")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(allowed))})",
                              path=src, key=prefix + key)


def _typed(table: dict[str, Any], key: str, types: type | tuple[type, ...], prefix: str,
           src: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: `concurrency = true` must not pass as 1
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ConfigError(f"must be {names}, not {type(value).__name__}", path=src, key=prefix + key)
    return value


def _str_list(table: dict[str, Any], key: str, prefix: str, src: str) -> tuple[str, ...]:
    value = _typed(table, key, list, prefix, src, [])
    if not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of strings", path=src, key=prefix + key)
    return tuple(value)


def _targets(table: Any, src: str) -> Targets:
    _check_keys(table, {"old", "new", "old_replica", "replay_old_twice"}, "targets.", src)
    values = {k: _typed(table, k, str, "targets.", src, None) for k in table
              if k != "replay_old_twice"}
    twice = _typed(table, "replay_old_twice", bool, "targets.", src, False)
    return check_targets(Targets(**values, replay_old_twice=twice), src)


def check_targets(targets: Targets, src: str = "<flags>") -> Targets:
    """A replica and replaying old twice are two ways to measure the same noise: one only."""
    if targets.old_replica and targets.replay_old_twice:
        raise ConfigError("give either an old replica or replay_old_twice, not both",
                          path=src, key="targets.replay_old_twice")
    return targets


def _replay(table: Any, src: str) -> ReplayConfig:
    p = "replay."
    _check_keys(table, {"concurrency", "rate", "timeout_s", "methods", "host_header", "headers",
                        "max_body_bytes", "client", "smtp_deliver"}, p, src)
    base = ReplayConfig()
    headers = _typed(table, "headers", dict, p, src, {})
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError("header values must be strings", path=src, key=p + "headers")
    cfg = replace(
        base,
        concurrency=_typed(table, "concurrency", int, p, src, base.concurrency),
        rate=float(_typed(table, "rate", (int, float), p, src, base.rate)),
        timeout_s=float(_typed(table, "timeout_s", (int, float), p, src, base.timeout_s)),
        methods=tuple(m.upper() for m in _str_list(table, "methods", p, src)) or base.methods,
        host_header=_typed(table, "host_header", str, p, src, base.host_header),
        headers=tuple(headers.items()),
        max_body_bytes=_typed(table, "max_body_bytes", int, p, src, base.max_body_bytes),
        client=_typed(table, "client", str, p, src, base.client),
        smtp_deliver=_typed(table, "smtp_deliver", bool, p, src, base.smtp_deliver),
    )
    return check_replay(cfg, src)


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
    if cfg.max_body_bytes < 1:
        raise ConfigError("must be positive", path=src, key="replay.max_body_bytes")
    return cfg


_PATH_LISTS = ("ignore_paths", "case_insensitive", "whitespace_insensitive", "html", "xml")
_RULE_KEYS = {"ignore_headers", "default_ignore_headers", "ignore_paths", "masks", "unordered",
              "tolerance", "header_sets", *_PATH_LISTS}


def _rules(table: Any, prefix: str, src: str, *, defaults: bool) -> Rules:
    p = prefix + "."
    _check_keys(table, _RULE_KEYS | ({"match"} if not defaults else set()), p, src)
    use_defaults = defaults and _typed(table, "default_ignore_headers", bool, p, src, True)
    headers = frozenset(h.lower() for h in _str_list(table, "ignore_headers", p, src))
    sets = frozenset(h.lower() for h in _str_list(table, "header_sets", p, src))
    paths = {key: _path_list(table, key, p, src) for key in _PATH_LISTS}
    unordered, keyed = _unordered(table, p, src)
    masks = _typed(table, "masks", list, p, src, [])
    tolerances = _typed(table, "tolerance", list, p, src, [])
    return Rules(
        ignore_headers=(DEFAULT_IGNORE_HEADERS if use_defaults else frozenset()) | headers,
        masks=tuple(_mask(m, f"{p}masks[{i}]", src) for i, m in enumerate(masks)),
        unordered=unordered, unordered_keys=keyed,
        tolerances=tuple(_tolerance(t, f"{p}tolerance[{i}]", src) for i, t in enumerate(tolerances)),
        header_sets=(DEFAULT_HEADER_SETS if defaults else frozenset()) | sets,
        **paths,
    )


def _path_list(table: dict[str, Any], key: str, prefix: str, src: str) -> tuple[str, ...]:
    patterns = _str_list(table, key, prefix, src)
    for pattern in patterns:
        _check_path(pattern, src, prefix + key)
    return patterns


def _unordered(table: dict[str, Any], prefix: str, src: str
               ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`unordered = ["body.tags", {path = "body.items", key = "id"}]`."""
    plain: list[str] = []
    keyed: list[tuple[str, str]] = []
    for i, item in enumerate(_typed(table, "unordered", list, prefix, src, [])):
        key = f"{prefix}unordered[{i}]"
        if isinstance(item, str):
            _check_path(item, src, key)
            plain.append(item)
            continue
        _check_keys(item, {"path", "key"}, key + ".", src)
        path, field_name = item.get("path"), item.get("key")
        if not isinstance(path, str) or not isinstance(field_name, str) or not field_name:
            raise ConfigError("needs a 'path' string and a 'key' field name, e.g. "
                              '{ path = "body.items", key = "id" }', path=src, key=key)
        _check_path(path, src, key + ".path")
        keyed.append((path, field_name))
    return tuple(plain), tuple(keyed)


def _check_path(pattern: str, src: str, key: str) -> None:
    try:
        compile_path(pattern)
    except ValueError as exc:
        raise ConfigError(f"bad path {pattern!r}: {exc}", path=src, key=key) from exc


def _mask(table: Any, key: str, src: str) -> Mask:
    """A mask table, or a preset's name (`"uuid"`): a table without a pattern names a preset."""
    if isinstance(table, str):
        table = {"name": table}
    _check_keys(table, {"name", "pattern", "paths"}, key + ".", src)
    pattern = _typed(table, "pattern", str, key + ".", src, None)
    name = _typed(table, "name", str, key + ".", src, None)
    if pattern is None and name is None:
        raise ConfigError("a mask needs a 'pattern', or the 'name' of a ready-made one "
                          f"({', '.join(sorted(PRESETS))})", path=src, key=key)
    if pattern is None:
        if name not in PRESETS:
            raise ConfigError(f"unknown mask name {name!r} and no 'pattern' "
                              f"(ready-made: {', '.join(sorted(PRESETS))})", path=src, key=key + ".name")
        pattern = PRESETS[name]
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regex {pattern!r}: {exc}", path=src, key=key + ".pattern") from exc
    name = name or "masked"
    if not MASK_NAME.fullmatch(name):
        raise ConfigError("a mask name is letters, digits and - _ . :", path=src, key=key + ".name")
    paths = _path_list(table, "paths", key + ".", src)
    return Mask(name=name, pattern=regex, paths=paths) if paths else Mask(name=name, pattern=regex)


def _tolerance(table: Any, key: str, src: str) -> Tolerance:
    _check_keys(table, {"paths", "absolute", "relative"}, key + ".", src)
    paths = _path_list(table, "paths", key + ".", src)
    margins = {k: float(_typed(table, k, (int, float), key + ".", src, 0.0))
               for k in ("absolute", "relative")}
    try:
        return Tolerance(paths=paths, **margins)
    except ValueError as exc:
        raise ConfigError(str(exc), path=src, key=key) from exc


def _endpoint(table: Any, index: int, src: str) -> EndpointRules:
    key = f"endpoint[{index}]"
    if not isinstance(table, dict) or not isinstance(table.get("match"), str):
        raise ConfigError("needs a 'match' string such as \"GET /users/{id}\"", path=src, key=key)
    return EndpointRules(match=table["match"], rules=_rules(table, key, src, defaults=False))


def _simple(cls: type, table: Any, prefix: str, src: str) -> Any:
    fields = {f for f in cls.__dataclass_fields__}
    _check_keys(table, fields, prefix + ".", src)
    base = cls()
    values = {k: _typed(table, k, type(getattr(base, k)) if not isinstance(getattr(base, k), float)
                        else (int, float), prefix + ".", src, getattr(base, k)) for k in table}
    return replace(base, **values)


def _rank(table: Any, src: str) -> RankConfig:
    from shadowdiff.severity import severity_weights  # checks names and values

    table = dict(table) if isinstance(table, dict) else table
    weights = table.pop("severity_weights", {}) if isinstance(table, dict) else {}
    window = {k: table.pop(k) for k in ("window_days", "half_life_days")
              if isinstance(table, dict) and k in table}
    base = check_window(replace(_simple(RankConfig, table, "rank", src), **window), src)
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


def _report(table: Any, src: str) -> ReportConfig:
    p = "report."
    _check_keys(table, {"show_secrets", "secret_headers", "max_body_chars"}, p, src)
    base = ReportConfig()
    extra = tuple(h.lower() for h in _str_list(table, "secret_headers", p, src))
    return ReportConfig(
        show_secrets=_typed(table, "show_secrets", bool, p, src, False),
        secret_headers=base.secret_headers + tuple(h for h in extra if h not in base.secret_headers),
        max_body_chars=_typed(table, "max_body_chars", int, p, src, base.max_body_chars),
    )
