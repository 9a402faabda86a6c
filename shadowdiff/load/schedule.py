"""The arrival schedule of a load test: when each captured request goes out.

Load stage, first step. The production rate comes from the capture's own timestamps
(`Exchange.seen_at`, the start of each exchange): the requests keep their spacing, and a
multiple m divides every gap by m. A step longer than the capture replays it again from
the start (one more cycle); a step shorter cuts it. Only the methods the replay policy lets
through are loaded (replay.runner.select), and the capture is read into memory up to a
bound, since the schedule needs every arrival sorted by time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from shadowdiff.capture import read_exchanges
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange, Request
from shadowdiff.replay.runner import ReplayPolicy, select

MAX_ARRIVALS = 200_000


@dataclass(frozen=True, slots=True)
class Plan:
    """The captured arrivals, sorted, as offsets from the first one."""

    offsets: tuple[float, ...]
    """Seconds after the first arrival, ascending."""
    requests: tuple[Request, ...]
    span_s: float
    """One cycle: first to last arrival plus one mean gap, so cycles join at the same pace."""
    skipped: int = 0
    """Exchanges left out (unsafe methods, other protocols), weighted by their count."""
    truncated: bool = False
    """The capture held more than MAX_ARRIVALS arrivals; the rest were not read."""

    @property
    def base_rate(self) -> float:
        """The production rate, requests per second."""
        return len(self.offsets) / self.span_s


def load_plan(paths: Sequence[str], policy: ReplayPolicy, *, base_rate: float | None = None,
              limit: int = MAX_ARRIVALS) -> Plan:
    """Read the captures into a schedule; `base_rate` replaces their timestamps (evenly spaced).

    An exchange standing for `count` identical requests arrives `count` times at its
    timestamp (the de-duplicated copies' own times are not in the capture).
    """
    skipped = 0

    def on_skip(ex: Exchange, reason: str) -> None:
        nonlocal skipped
        skipped += ex.count

    arrivals: list[tuple[float, Request]] = []
    truncated = False
    for path in paths:
        for ex in select(read_exchanges(path), policy, on_skip):
            arrivals.extend((ex.seen_at, ex.request) for _ in range(max(1, ex.count)))
            if len(arrivals) >= limit:
                truncated = True
                break
        if truncated:
            break
    if not arrivals:
        raise CaptureError(f"no exchange to load ({skipped} skipped: only "
                           f"{', '.join(sorted(policy.methods))} are sent unless --methods "
                           "says more)", source=", ".join(paths))
    arrivals = arrivals[:limit]
    arrivals.sort(key=lambda a: a[0])
    return _plan(arrivals, base_rate, skipped, truncated, paths)


def _plan(arrivals: list[tuple[float, Request]], base_rate: float | None, skipped: int,
          truncated: bool, paths: Sequence[str]) -> Plan:
    n = len(arrivals)
    if base_rate is not None:
        offsets = tuple(i / base_rate for i in range(n))
        return Plan(offsets, tuple(r for _, r in arrivals), n / base_rate, skipped, truncated)
    first, last = arrivals[0][0], arrivals[-1][0]
    if n < 2 or last - first <= 0:
        raise CaptureError("the capture's timestamps do not spread over time (one exchange, "
                           "or all seen at the same instant), so they give no production "
                           "rate: give --base-rate REQUESTS_PER_SECOND", source=", ".join(paths))
    span = (last - first) * n / (n - 1)
    return Plan(tuple(t - first for t, _ in arrivals), tuple(r for _, r in arrivals), span,
                skipped, truncated)


def arrivals(plan: Plan, multiple: float, seconds: float, limit: int
             ) -> Iterator[tuple[float, Request]]:
    """(seconds after the step's start, request) at `multiple` times the production rate,
    cycling through the capture, for at most `seconds` and `limit` arrivals."""
    cycle, sent = 0, 0
    while sent < limit:
        base = cycle * plan.span_s
        for offset, request in zip(plan.offsets, plan.requests):
            at = (base + offset) / multiple
            if at >= seconds or sent >= limit:
                return
            yield at, request
            sent += 1
        cycle += 1


def parse_steps(text: str) -> tuple[float, ...]:
    """`1,2,4,8` -> (1.0, 2.0, 4.0, 8.0): ascending positive multiples (ValueError if not)."""
    try:
        steps = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from None
    if not steps or any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"{text!r}: the steps must be positive and rising, e.g. 1,2,4,8")
    return steps


def ramp_steps(max_multiple: float) -> tuple[float, ...]:
    """--ramp: 1, 2, 4, ... doubling up to `max_multiple` (the bound of every ramp)."""
    steps, m = [], 1.0
    while m <= max_multiple:
        steps.append(m)
        m *= 2
    return tuple(steps)

