"""Configuration: one TOML file, read once into frozen dataclasses; flags override it.

This package sits above the stages: each stage defines its own settings (replay.options,
compare.rulebook, rank.options, nightly.config, ...) and this package reads the file into
them, so no stage imports the configuration as a whole.

Unknown keys are errors that name the key and the file, because a misspelt rule that is
silently ignored would hide (or invent) divergences. Documented in docs/configuration.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shadowdiff.compare.ruleset import Rules
from shadowdiff.compare.rulebook import EndpointRules, merge_rules, rules_for
from shadowdiff.config.rules import parse_endpoint, parse_rules
from shadowdiff.config.secrets import parse_auth, parse_redact
from shadowdiff.config.tls import parse_tls
from shadowdiff.config.sections import (
    check_replay,
    check_targets,
    check_window,
    parse_breaker,
    parse_rank,
    parse_replay,
    parse_report,
    parse_targets,
)
from shadowdiff.tables import check_keys
from shadowdiff.errors import ConfigError
from shadowdiff.nightly.config import (
    GateConfig,
    HistoryConfig,
    NotifyConfig,
    parse_gate,
    parse_history,
    parse_notify,
)
from shadowdiff.protocols.dns.config import parse_dns
from shadowdiff.protocols.smtp.config import parse_smtp
from shadowdiff.rank.options import RankConfig
from shadowdiff.rank.routing import RoutesConfig, parse_routes
from shadowdiff.redact import SECRET_HEADERS, ReportConfig
from shadowdiff.replay.options import CLIENTS, SAFE_METHODS, ReplayConfig, Targets
from shadowdiff.scrub import RedactConfig

# The settings of each stage live with the stage; they are named here too, as the
# configuration's public vocabulary (docs/configuration.md).
__all__ = [
    "CLIENTS", "SAFE_METHODS", "SECRET_HEADERS", "Config", "EndpointRules", "NotifyConfig", "RankConfig",
    "RedactConfig", "ReplayConfig", "ReportConfig", "Targets", "check_replay", "check_targets", "check_window",
    "config_from_dict", "load_config", "merge_rules",
]


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
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    source: str | None = None

    def rules_for(self, endpoint: str) -> Rules:
        """The global rules merged with every matching per-endpoint section."""
        return rules_for(self.rules, self.endpoints, endpoint)


# -- loading ------------------------------------------------------------------------------

_TOP_KEYS = {"targets", "replay", "normalize", "endpoint", "rank", "report", "routes", "gate",
             "history", "notify", "smtp", "dns", "redact", "auth", "tls", "breaker"}


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
    check_keys(data, _TOP_KEYS, "", src)
    endpoints = data.get("endpoint", [])
    if not isinstance(endpoints, list):
        raise ConfigError("must be an array of tables ([[endpoint]])", path=src, key="endpoint")
    tls, tls_roles = parse_tls(data.get("tls", {}), src)
    return Config(
        targets=parse_targets(data.get("targets", {}), src),
        replay=replace(parse_replay(data.get("replay", {}), src),
                       smtp=parse_smtp(data.get("smtp", {}), src),
                       dns=parse_dns(data.get("dns", {}), src),
                       auth=parse_auth(data.get("auth", {}), src),
                       tls=tls, tls_roles=tls_roles,
                       breaker=parse_breaker(data.get("breaker", {}), src)),
        rules=parse_rules(data.get("normalize", {}), "normalize", src, defaults=True),
        endpoints=tuple(parse_endpoint(e, i, src) for i, e in enumerate(endpoints)),
        rank=parse_rank(data.get("rank", {}), src),
        report=parse_report(data.get("report", {}), src),
        routes=parse_routes(data.get("routes", {}), src),
        gate=parse_gate(data.get("gate", {}), src),
        history=parse_history(data.get("history", {}), src),
        notify=parse_notify(data.get("notify", {}), src),
        redact=parse_redact(data.get("redact", {}), src),
        source=src,
    )


def plugin_configured(protocol: Any, config: Config) -> tuple[Any, Config]:
    """The run's plugin as its settings ask (e.g. DNS zones), and `config` with the rules the
    plugin adds (DNS: TTL tolerance, OPT ignored), parsed like a `[normalize]` table so that
    they are ordinary rules (the audit names them like any other)."""
    configure = getattr(protocol, "configure", None)
    if configure is None:
        return protocol, config
    protocol, table = configure(config.replay)
    extra = parse_rules(table, protocol.name, config.source or "<plugin defaults>", defaults=False)
    return protocol, replace(config, rules=merge_rules(config.rules, extra))
