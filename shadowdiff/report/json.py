"""summary.json: the machine-readable end of the report stage.

The pipeline's rank stage builds the summary dict; this module checks it against the
versioned schema (docs/report-schema.md), renders it, and reads it back so that
`shadowdiff report RUN_DIR` can re-render the other formats from a finished run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowdiff.errors import ReportError
from shadowdiff.model import DIVERGENCE_KINDS, FAILURE_KINDS, ROLES, USAGE_SOURCES
from shadowdiff.protocols.http.certs import TLS_DIVERGENCE_KINDS

#: The `schema` value every summary carries.
SCHEMA = "shadowdiff-summary"

#: The newest `schema_version` this code writes and reads. See the policy in
#: docs/report-schema.md: additive changes keep it, anything else bumps it.
SCHEMA_VERSION = 1


def render_json(summary: Mapping[str, Any]) -> str:
    """The text of summary.json: insertion order kept, indent 2, UTF-8, newline-terminated.

    >>> render_json({"schema": "shadowdiff-summary"})
    '{\\n  "schema": "shadowdiff-summary"\\n}\\n'
    """
    try:
        # allow_nan=False: NaN/Infinity are not JSON and would break strict readers (jq, JS)
        return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ReportError(f"summary is not plain JSON: {exc}") from exc


def read_summary(path: str | Path) -> dict[str, Any]:
    """Load and validate a summary.json; raises ReportError naming the file and the problems."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from exc
    problems = validate_summary(obj)
    if problems:
        raise ReportError(f"{path}: not a valid summary: " + "; ".join(problems[:10]))
    return obj  # type: ignore[no-any-return]


# --- the schema, as data -------------------------------------------------------------
#
# A spec is one of: a Python type; a tuple of alternatives (None meaning null); a dict
# (an object with those keys, extra keys allowed so additive changes stay compatible);
# a one-item list (a list of that spec); a _Check; or an _Optional wrapper in a dict.


@dataclass(frozen=True)
class _Check:
    """A leaf spec with a predicate; `what` is what the error message says was expected."""

    what: str
    ok: Callable[[Any], bool]


@dataclass(frozen=True)
class _Optional:
    """A key that may be absent (its value, when present, must match `spec`)."""

    spec: Any


@dataclass(frozen=True)
class _Nullable:
    """A value that may be null (when not null, it must match `spec`)."""

    spec: Any


def _is_number(v: Any) -> bool:
    # bool is an int subclass, but `true` is never a count or a share
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_ANY = _Check("any JSON value", lambda v: True)
_INT = _Check("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
_NUM = _Check("a number >= 0", lambda v: _is_number(v) and v >= 0)
_SHARE = _Check("a number in 0..1", lambda v: _is_number(v) and 0 <= v <= 1)
_OPT_NUM = _Check("a number >= 0 or null", lambda v: v is None or (_is_number(v) and v >= 0))
_BOOL = _Check("true or false", lambda v: isinstance(v, bool))


def _one_of(*values: Any) -> _Check:
    return _Check("one of " + ", ".join(json.dumps(v) for v in values), lambda v: v in values)


_LATENCY = {"old_p50": _OPT_NUM, "new_p50": _OPT_NUM, "old_p95": _OPT_NUM, "new_p95": _OPT_NUM}

_NOISE_TEST = _Check("an A/A test object (raw, old_replica, measured, significant) or null",
                     lambda v: v is None or (isinstance(v, dict)
                                             and all(_INT.ok(v.get(k)) for k in ("raw", "old_replica", "measured"))
                                             and _BOOL.ok(v.get("significant"))))
_EXAMPLE = {"exchange_id": str, "location": str, "old": _ANY, "new": _ANY}

NOISE_SPEC: dict[str, Any] = {
    "measured": _BOOL,
    "source": (_one_of("old_replica", "replay_old_twice", None)),
    "exchanges": _INT, "min_relative_pct": _NUM, "min_absolute_pct": _NUM, "audited": _INT,
    "suppressed": [{
        "key": str, "endpoint": str, "location": str, "kind": _one_of(*DIVERGENCE_KINDS),
        "by": _one_of("measurement", "replica", "rule"), "rule": (str, None),
        "count": _INT, "out_of": _INT, "old_replica": (int, None),
        "example": _Check("an example object or null", lambda v: v is None or (
            isinstance(v, dict) and isinstance(v.get("exchange_id"), str))),
    }],
}

SUMMARY_SPEC: dict[str, Any] = {
    "schema": _one_of(SCHEMA),
    "schema_version": _INT,
    "run": {
        "id": str, "started_at": str, "finished_at": str, "duration_s": _NUM,
        "shadowdiff_version": str, "captures": [str],
        "targets": {"old": (str, None), "new": (str, None), "old_replica": (str, None)},
        "config": (str, None), "interrupted": _BOOL, "errors": [str],
    },
    "totals": {
        "exchanges": _INT, "replayed": _INT, "skipped": _INT,
        "skipped_by_reason": _Check("an object of reason -> integer", lambda v: isinstance(v, dict)
                                    and all(_INT.ok(n) for n in v.values())),
        "identical": _INT, "diverged": _INT,
        "failed": {"old": _INT, "new": _INT, "old_replica": _Optional(_INT)},
        "noise_suppressed": _INT, "exchanges_per_s": _NUM,
    },
    "usage": {"source": _one_of(*USAGE_SOURCES), "files": [str],
              "requests": _INT, "malformed": _INT, "note": str,
              # additive in version 1: the usage window, null when every request counted
              "window_days": _Optional(_Nullable(_NUM)),
              "half_life_days": _Optional(_Nullable(_NUM))},
    "coverage": {"verified_share": _SHARE, "diverging_share": _SHARE, "untested_share": _SHARE},
    "endpoints": [{
        "endpoint": str, "replayed": _INT, "identical": _INT, "diverged": _INT, "failed": _INT,
        "usage_share": _SHARE, "usage_requests": _INT, "latency_ms": _LATENCY,
    }],
    "signatures": [{
        "rank": _INT, "key": str, "endpoint": str, "location": str,
        "kind": _one_of(*DIVERGENCE_KINDS), "affected": _INT, "replayed": _INT,
        "rate": _SHARE, "usage_share": _SHARE, "impact": _SHARE,
        "severity": _Optional(_NUM), "score": _Optional(_NUM),  # additive in version 1
        "example": _EXAMPLE, "noise": _Optional(_NOISE_TEST),
    }],
    "noise": _Optional(NOISE_SPEC),  # added in version 1 (additive): older summaries lack it
    "uncovered": [{"endpoint": str, "requests": _INT, "usage_share": _SHARE}],
    "ranking": _Optional({"by": _one_of("score", "impact"), "usage_share": str, "rate": str,
                          "impact": str, "severity": str, "score": str}),
    "capture_suggestion": _Optional(_Nullable({
        "target_share": _SHARE, "endpoints": _INT,
        "rows": [{"endpoint": str, "requests": _INT, "share": _SHARE, "cumulative_share": _SHARE,
                  "capture": _INT, "have": _INT}]})),
    "failures": [{
        "role": _one_of(*ROLES), "kind": _one_of(*FAILURE_KINDS), "count": _INT,
        "endpoint": str, "example_exchange_id": str, "detail": str,
    }],
    "verdict": str,
    "exit_code": _one_of(0, 1, 2),  # 2: an input error cut the run short
}

# The nightly job's keys (issue 6), additive in version 1: older summaries lack them.
_PCTS = {"n": _INT, "p50": _OPT_NUM, "p95": _OPT_NUM, "p99": _OPT_NUM}
_FIGURES = _Check("an object of signature key -> figures (impact, ...)", lambda v: isinstance(v, dict) and all(
    isinstance(f, dict) and _SHARE.ok(f.get("impact")) for f in v.values()))
NIGHTLY_SPEC: dict[str, Any] = {
    "since_last": _Optional(_Nullable({"previous_run_id": (str, None), "new": _FIGURES,
                                       "resolved": _FIGURES, "persisting": _FIGURES,
                                       "previous_started_at": _Optional((str, None))})),
    "trend": _Optional([{"run_id": str, "started_at": str, "diverging_share": _SHARE,
                         "verified_share": _SHARE, "untested_share": _SHARE, "current": _BOOL}]),
    "accepted": _Optional([{"key": str, "reason": str, "until": (str, None), "accepted_at": str,
                            "present": _BOOL}]),
    "gate": _Optional({"conditions": [str], "passed": _BOOL, "reasons": [{
        "condition": str, "failed": _BOOL, "message": str, "detail": str}]}),
    "latency": _Optional({
        "metric": _one_of("p50", "p95", "p99"), "min_ratio": _NUM, "confidence": _SHARE,
        "endpoints": [{"endpoint": str, "old": _PCTS, "new": _PCTS, "old_error_rate": _OPT_NUM,
                       "new_error_rate": _OPT_NUM, "regression": _BOOL}],
        "regressions": [{"key": str, "endpoint": str, "metric": str, "old_ms": _NUM,
                         "new_ms": _NUM, "ratio": _NUM, "ratio_low": _NUM, "ratio_high": _NUM,
                         "confidence": _SHARE, "n_old": _INT, "n_new": _INT,
                         "description": str, "accepted": _Optional(_BOOL)}]}),
}
# `run --notify` (additive in version 1): present only when notification targets were set.
NIGHTLY_SPEC["notifications"] = _Optional({
    "when": [str], "events": [str],
    "deliveries": [{"target": str, "kind": _one_of("http", "smtp"), "ok": _BOOL,
                    "attempts": _INT, "status": (int, None), "error": (str, None),
                    "elapsed_s": _NUM}]})
SUMMARY_SPEC.update(NIGHTLY_SPEC)
# The circuit breakers (issue 15), additive in version 1: older summaries lack them.
_COUNTS = _Check("an object of endpoint -> integer",
                 lambda v: isinstance(v, dict) and all(_INT.ok(n) for n in v.values()))
SUMMARY_SPEC["breakers"] = _Optional({
    "enabled": _BOOL, "threshold": _Nullable(_SHARE), "window": _INT, "min_requests": _INT,
    "backoff_s": _NUM, "max_backoff_s": _NUM, "give_up_s": _NUM,
    "statuses": [_Check("a status (number or rcode name)",
                        lambda v: isinstance(v, (int, str)) and not isinstance(v, bool))],
    "kinds": [str], "not_tried": _INT,
    "targets": [{"role": _one_of(*ROLES), "target": str, "opened": _INT, "openings": _INT,
                 "open_s": _NUM, "probes": _INT, "gave_up": _BOOL, "not_tried": _INT,
                 "not_tried_endpoints": _COUNTS, "not_tried_examples": [str],
                 "intervals": [{"opened_at": str, "closed_at": (str, None), "duration_s": _NUM,
                                "failure_rate": _SHARE, "openings": _INT, "probes": _INT,
                                "gave_up": _BOOL, "not_tried": _INT}]}]})
SUMMARY_SPEC["run"]["resumed"] = _Optional(_INT)
SUMMARY_SPEC["signatures"][0]["accepted"] = _Optional(_BOOL)

# HTTPS targets' certificates (issue 14), additive in version 1: absent without one.
_OPT_STR = _Optional((str, None))
_TLS_FACTS = {"address": str, "server_name": str, "verified": _BOOL, "insecure": _BOOL,
              "error": (str, None), "tls_version": _OPT_STR, "alpn": _OPT_STR,
              "issuer": _OPT_STR, "subject": _OPT_STR, "subject_names": _Optional(_Nullable([str])),
              "not_before": _OPT_STR, "not_after": _OPT_STR, "sha256": _OPT_STR,
              "replayed_over": _Optional(_one_of("HTTP/2", "HTTP/1.1", "HTTP/2 and HTTP/1.1")),
              # what the replay really spoke (HTTP/2 replay, issue 14): additive, optional
              "replayed_over_counts": _Optional({"HTTP/2": _INT, "HTTP/1.1": _INT}),
              "http2": _Optional(_one_of("used", "off", "not_offered", "not_captured"))}
SUMMARY_SPEC["tls"] = _Optional({
    "targets": {role: _Optional(_TLS_FACTS) for role in ROLES},
    "divergences": [{"key": str, "kind": _one_of(*TLS_DIVERGENCE_KINDS), "fact": str,
                     "accepted": _Optional(_BOOL)}],
    "insecure": [_one_of(*ROLES)],
})


def validate_summary(obj: Any) -> list[str]:
    """Problems that stop `obj` being a summary this version can read; [] when it is fine.

    Each problem names where it is, e.g. `signatures[2].kind: expected one of ...`.

    >>> validate_summary({"schema": "shadowdiff-summary"})[0]
    'schema_version: missing'
    """
    problems: list[str] = []
    _check(obj, SUMMARY_SPEC, "", problems)
    if isinstance(obj, dict) and _INT.ok(obj.get("schema_version")):
        if obj["schema_version"] > SCHEMA_VERSION:
            problems.append(f"schema_version: {obj['schema_version']} is newer than this "
                            f"shadowdiff reads ({SCHEMA_VERSION}); upgrade shadowdiff")
    if isinstance(obj, dict) and isinstance(obj.get("signatures"), list):
        problems.extend(_check_ranks(obj["signatures"]))
    return problems


def _check(value: Any, spec: Any, where: str, problems: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            problems.append(f"{where or 'summary'}: expected an object, got {_type_name(value)}")
            return
        for key, sub in spec.items():
            path = f"{where}.{key}" if where else key
            if key in value:
                _check(value[key], sub.spec if isinstance(sub, _Optional) else sub, path, problems)
            elif not isinstance(sub, _Optional):
                problems.append(f"{path}: missing")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]", problems)
    elif isinstance(spec, _Nullable):
        if value is not None:
            _check(value, spec.spec, where, problems)
    elif isinstance(spec, _Check):
        if not spec.ok(value):
            problems.append(f"{where}: expected {spec.what}, got {_short(value)}")
    else:
        allowed = spec if isinstance(spec, tuple) else (spec,)
        types = tuple(type(None) if t is None else t for t in allowed)
        if not isinstance(value, types):
            names = " or ".join("null" if t is None else _TYPE_NAMES[t] for t in allowed)
            problems.append(f"{where}: expected {names}, got {_type_name(value)}")


def _check_ranks(signatures: list[Any]) -> list[str]:
    """Ranks must read 1, 2, 3... in list order: the list is the ranking."""
    ranks = [s.get("rank") for s in signatures if isinstance(s, dict)]
    if ranks != list(range(1, len(ranks) + 1)):
        return ["signatures: ranks must be 1, 2, 3... in list order"]
    return []


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "a list"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:39] + "…"
