"""Replay: send each exchange to every role, concurrently, bounded and rate-limited.

Safety lives here: only the methods the policy names are replayed (GET, HEAD and OPTIONS
by default), and every skipped exchange is counted with its reason, never dropped silently.
Exchanges stream through a bounded pool of workers, so memory stays flat however long the
capture is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from shadowdiff.model import Exchange, Outcome, Trial
from shadowdiff.replay.breaker import Breaker, Breakers
from shadowdiff.protocols.base import Sender


@dataclass(frozen=True)
class ReplayPolicy:
    """Which exchanges go out, and how fast."""

    methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})
    concurrency: int = 32
    rate: float = 0.0  # exchanges per second, 0 = unlimited
    protocol: str | None = None  # the targets' protocol: other exchanges are skipped
    pacer: Pacer | None = field(default=None, compare=False)
    """Where the slots come from when the rate is shared with other processes."""


class Pacer(Protocol):
    """A rate shared by several replays (the chunks of a partitioned run)."""

    lease: int  # slots reserved at a time

    async def reserve(self, n: int) -> float:
        """Reserve the next `n` slots; seconds until the first one."""


def skip_reason(exchange: Exchange, policy: ReplayPolicy,
                observed: Collection[str] = ()) -> str | None:
    """Why an exchange must not be replayed, or None. Pure, so reports can explain it.

    `observed` names roles that have no target: the capture must already hold their outcome.
    """
    if policy.protocol is not None and exchange.request.protocol != policy.protocol:
        return f"protocol {exchange.request.protocol} (the targets speak {policy.protocol})"
    if observed and not set(observed) <= {role for role, _ in exchange.observed}:
        return f"no recorded outcome for {'/'.join(sorted(observed))} and no target to send to"
    if exchange.request.method.upper() not in policy.methods:
        if {"old", "new"} <= {role for role, _ in exchange.observed}:
            return None  # both answers were recorded live: judging them sends nothing
        return f"method {exchange.request.method.upper()}"
    if "incomplete" in exchange.marks:
        return "incomplete capture"
    return None


def select(exchanges: Iterable[Exchange], policy: ReplayPolicy,
           on_skip: Callable[[Exchange, str], None],
           observed: Collection[str] = ()) -> Iterator[Exchange]:
    """The exchanges to replay; `on_skip` hears about each one left out and why."""
    for ex in exchanges:
        reason = skip_reason(ex, policy, observed)
        if reason is None:
            yield ex
        else:
            on_skip(ex, reason)


class RateLimiter:
    """Spaces starts evenly at `rate` per second (no bursts: production-like pacing); with a
    `pacer`, over the slots it reserves, so several processes share one rate."""

    def __init__(self, rate: float, pacer: Pacer | None = None) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._pacer = pacer
        self._slots: deque[float] = deque()
        self._refill = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        if self._pacer is not None:
            return await self._wait_for_slot(self._pacer)
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


    async def _wait_for_slot(self, pacer: Pacer) -> None:
        async with self._refill:  # one reservation at a time, not one per waiting sender
            if not self._slots:
                base = time.monotonic() + await pacer.reserve(pacer.lease)
                self._slots.extend(base + i * self.interval for i in range(pacer.lease))
            start = self._slots.popleft()
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def replay(exchanges: Iterable[Exchange], senders: Mapping[str, Sender],
                 policy: ReplayPolicy, breakers: Breakers | None = None) -> AsyncIterator[Trial]:
    """Yield a Trial per exchange, in completion order.

    Roles already observed in the capture (a live mirror records old and new) are not sent
    again. The input iterator is read lazily from the event loop thread, a bounded number
    of exchanges at a time. With `breakers`, an open breaker pauses every worker (the
    exchanges wait, one goes as a probe after the backoff); an exchange a breaker gave up on
    is not sent at all and yields no trial (the breakers count it as skipped).
    """
    results: asyncio.Queue[Trial | None] = asyncio.Queue(maxsize=policy.concurrency * 2)
    source = iter(exchanges)
    limiter = RateLimiter(policy.rate, policy.pacer)
    errors: list[BaseException] = []

    async def worker() -> None:
        try:
            for ex in source:  # shared iterator: each worker pulls the next exchange
                probes: tuple[Breaker, ...] = ()
                if breakers is not None and not breakers.quiet:
                    admitted = await breakers.admit(ex)  # waits while a breaker is open
                    if admitted is None:  # given up on: counted, not sent, not paced
                        await asyncio.sleep(0)  # let in-flight answers (and the reader) run
                        continue
                    probes = admitted
                await limiter.wait()
                if probes and breakers is not None:
                    outcomes = await _send_probe(ex, senders, breakers, probes)
                else:
                    outcomes = await _send_all(ex, senders)
                if breakers is not None:
                    breakers.record(ex, outcomes, probes)
                await results.put(Trial(ex, outcomes))
        except BaseException as exc:  # the reader's error must reach the caller
            errors.append(exc)
        finally:
            await results.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(policy.concurrency)]
    try:
        live = len(workers)
        while live:
            item = await results.get()
            if item is None:
                live -= 1
            else:
                yield item
        if errors:
            raise errors[0]
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _send_probe(ex: Exchange, senders: Mapping[str, Sender], breakers: Breakers,
                      probes: tuple[Breaker, ...]) -> dict[str, Outcome]:
    """Send a probe; if its task ends unanswered (cancelled), free the breakers to probe again
    rather than leave every waiting worker waiting for it."""
    try:
        return await _send_all(ex, senders)
    except BaseException:
        breakers.release(probes)
        raise


async def _send_all(ex: Exchange, senders: Mapping[str, Sender]) -> dict[str, Outcome]:
    observed = dict(ex.observed)
    roles = [role for role in senders if role not in observed]
    if not roles:
        return observed
    # The first role is sent from this task and the others from tasks of their own: the
    # concurrency of gather() without its extra task and gathering future per exchange.
    first, rest = roles[0], roles[1:]
    others = [asyncio.ensure_future(senders[r].send(ex.request)) for r in rest]
    try:
        observed[first] = await senders[first].send(ex.request)
        for role, task in zip(rest, others):
            observed[role] = await task
    except BaseException:  # cancelled (Ctrl-C, a failed reader): so are the others, as gather does
        for task in others:
            task.cancel()
        raise
    return observed
