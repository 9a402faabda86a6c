"""Rank stage, weighting: how bad a divergence kind is, and how recent the usage is.

    Divergence kind + old/new ──> severity() ──> weight (1.0 = a changed JSON value)
    rank.rank_signatures() ──> severity per signature ──> score = impact x severity
    per-day endpoint counts ──> weight_recent() ──> usage counts for the last N days

Impact alone (usage share x rate) says how much traffic a signature touches; severity says
how much it hurts each request it touches: a 5xx breaks the client, a reordered list
rarely does. Pure functions over plain values; the weights are a plain mapping so the
config can override any of them (docs/endpoints.md lists them with their reasons).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadowdiff.rank.usage.table import UsageTable

#: Weight per case, 1.0 = `value_changed`. Keys are TOML bare keys so `[rank.severity]`
#: can override them. Why each value: see `WEIGHT_REASONS`.
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({
    "failure": 3.0,
    "status_to_5xx": 3.0,
    "status_to_4xx": 2.5,
    "status_class_changed": 2.0,
    "field_missing": 1.5,
    "type_changed": 1.5,
    "body_changed": 1.2,
    "length_changed": 1.2,
    "status_changed": 1.0,
    "status_recovered": 1.0,
    "failure_recovered": 1.0,
    "value_changed": 1.0,
    "contract_header": 1.0,
    "header_missing": 0.7,
    "field_added": 0.5,
    "header_changed": 0.5,
    "header_added": 0.3,
    "order_changed": 0.3,
    "default": 1.0,
})

WEIGHT_REASONS: Mapping[str, str] = MappingProxyType({
    "failure": "new timed out, reset or sent garbage where old answered: the client gets nothing",
    "status_to_5xx": "new answers 5xx where old did not: a server error, retries, alerts",
    "status_to_4xx": "new refuses (4xx) what old served (1xx-3xx): the client's call fails",
    "status_class_changed": "other class changes: 2xx -> 3xx breaks clients that do not follow",
    "field_missing": "a removed or renamed field: readers of it break",
    "type_changed": "9.5 became \"9.50\": strict parsers break, loose ones misbehave",
    "body_changed": "a non-JSON body differs (depth unknown); JSON turned HTML also lands here",
    "length_changed": "list items appear or vanish: data is lost or leaked",
    "status_changed": "same class (200 -> 201, 404 -> 410): usually handled alike",
    "status_recovered": "old answered 5xx, new does not: a fix more often than a regression",
    "failure_recovered": "old failed, new answered (not 5xx): a fix more often than a regression",
    "value_changed": "the baseline: same shape, different data",
    "contract_header": "Content-Type, Location, CORS and the like: clients act on them",
    "header_missing": "a header old sent is gone (caching, security headers)",
    "field_added": "an additive change: compatible for nearly every client",
    "header_changed": "most headers are informational (Server, ETag, Date-like values)",
    "header_added": "a new header: almost never breaks a client",
    "order_changed": "same items, new order: matters only where order has meaning",
    "default": "a kind this table does not know yet",
})

#: Headers whose value changes what a client does, not just what it logs.
CONTRACT_HEADERS = frozenset({"content-type", "location", "content-encoding",
                              "www-authenticate", "access-control-allow-origin"})


def severity_weights(overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The default weights with `overrides` applied; ValueError names a bad key or value.

    >>> severity_weights({"order_changed": 0})["order_changed"]
    0.0
    """
    out = dict(DEFAULT_WEIGHTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise ValueError(f"unknown severity key {key!r}; known: {', '.join(DEFAULT_WEIGHTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"severity {key!r} must be a number >= 0, not {value!r}")
        out[key] = float(value)
    return out


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _status_case(old: Any, new: Any) -> str:
    o, n = _status(old), _status(new)
    if o is None or n is None or o // 100 == n // 100:
        return "status_changed"
    if n >= 500:
        return "status_to_5xx"
    if o >= 500:
        return "status_recovered"
    if 400 <= n < 500:
        return "status_to_4xx"
    return "status_class_changed"


def severity_case(kind: str, old: Any, new: Any, location: str | None = None) -> str:
    """Which weight applies: the kind, refined by the status classes or the header name.

    >>> severity_case("status_changed", 200, 503), severity_case("status_changed", 200, 204)
    ('status_to_5xx', 'status_changed')
    """
    if kind == "status_changed":
        return _status_case(old, new)
    if kind == "failure":
        # old/new hold a status (that side answered) or a failure kind (it did not)
        status = _status(new)
        return "failure_recovered" if status is not None and status < 500 else "failure"
    if kind.startswith("header_") and location and \
            location.removeprefix("header.").lower() in CONTRACT_HEADERS:
        return "contract_header"
    return kind if kind in DEFAULT_WEIGHTS else "default"


def severity(kind: str, old: Any, new: Any, *, location: str | None = None,
             weights: Mapping[str, float] | None = None) -> float:
    """How much one divergence hurts a request, 1.0 being a changed JSON value.

    >>> severity("status_changed", 200, 500), severity("header_changed", "a", "b")
    (3.0, 0.5)
    """
    table = DEFAULT_WEIGHTS if weights is None else weights
    case = severity_case(kind, old, new, location)
    return float(table.get(case, table.get("default", 1.0)))


# -- usage over a recent window ----------------------------------------------------------------

_DAY = 86_400.0


def weight_recent(usage: UsageTable | Mapping[tuple[str, float], int], window_days: float, *,
                  now: float | None = None,
                  half_life_days: float | None = None) -> dict[str, float]:
    """Requests per endpoint counting only the last `window_days` (optionally decayed).

    `usage` maps (endpoint, epoch seconds of a time bucket, e.g. the day's start) to
    requests. `now` defaults to the latest bucket, so a replayed old log gives the same
    answer as on the day it was written. With `half_life_days`, a bucket that old counts
    half. A `UsageTable` from `read_usage` brings its own per-(endpoint, UTC day) buckets
    (`by_day`; requests without a time are left out). One built without them is accepted
    only when its whole span fits in the window (then the answer is exact).
    """
    if window_days <= 0:
        raise ValueError(f"window_days must be > 0, not {window_days!r}")
    if hasattr(usage, "requests_by_endpoint"):
        if getattr(usage, "by_day", None):
            return weight_recent(usage.by_day, window_days, now=now,
                                 half_life_days=half_life_days)
        return _table_in_window(usage, window_days)
    buckets: Mapping[tuple[str, float], int] = usage  # type: ignore[assignment]
    if not buckets:
        return {}
    end = max(t for _, t in buckets) if now is None else now
    out: Counter[str] = Counter()
    for (endpoint, t), n in buckets.items():
        age = (end - t) / _DAY
        if 0 <= age < window_days:
            out[endpoint] += n * (0.5 ** (age / half_life_days) if half_life_days else 1.0)
    return {e: float(v) for e, v in out.most_common()}


def _table_in_window(table: UsageTable, window_days: float) -> dict[str, float]:
    first, last = table.first_seen, table.last_seen
    if first is None or last is None:
        raise ValueError("this log format has no time field: a usage window needs one")
    if (last - first) / _DAY <= window_days:
        return {e: float(n) for e, n in table.requests_by_endpoint().items()}
    raise ValueError(
        f"the logs span {(last - first) / _DAY:.1f} days, more than the {window_days:g}-day "
        "window, and this UsageTable has no per-day counts (`by_day`, filled by read_usage); "
        "pass them here as {(endpoint, day_start_epoch): requests}")
