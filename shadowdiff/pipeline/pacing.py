"""One rate for a whole partitioned run: `--rate 1000` is 1,000 exchanges/s in total.

    chunk on worker A ──reserve(50)──> scheduler: RateBook ──> "start in 12 ms"
    chunk on worker B ──reserve(50)──> (the next 50 slots after A's)  ──> "start in 62 ms"

A static share (rate / workers for each chunk in flight) never exceeds the rate, but falls
short of it whenever fewer chunks than workers are running: with 3 chunks on 2 workers the
last one ran alone at half the rate, and the run took a third longer than `--rate` says.
So the slots are handed out by one book on the Dask scheduler (which outlives any worker, so
a killed worker does not take the rate with it): a chunk reserves the next `lease` slots
(~50 ms of the rate) at a time and spaces its exchanges over them. Reservations never overlap,
so the total never exceeds the rate, and a chunk running alone gets all of it.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

HANDLER = "shadowdiff_reserve"
_LEASE_SECONDS = 0.05
_KEPT_RUNS = 256


class RateBook(SchedulerPlugin):
    """The scheduler's slot book: per run, when its next free slot begins."""

    name = "shadowdiff-rate"

    def __init__(self) -> None:
        self.next_free: dict[str, float] = {}

    async def start(self, scheduler: Any) -> None:
        # a run that registers the book again must not reset the slots of runs in progress
        scheduler.handlers.setdefault(HANDLER, self.reserve)

    def reserve(self, run: str, n: int, rate: float) -> float:
        """Seconds from now until the first of the `n` slots reserved for this caller."""
        now = time.monotonic()
        start = max(now, self.next_free.get(run, now))
        self.next_free[run] = start + n / rate
        if len(self.next_free) > _KEPT_RUNS:  # a long-lived cluster serves many runs
            oldest = min(self.next_free, key=self.next_free.__getitem__)
            del self.next_free[oldest]
        return start - now


class SharedRate:
    """A run's rate, reserved from the scheduler's RateBook (replay.runner's `Pacer`)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.run = uuid.uuid4().hex
        self.lease = max(1, min(1_000, math.ceil(rate * _LEASE_SECONDS)))
        self._rpc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"rate": self.rate, "run": self.run, "lease": self.lease}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _rpc=None, _loop=None)

    def bind(self) -> SharedRate:
        """Attach to this worker's scheduler connection (called in the task's thread)."""
        from distributed import get_worker

        worker = get_worker()
        self._rpc, self._loop = worker.scheduler, worker.loop.asyncio_loop
        return self

    async def reserve(self, n: int) -> float:
        # the chunk runs its own event loop; the scheduler connection lives on the worker's
        assert self._loop is not None, "bind() first, on the worker"
        call = getattr(self._rpc, HANDLER)(run=self.run, n=n, rate=self.rate)
        return float(await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call,
                                                                                 self._loop)))


def install(client: Any, rate: float) -> SharedRate | None:
    """The run's shared rate (None: no --rate), its book registered on the scheduler."""
    if rate <= 0:
        return None
    client.register_plugin(RateBook())
    return SharedRate(rate)
