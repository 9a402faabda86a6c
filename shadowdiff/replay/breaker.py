"""The circuit breaker: stop hammering a target that keeps failing (docs/configuration.md).

One breaker per role's target. Each watches a sliding window of that target's last outcomes;
a failure is a timeout, a refused or reset connection, a transport error, or a server error
(HTTP 5xx, DNS SERVFAIL). Once the window holds `min_requests` outcomes and the failing share
reaches `threshold`, the breaker opens: for `backoff_s` nothing is sent to the target, then
one exchange goes through as a probe (half-open). A probe that succeeds closes the breaker
(and empties its window); one that fails opens it again for twice as long, up to
`max_backoff_s`.

An exchange is compared only when every role answers it, so while any role's breaker is
open the exchange is sent to no role (old is spared too) and is counted as skipped, reason
`circuit breaker open: <roles>`: never judged, never identical. `BreakerLog` keeps, per role,
when and how long the breaker was open and how many exchanges were not tried; logs merge by
adding, so partitioned runs (a set of breakers per chunk in flight) sum exactly.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.model import Exchange, Failure, Outcome

#: Failure kinds that say the target is unwell (invalid and too_large answers came from a
#: target that is up, and are the judge's business).
FAILING_KINDS = frozenset({"timeout", "refused", "reset", "error"})

#: Open intervals kept per role in detail (the earliest ones); the counts cover all of them.
MAX_INTERVALS = 50

SKIP_PREFIX = "circuit breaker open: "

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """The `[replay] breaker*` settings; `threshold` None turns the breaker off."""

    threshold: float | None = 0.5
    window: int = 100
    min_requests: int = 20
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


def parse_threshold(text: str) -> float | None:
    """`--breaker` / `[replay] breaker`: "50%", "0.5" or "off" (None). ValueError otherwise.

    >>> parse_threshold("50%"), parse_threshold("off")
    (0.5, None)
    """
    value = text.strip().lower()
    if value in ("off", "no", "false", "none"):
        return None
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a failure share (50%, 0.5) or 'off'") from None
    if not 0 < share <= 1:
        raise ValueError(f"{text!r}: the failure share must be above 0% and at most 100%")
    return share


def check_breaker(cfg: BreakerConfig) -> str | None:
    """What is wrong with `cfg` (the message names the key), or None."""
    if cfg.threshold is not None and not 0 < cfg.threshold <= 1:
        return "breaker: the failure share must be above 0% and at most 100%"
    if cfg.window < 1:
        return "breaker_window: must be at least 1"
    if not 1 <= cfg.min_requests <= cfg.window:
        return "breaker_min_requests: must be at least 1 and at most breaker_window"
    if cfg.backoff_s <= 0:
        return "breaker_backoff_s: must be positive"
    if cfg.max_backoff_s < cfg.backoff_s:
        return "breaker_max_backoff_s: must be at least breaker_backoff_s"
    return None


def failing(outcome: Outcome) -> bool:
    """Whether an outcome counts against its target."""
    if isinstance(outcome, Failure):
        return outcome.kind in FAILING_KINDS
    status = outcome.status
    return (500 <= status <= 599) if isinstance(status, int) else status == "SERVFAIL"


@dataclass
class BreakerLog:
    """What one role's breaker did over a run (or a partition of it): plain, picklable, mergeable."""

    role: str
    target: str
    opened: int = 0          # times it opened from closed
    open_s: float = 0.0      # seconds open or half-open, all intervals together
    not_tried: int = 0       # exchanges (weighted) not sent because it was open
    probes: int = 0          # half-open probes sent
    intervals: list[dict[str, Any]] = field(default_factory=list)  # earliest MAX_INTERVALS

    def merge(self, other: BreakerLog) -> None:
        """Add another partition's log of the same role."""
        self.opened += other.opened
        self.open_s += other.open_s
        self.not_tried += other.not_tried
        self.probes += other.probes
        self.intervals = sorted(self.intervals + other.intervals,
                                key=lambda i: i["opened_at"])[:MAX_INTERVALS]

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "target": self.target, "opened": self.opened,
                "open_s": round(self.open_s, 3), "not_tried": self.not_tried,
                "probes": self.probes, "intervals": self.intervals}


class Breaker:
    """One target's breaker. Time comes from `clock` (monotonic) and `wall` (epoch)."""

    __slots__ = ("state", "cfg", "log", "_ring", "_i", "_n", "_failures", "_backoff",
                 "_until", "_probing", "_interval", "_since", "_clock", "_wall")

    def __init__(self, role: str, target: str, cfg: BreakerConfig,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.state, self.cfg, self.log = CLOSED, cfg, BreakerLog(role, target)
        self._ring = [False] * cfg.window
        self._i = self._n = self._failures = 0
        self._backoff, self._until, self._probing = cfg.backoff_s, 0.0, False
        self._interval: dict[str, Any] | None = None
        self._since = 0.0
        self._clock, self._wall = clock, wall

    def blocked(self, now: float) -> bool:
        """Whether nothing may go to the target now (open, or a probe is out)."""
        if self.state == OPEN:
            if now < self._until:
                return True
            self.state, self._probing = HALF_OPEN, False
        return self.state == HALF_OPEN and self._probing

    def take_probe(self) -> None:
        self._probing = True
        self.log.probes += 1
        if self._interval is not None:
            self._interval["probes"] += 1

    def not_tried(self, weight: int) -> None:
        self.log.not_tried += weight
        if self._interval is not None:
            self._interval["not_tried"] += weight

    def record(self, failed: bool, probe: bool) -> None:
        """One outcome from the target; `probe` says it answered this breaker's probe."""
        if self.state == CLOSED:
            ring, i = self._ring, self._i
            if self._n == len(ring):
                self._failures -= ring[i]
            else:
                self._n += 1
            ring[i] = failed
            self._failures += failed
            self._i = (i + 1) % len(ring)
            threshold = self.cfg.threshold
            if (failed and threshold is not None and self._n >= self.cfg.min_requests
                    and self._failures >= threshold * self._n):
                self._open()
        elif self.state == HALF_OPEN and probe:
            if failed:
                self._backoff = min(self._backoff * 2, self.cfg.max_backoff_s)
                self.state, self._until = OPEN, self._clock() + self._backoff
            else:
                self._close()
        # Otherwise: an answer to a request sent before the breaker opened; it says nothing new.

    def _open(self) -> None:
        now = self._clock()
        self.state, self._until, self._since = OPEN, now + self._backoff, now
        self.log.opened += 1
        interval = {"opened_at": _iso(self._wall()), "closed_at": None, "duration_s": 0.0,
                    "failure_rate": round(self._failures / self._n, 4), "probes": 0,
                    "not_tried": 0}
        self._interval = interval
        if len(self.log.intervals) < MAX_INTERVALS:
            self.log.intervals.append(interval)

    def _close(self) -> None:
        self._end(closed=True)
        self.state, self._probing, self._backoff = CLOSED, False, self.cfg.backoff_s
        self._ring = [False] * self.cfg.window
        self._i = self._n = self._failures = 0

    def _end(self, *, closed: bool) -> None:
        duration = self._clock() - self._since
        self.log.open_s += duration
        if self._interval is not None:
            self._interval["duration_s"] = round(duration, 3)
            self._interval["closed_at"] = _iso(self._wall()) if closed else None
            self._interval = None

    def finish(self) -> BreakerLog:
        """The log at the end of the replay; an interval still open ends here (closed_at null)."""
        if self.state != CLOSED:
            self._end(closed=False)
            self.state = CLOSED
        return self.log


class Breakers:
    """The breakers of one replay, one per role; `on_skip(exchange, reason)` hears of each
    exchange not tried."""

    def __init__(self, targets: Mapping[str, str], cfg: BreakerConfig,
                 on_skip: Callable[[Exchange, str], None],
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.by_role = {role: Breaker(role, url, cfg, clock, wall) for role, url in targets.items()}
        self._all = tuple(self.by_role.values())
        self._on_skip, self._clock = on_skip, clock

    def admit(self, ex: Exchange) -> tuple[Breaker, ...] | None:
        """The half-open breakers this exchange probes (usually none), or None: not tried."""
        for breaker in self._all:
            if breaker.state != CLOSED:
                break
        else:
            return ()  # the hot path: every breaker closed
        sent = self._sent(ex)
        now = self._clock()
        blocking = [b for b in sent if b.state != CLOSED and b.blocked(now)]
        if blocking:
            for b in blocking:
                b.not_tried(ex.count)
            self._on_skip(ex, SKIP_PREFIX + "+".join(b.log.role for b in blocking))
            return None
        probes = tuple(b for b in sent if b.state == HALF_OPEN)
        for b in probes:
            b.take_probe()
        return probes

    def record(self, ex: Exchange, outcomes: Mapping[str, Outcome],
               probes: tuple[Breaker, ...]) -> None:
        """The outcomes of an admitted exchange, each to its role's breaker."""
        for breaker in self._sent(ex):
            breaker.record(failing(outcomes[breaker.log.role]), breaker in probes)

    def _sent(self, ex: Exchange) -> tuple[Breaker, ...]:
        if not ex.observed:
            return self._all
        observed = {role for role, _ in ex.observed}  # recorded live: not sent again
        return tuple(b for b in self._all if b.log.role not in observed)

    def finish(self) -> list[BreakerLog]:
        return [b.finish() for b in self._all]


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class BreakerBook:
    """The run's breaker logs by role, merged from every replay (or partition)."""

    logs: dict[str, BreakerLog] = field(default_factory=dict)

    def add(self, logs: list[BreakerLog]) -> None:
        for log in logs:
            mine = self.logs.get(log.role)
            if mine is None:
                self.logs[log.role] = BreakerLog(log.role, log.target)
                mine = self.logs[log.role]
            mine.merge(log)

    def merge(self, other: BreakerBook) -> None:
        self.add(list(other.logs.values()))

    def section(self, cfg: BreakerConfig) -> dict[str, Any]:
        """summary.json's `breakers` (docs/report-schema.md)."""
        order = {"old": 0, "new": 1, "old_replica": 2}
        logs = sorted(self.logs.values(), key=lambda log: order.get(log.role, 9))
        return {"enabled": cfg.threshold is not None, "threshold": cfg.threshold,
                "window": cfg.window, "min_requests": cfg.min_requests,
                "backoff_s": cfg.backoff_s, "max_backoff_s": cfg.max_backoff_s,
                "not_tried": sum(log.not_tried for log in logs),
                "targets": [log.as_dict() for log in logs]}
