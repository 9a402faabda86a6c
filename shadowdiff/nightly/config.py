"""The nightly job's configuration: `[gate]`, `[gate.latency]` and `[history]`.

Kept apart from config.py so the sections the nightly job adds (docs/nightly.md) are
read in one place; config.py only holds them as fields of `Config`. Same rules as
there: unknown keys and wrong types are errors naming the file and the key, because a
misspelt gate that is silently ignored would let a bad night through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.errors import ConfigError
from shadowdiff.tables import check_keys

LATENCY_METRICS: tuple[str, ...] = ("p50", "p95", "p99")


@dataclass(frozen=True)
class LatencyGate:
    """What counts as a latency regression (latency.regression's options)."""

    metric: str = "p95"
    min_ratio: float = 1.2
    confidence: float = 0.95


@dataclass(frozen=True)
class GateConfig:
    """`--fail-on` conditions; the command line replaces `fail_on` as a whole."""

    fail_on: tuple[str, ...] = ("any",)
    latency: LatencyGate = field(default_factory=LatencyGate)


@dataclass(frozen=True)
class HistoryConfig:
    """Where the run history lives; `enabled` False is `--no-history`."""

    path: str | None = None   # None: $SHADOWDIFF_HISTORY, else reports/history.sqlite
    enabled: bool = True


def parse_gate(table: Any, src: str) -> GateConfig:
    """`[gate]` with its `[gate.latency]` sub-table; conditions are parsed to check them."""
    from shadowdiff.nightly.gates import parse_conditions

    check_keys(table, {"fail_on", "latency"}, "gate.", src)
    fail_on = table.get("fail_on", ["any"])
    if not isinstance(fail_on, list) or not all(isinstance(v, str) for v in fail_on):
        raise ConfigError("must be a list of strings", path=src, key="gate.fail_on")
    try:
        parse_conditions(fail_on, source="gate.fail_on")
    except ConfigError as exc:
        raise ConfigError(str(exc), path=src) from exc
    return GateConfig(fail_on=tuple(fail_on), latency=_latency(table.get("latency", {}), src))


def _latency(table: Any, src: str) -> LatencyGate:
    check_keys(table, {"metric", "min_ratio", "confidence"}, "gate.latency.", src)
    base = LatencyGate()
    metric = table.get("metric", base.metric)
    if metric not in LATENCY_METRICS:
        raise ConfigError(f"must be one of {', '.join(LATENCY_METRICS)}", path=src,
                          key="gate.latency.metric")
    min_ratio = _number(table, "min_ratio", base.min_ratio, src)
    confidence = _number(table, "confidence", base.confidence, src)
    if min_ratio < 1.0:
        raise ConfigError("must be at least 1 (new/old)", path=src, key="gate.latency.min_ratio")
    if not 0.5 < confidence < 1.0:
        raise ConfigError("must be between 0.5 and 1, e.g. 0.95", path=src,
                          key="gate.latency.confidence")
    return LatencyGate(metric, min_ratio, confidence)


def parse_history(table: Any, src: str) -> HistoryConfig:
    """`[history]`: only `path` (relative paths are relative to the working directory)."""
    check_keys(table, {"path"}, "history.", src)
    if "path" not in table:
        return HistoryConfig()
    path = table["path"]
    if not isinstance(path, str) or not path.strip():
        raise ConfigError("must be a file path", path=src, key="history.path")
    return HistoryConfig(path=path)


HISTORY_ENV = "SHADOWDIFF_HISTORY"
DEFAULT_HISTORY = "reports/history.sqlite"


def history_path(cfg: HistoryConfig) -> str:
    """`--history` or `[history] path`, else $SHADOWDIFF_HISTORY, else the default.

    The environment variable only moves the default, so a CI job (or the test suite)
    can keep every run's history out of the working tree without editing configs.
    """
    return cfg.path or os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY


def _number(table: dict[str, Any], key: str, default: float, src: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"must be a number, not {type(value).__name__}", path=src,
                          key=f"gate.latency.{key}")
    return float(value)
