"""The circuit breaker: pause replay to a target that is down, probe it, resume (docs/configuration.md).

One breaker per role's target. Each watches a sliding window of that target's last outcomes.
What counts as failing is what says *the system* cannot serve, not what one endpoint answers:
a transport failure (timeout, refused, reset, a connection or TLS error: `kinds`) or a status
that means "unavailable" (429, 502, 503, 504: `statuses`). A 500 from one endpoint is that
endpoint's answer and a divergence to report; counting it would let the endpoint mix of the
window (capture order, chunk boundaries) decide whether replay stops. The rule is a pure
function of one outcome, so it does not depend on partitioning or on the other roles.

Once the window holds `min_requests` outcomes and the failing share reaches `threshold`, the
breaker opens and replay PAUSES: no exchange is sent to any role (an exchange is compared only
when every role answers it), the exchanges wait. After `backoff_s` one exchange goes through
as a probe and is judged like any other. A probe that succeeds closes the breaker (with an
empty window); one that fails opens it again for twice as long, up to `max_backoff_s`. Only
when the breaker has stayed open `give_up_s` does replay give up on that target: every
exchange left is not tried, counted as skipped (reason `circuit breaker gave up: <roles>`),
never judged, never identical. Requests already in flight when it opens complete and are
judged; their answers do not move the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shadowdiff.model import Exchange, Failure, Outcome, Request
from shadowdiff.replay.breaker_log import Interval, RoleLog

#: Failure kinds that say the target is unreachable. `invalid` (a response that does not
#: parse) and `too_large` came from a target that is up: the judge reports them.
FAILING_KINDS = ("timeout", "refused", "reset", "error")

#: Statuses that say the system cannot serve now (rate limited, gateway or service down).
FAILING_STATUSES: tuple[int | str, ...] = (429, 502, 503, 504)

SKIP_PREFIX = "circuit breaker gave up: "

CLOSED, OPEN, HALF_OPEN, GAVE_UP = "closed", "open", "half_open", "gave_up"


@dataclass(frozen=True)
class BreakerConfig:
    """The `[breaker]` settings; `threshold` None turns the breaker off."""

    threshold: float | None = 0.5
    window: int = 100
    min_requests: int = 20
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    give_up_s: float = 300.0
    statuses: tuple[int | str, ...] = FAILING_STATUSES
    kinds: tuple[str, ...] = FAILING_KINDS


def parse_threshold(text: str) -> float | None:
    """`--breaker` / `[breaker] threshold`: "50%", "0.5" or "off" (None). ValueError otherwise.

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
    """What is wrong with `cfg` ("key: message"), or None."""
    if cfg.threshold is not None and not 0 < cfg.threshold <= 1:
        return "threshold: the failure share must be above 0% and at most 100%"
    if cfg.window < 1:
        return "window: must be at least 1"
    if not 1 <= cfg.min_requests <= cfg.window:
        return "min_requests: must be at least 1 and at most window"
    if cfg.backoff_s <= 0:
        return "backoff_s: must be positive"
    if cfg.max_backoff_s < cfg.backoff_s:
        return "max_backoff_s: must be at least backoff_s"
    if cfg.give_up_s <= 0:
        return "give_up_s: must be positive"
    unknown = set(cfg.kinds) - {"timeout", "refused", "reset", "error", "invalid", "too_large"}
    if unknown:
        return f"kinds: unknown failure kind {sorted(unknown)[0]!r}"
    return None


def failing_test(cfg: BreakerConfig) -> Callable[[Outcome], bool]:
    """Whether an outcome counts against its target, under `cfg`."""
    kinds, statuses = frozenset(cfg.kinds), frozenset(cfg.statuses)

    def failing(outcome: Outcome) -> bool:
        if isinstance(outcome, Failure):
            return outcome.kind in kinds
        return outcome.status in statuses
    return failing


class Breaker:
    """One target's breaker: a synchronous state machine (Breakers does the waiting).

    `clock` is monotonic seconds (durations, backoff), `wall` epoch seconds (the log's times).
    """

    __slots__ = ("state", "cfg", "log", "until", "_ring", "_i", "_n", "_failures", "_backoff",
                 "_since", "_since_us", "_interval", "_clock", "_wall")

    def __init__(self, role: str, target: str, cfg: BreakerConfig,
                 clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.state, self.cfg, self.log = CLOSED, cfg, RoleLog(role, target)
        self.until = 0.0
        self._ring = [False] * cfg.window
        self._i = self._n = self._failures = 0
        self._backoff = cfg.backoff_s
        self._since, self._since_us = 0.0, 0
        self._interval: Interval | None = None
        self._clock, self._wall = clock, wall

    @property
    def role(self) -> str:
        return self.log.role

    def record(self, failed: bool, probe: bool) -> bool:
        """One outcome from the target (`probe`: it answered this breaker's probe). True when
        the state changed."""
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
                return True
            return False
        if self.state == HALF_OPEN and probe:
            if failed:
                self._reopen()
            else:
                self._close()
            return True
        return False  # an answer to a request sent before it opened: it says nothing new

    def take_probe(self) -> None:
        self.state = HALF_OPEN
        if self._interval is not None:
            self._interval.probes += 1

    def release_probe(self) -> None:
        """The probe was never answered (its task ended): probe again at once."""
        if self.state == HALF_OPEN:
            self.state, self.until = OPEN, self._clock()

    def not_tried(self, ex: Exchange, endpoint: str) -> None:
        self.log.count_not_tried(endpoint, ex.id, ex.count)
        if self._interval is not None:
            self._interval.not_tried += ex.count

    def carry_gave_up(self, opened_us: int, failure_rate: float) -> None:
        """Start given up: an earlier partition of the run gave up on this target at
        `opened_us` (the interval's start), so this one sends it nothing."""
        now, wall_us = self._clock(), int(self._wall() * 1e6)
        self.state, self._since_us = GAVE_UP, opened_us
        self._since = now - max(0, wall_us - opened_us) / 1e6
        self._interval = Interval(opened_us, opened_us, False, failure_rate, openings=0,
                                  gave_up=True)
        self.log.intervals.append(self._interval)

    def _open(self) -> None:
        self._since, self._since_us = self._clock(), int(self._wall() * 1e6)
        self._backoff = self.cfg.backoff_s
        self.state, self.until = OPEN, self._since + self._backoff
        self._interval = Interval(self._since_us, self._since_us, False,
                                  round(self._failures / self._n, 4))
        self.log.intervals.append(self._interval)

    def _reopen(self) -> None:
        now, cfg = self._clock(), self.cfg
        bound = self._since + cfg.give_up_s
        if now >= bound:
            self.state = GAVE_UP
            if self._interval is not None:
                self._interval.gave_up = True
            return
        self._backoff = min(self._backoff * 2, cfg.max_backoff_s)
        # the last probe goes out at the bound, so giving up follows a fresh failure
        self.state, self.until = OPEN, min(now + self._backoff, bound)

    def _close(self) -> None:
        self._end(closed=True)
        self.state = CLOSED
        self._ring = [False] * self.cfg.window
        self._i = self._n = self._failures = 0

    def _end(self, *, closed: bool) -> None:
        if self._interval is not None:
            elapsed_us = int((self._clock() - self._since) * 1e6)
            self._interval.ended_us = self._since_us + max(0, elapsed_us)
            self._interval.closed = closed
            self._interval = None

    def finish(self) -> RoleLog:
        """The log at the end of the replay; an interval still open ends here (not closed)."""
        if self.state != CLOSED:
            self._end(closed=False)
        return self.log


class Breakers:
    """The breakers of one replay, one per role with a target.

    `quiet` is True while every breaker is closed: the replay's hot path then only calls
    `record`. `on_skip(exchange, endpoint, reason)` hears of each exchange not tried.
    `gave_up` (role -> (opened_us, failure_rate)) starts those roles given up.
    """

    def __init__(self, targets: Mapping[str, str], cfg: BreakerConfig,
                 on_skip: Callable[[Exchange, str, str], None],
                 endpoint_of: Callable[[Request], str],
                 gave_up: Mapping[str, tuple[int, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.by_role = {role: Breaker(role, url, cfg, clock, wall) for role, url in targets.items()}
        self._all = tuple(self.by_role.values())
        self._failing = failing_test(cfg)
        self._on_skip, self._endpoint_of, self._clock = on_skip, endpoint_of, clock
        self._event: asyncio.Event | None = None
        for role, (opened_us, rate) in (gave_up or {}).items():
            if role in self.by_role:
                self.by_role[role].carry_gave_up(opened_us, rate)
        self.quiet = all(b.state == CLOSED for b in self._all)

    def record(self, ex: Exchange, outcomes: Mapping[str, Outcome],
               probes: tuple[Breaker, ...] = ()) -> None:
        """The outcomes of a sent exchange, each to its role's breaker."""
        failing, changed = self._failing, False
        for breaker in (self._sent(ex) if ex.observed else self._all):
            outcome = outcomes.get(breaker.log.role)
            if outcome is not None:
                changed |= breaker.record(failing(outcome), breaker in probes)
        if changed:
            self._changed()

    async def admit(self, ex: Exchange) -> tuple[Breaker, ...] | None:
        """Wait until `ex` may go: () when every breaker it meets is closed, the breakers it
        probes, or None when a breaker gave up (the exchange is not tried, and counted)."""
        while True:
            held = [b for b in self._sent(ex) if b.state != CLOSED]
            if not held:
                return ()
            gave_up = [b for b in held if b.state == GAVE_UP]
            if gave_up:
                self._not_tried(ex, gave_up)
                return None
            now = self._clock()
            if all(b.state == OPEN and now >= b.until for b in held):
                for b in held:
                    b.take_probe()
                self._changed()
                return tuple(held)
            waits = [b.until - now for b in held if b.state == OPEN and now < b.until]
            await self._wait(min(waits) if waits else None)

    def release(self, probes: tuple[Breaker, ...]) -> None:
        """A probe's task ended without an answer (cancelled): let another exchange probe."""
        for b in probes:
            b.release_probe()
        self._changed()

    def finish(self) -> list[RoleLog]:
        return [b.finish() for b in self._all]

    def _not_tried(self, ex: Exchange, gave_up: list[Breaker]) -> None:
        endpoint = self._endpoint_of(ex.request)
        for b in gave_up:
            b.not_tried(ex, endpoint)
        self._on_skip(ex, endpoint, SKIP_PREFIX + "+".join(b.role for b in gave_up))

    def _sent(self, ex: Exchange) -> tuple[Breaker, ...]:
        if not ex.observed:
            return self._all
        observed = {role for role, _ in ex.observed}  # recorded live: not sent again
        return tuple(b for b in self._all if b.log.role not in observed)

    def _changed(self) -> None:
        """Wake every waiting exchange to look at the breakers again."""
        self.quiet = all(b.state == CLOSED for b in self._all)
        if self._event is not None:
            self._event.set()
            self._event = None

    async def _wait(self, timeout: float | None) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass


def gave_up_roles(logs: Mapping[str, RoleLog]) -> dict[str, tuple[int, float]]:
    """Role -> (opened_us, failure_rate) of the interval in which a breaker gave up."""
    out: dict[str, tuple[int, float]] = {}
    for role, log in logs.items():
        for interval in log.intervals:
            if interval.gave_up:
                out[role] = (interval.opened_us, interval.failure_rate)
                break
    return out
