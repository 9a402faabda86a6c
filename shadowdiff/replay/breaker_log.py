"""What the circuit breakers did over a run: open intervals per target, merged exactly.

A replay (one process, or one chunk of a partitioned run) logs, per role, each interval its
breaker was open: when it opened and when it ended (wall clock, integer microseconds), whether
it closed or was still open when that replay ended, whether replay gave up on the target in
it, the failing share it opened at, and the probes sent and exchanges not tried during it.
A run's log is the union of its replays' intervals on the time axis: intervals that overlap
(two chunks' breakers open at once, or a chunk that started given up because an earlier chunk
gave up) become one, their counts added. The exchanges not tried are also counted per
endpoint, with the lowest exchange ids as examples.

Union, sums and "the lowest ids" are associative and commutative, times are integers, and the
merged interval takes its opening share from the member that opened first (lowest share on a
tie) and its end from the member that ended last: so any grouping and order of partitions
gives the same log, and 1 process and N workers the same `breakers` section when no breaker
opened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

#: Intervals listed per role in summary.json (the earliest); the counts cover all of them.
MAX_INTERVALS = 50

#: Exchange ids kept per role as examples of what was not tried (the lowest ids).
MAX_EXAMPLES = 20

_ORDER = {"old": 0, "new": 1, "old_replica": 2}


@dataclass(slots=True)
class Interval:
    """One stretch of time a role's breaker was open (or half-open, or given up)."""

    opened_us: int        # wall clock, microseconds since the epoch
    ended_us: int         # when it closed, or when its replay ended still open
    closed: bool          # False: still open when the replay ended
    failure_rate: float   # the failing share of the window when it opened
    openings: int = 1     # breaker openings it covers (0: a chunk that started given up)
    probes: int = 0       # exchanges sent as probes while it was open
    not_tried: int = 0    # exchanges (weighted) not tried because replay gave up
    gave_up: bool = False  # it stayed open `give_up_s`: the rest was not tried

    def as_dict(self) -> dict[str, Any]:
        return {"opened_at": _iso(self.opened_us),
                "closed_at": _iso(self.ended_us) if self.closed else None,
                "duration_s": round((self.ended_us - self.opened_us) / 1e6, 3),
                "failure_rate": self.failure_rate, "openings": self.openings,
                "probes": self.probes, "gave_up": self.gave_up, "not_tried": self.not_tried}


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The intervals merged where they overlap or touch, sorted; the inputs are not changed."""
    out: list[Interval] = []
    for i in sorted(intervals, key=lambda i: (i.opened_us, i.failure_rate)):
        last = out[-1] if out else None
        if last is None or i.opened_us > last.ended_us:
            out.append(replace(i))
            continue
        if (i.ended_us, i.closed) > (last.ended_us, last.closed):
            last.ended_us, last.closed = i.ended_us, i.closed
        last.openings += i.openings
        last.probes += i.probes
        last.not_tried += i.not_tried
        last.gave_up = last.gave_up or i.gave_up
    return out


@dataclass
class RoleLog:
    """One role's intervals (disjoint, sorted once merged) and what was not tried."""

    role: str
    target: str
    intervals: list[Interval] = field(default_factory=list)
    endpoints: dict[str, int] = field(default_factory=dict)  # endpoint -> weight not tried
    examples: list[str] = field(default_factory=list)  # lowest ids not tried, sorted

    def count_not_tried(self, endpoint: str, exchange_id: str, weight: int) -> None:
        self.endpoints[endpoint] = self.endpoints.get(endpoint, 0) + weight
        if len(self.examples) < MAX_EXAMPLES or exchange_id < self.examples[-1]:
            self.examples = sorted({*self.examples, exchange_id})[:MAX_EXAMPLES]

    def merge(self, other: RoleLog) -> None:
        self.intervals = union([*self.intervals, *other.intervals])
        for endpoint, n in other.endpoints.items():
            self.endpoints[endpoint] = self.endpoints.get(endpoint, 0) + n
        self.examples = sorted({*self.examples, *other.examples})[:MAX_EXAMPLES]

    def as_dict(self) -> dict[str, Any]:
        ivs = self.intervals
        return {"role": self.role, "target": self.target, "opened": len(ivs),
                "openings": sum(i.openings for i in ivs),
                "open_s": round(sum(i.ended_us - i.opened_us for i in ivs) / 1e6, 3),
                "probes": sum(i.probes for i in ivs),
                "gave_up": any(i.gave_up for i in ivs),
                "not_tried": sum(i.not_tried for i in ivs),
                "not_tried_endpoints": dict(sorted(self.endpoints.items(),
                                                   key=lambda kv: (-kv[1], kv[0]))),
                "not_tried_examples": list(self.examples),
                "intervals": [i.as_dict() for i in ivs[:MAX_INTERVALS]]}


@dataclass
class BreakerBook:
    """The run's breaker logs by role, merged from every replay (or partition)."""

    logs: dict[str, RoleLog] = field(default_factory=dict)

    def add(self, log: RoleLog) -> None:
        """Merge one replay's log of a role (a role without openings is listed all the same)."""
        mine = self.logs.setdefault(log.role, RoleLog(log.role, log.target))
        mine.merge(log)

    def merge(self, other: BreakerBook) -> None:
        for log in other.logs.values():
            self.add(log)

    def targets(self) -> list[dict[str, Any]]:
        """summary.json's `breakers.targets` (docs/report-schema.md), old, new, replica."""
        logs = sorted(self.logs.values(), key=lambda log: _ORDER.get(log.role, 9))
        return [log.as_dict() for log in logs]


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat(timespec="milliseconds")
