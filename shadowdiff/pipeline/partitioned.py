"""Partitioned runs: the capture in chunks, judged in worker processes, merged exactly.

    driver: capture lines -> chunks (intake.py) ──submit──> Dask workers
    worker: chunk -> (parse, redact, select) -> replay -> judge -> partial Tally + result
            lines ──> driver: merge, in chunk order

A chunk holds whole sessions (every step of an SMTP session, which the sender replays as
one conversation); HTTP exchanges are independent. Partial tallies merge exactly
(`Tally.merge`), so 1 process, N local workers and a cluster write the same summary.json
apart from timings. Dask runs the chunks: a `LocalCluster` of `workers` processes, or an
existing cluster (`scheduler`); a worker that dies has its chunk run again elsewhere, and
only the run that finished is merged. At most `2 x workers` chunks are in flight, so the
driver's memory stays flat however long the capture is. docs/scale.md says how to run it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from shadowdiff.config import Config
from shadowdiff.pipeline.local import start_forkserver
from shadowdiff.pipeline.intake import Chunk, Intake, exchanges_of
from shadowdiff.pipeline.judging import judged, needed_roles, replay_policy, result_line, run_loop
from shadowdiff.protocols.base import Protocol
from shadowdiff.protocols.http.templater import Templater
from shadowdiff.rank.routing import endpoint_function
from shadowdiff.rank.usage.ranges import file_facts
from shadowdiff.rank.tally import Tally
from shadowdiff.replay.breaker import gave_up_roles
from shadowdiff.replay.breaker_log import BreakerBook

#: Exchanges per chunk: enough to amortize a task's start, few enough to spread the load.
CHUNK = 2_000


#: Transitions the in-process scheduler remembers (see open_client).
SCHEDULER_LOG_LENGTH = 16

@dataclass(frozen=True)
class Setup:
    """What every chunk needs besides its exchanges (sent with each chunk)."""

    config: Config
    protocol: Protocol  # the run's plugin object, as configured (DNS zones): not re-looked-up
    templater: Templater | None
    share: int  # chunks judged at once: each gets 1/share of the concurrency
    pacer: Any = None  # pacing.SharedRate: the run's --rate, shared by every chunk
    # Roles whose breaker an earlier chunk gave up on: (role, opened_us, failure_rate). A
    # chunk submitted after that sends them nothing (each chunk has its own breakers).
    gave_up: tuple[tuple[str, int, float], ...] = ()


@dataclass
class Partial:
    """One chunk's result."""

    index: int
    tally: Tally
    results: bytes  # results.jsonl lines
    states: dict[str, int]  # verdict state -> exchanges
    breakers: BreakerBook  # this chunk's circuit breakers (each chunk in flight has its own)
    intake: Intake = field(default_factory=Intake)  # a raw chunk's skips, and its capture error


def judge_chunk(index: int, chunk: Chunk, setup: Setup) -> Partial:
    """Replay and judge one chunk (in a worker process)."""
    protocol, config = setup.protocol, setup.config
    tally = Tally(config.report)
    endpoint_of = endpoint_function(protocol.name, setup.templater, protocol.endpoint_key)
    policy = replay_policy(config, protocol, share=setup.share)
    exchanges, intake = exchanges_of(
        chunk, policy, needed_roles(config), config.redact,
        lambda ex, reason: tally.add_skip(endpoint_of(ex.request), ex, reason))
    out: list[bytes] = []
    states: dict[str, int] = {}
    book = BreakerBook()

    async def go() -> None:
        paced = policy if setup.pacer is None else replace(
            policy, rate=setup.pacer.rate, pacer=setup.pacer.bind())
        gave_up = {role: (opened_us, rate) for role, opened_us, rate in setup.gave_up}
        async for trial, verdict in judged(exchanges, config, protocol, paced, tally,
                                           endpoint_of, book, gave_up):
            out.append(result_line(trial, verdict))
            states[verdict.state] = states.get(verdict.state, 0) + 1

    run_loop(go())
    return Partial(index, tally, b"".join(out), states, book, intake)


def carry_gave_up(setup: Setup, part: Partial) -> Setup:
    """`setup` for the chunks still to submit: a role a finished chunk's breaker gave up on
    starts given up, from the same moment, so a dead target costs one `give_up_s` in all,
    not one per chunk (the chunks in flight give up on their own, at about the same time)."""
    found = gave_up_roles(part.breakers.logs)
    known = {role: (opened_us, rate) for role, opened_us, rate in setup.gave_up}
    merged = {**found, **known}  # the first give-up carried stays the one carried
    if merged == known:
        return setup
    return replace(setup, gave_up=tuple((r, o, f) for r, (o, f) in sorted(merged.items())))


def open_client(workers: int, scheduler: str | None,
                meanwhile: Callable[[], None] | None = None) -> tuple[Any, Any]:
    """A Dask client: to `scheduler`, or to a new LocalCluster of `workers` processes.

    `meanwhile` runs while the LocalCluster's forkserver imports its preload on another
    core: work this process would do later anyway (the report's imports)."""
    from distributed import Client

    import dask

    # The low-level logs keep recent messages with their arguments (a chunk, ~0.4-1 MB), for
    # their last 1,000 entries: 0.4 KB per exchange until they wrap. Two hold them here: the
    # LocalCluster's scheduler, which runs in this process (598 MB of driver RSS for 1M
    # exchanges), and the client's own batched stream to any scheduler (still 394 MB at 1M
    # with 2 workers when only the cluster was built under the short log: the Client was made
    # after the `with`). Short logs keep the driver flat; they only serve Dask's debugging.
    with dask.config.set({"distributed.admin.low-level-log-length": SCHEDULER_LOG_LENGTH}):
        if scheduler:
            return Client(scheduler, timeout="30s"), None
        with dask.config.set(start_forkserver()):
            if meanwhile is not None:
                meanwhile()
            return _local_cluster(workers)


def _local_cluster(workers: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    # ":0", not None: with None the scheduler's HTTP routes still take port 8787, and on a
    # machine where another run holds it Dask warns and moves (an error under tests).
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster), cluster


@contextmanager
def dask_client(workers: int, scheduler: str | None, client: Any = None,
                meanwhile: Callable[[], None] | None = None) -> Iterator[tuple[Any, int]]:
    """(client, chunks judged at once) for the run; the LocalCluster it started is stopped
    after. A `client` already open (shared_engine's) is used as it is and left open."""
    if client is not None:
        yield client, _cluster_size(client)
        return
    client, cluster = open_client(workers, scheduler, meanwhile)
    try:
        yield client, (workers if scheduler is None else _cluster_size(client))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@dataclass(frozen=True)
class Engine:
    """A Dask client opened once for a whole run: the logs are counted and the capture is
    judged by the same workers (one LocalCluster start, not two)."""

    client: Any
    size: int  # threads of the cluster: what limits and in-flight work are divided by

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """read_usage's executor interface. pure=False: no hashing of a 4 MB block for a
        task key, and a block is never a cached result of another block."""
        return self.client.submit(fn, *args, pure=False)

    def sees(self, path: str) -> bool:
        """Whether every worker sees this file as the driver does (same size and mtime): then
        they read their byte ranges of it themselves rather than be sent its bytes."""
        here = file_facts(path)
        there = self.client.run(file_facts, path)
        return (here is not None and bool(there)
                and all(f is not None and tuple(f) == here for f in there.values()))


@contextmanager
def shared_engine(workers: int, scheduler: str | None,
                  meanwhile: Callable[[], None] | None = None) -> Iterator[Engine | None]:
    """The run's Dask engine, or None when it is judged in this process (`--workers 1`);
    `meanwhile` as open_client runs it."""
    if workers <= 1 and scheduler is None:
        yield None
        return
    with dask_client(workers, scheduler, meanwhile=meanwhile) as (client, size):
        yield Engine(client, size)


def _cluster_size(client: Any) -> int:
    """Threads of an existing cluster: what the run's limits are divided by."""
    return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))


def run_chunks(chunks: Iterable[Chunk], setup: Setup, client: Any,
               on_partial: Callable[[Partial], None],
               on_lost: Callable[[int, int, BaseException], None]) -> None:
    """Submit the chunks, at most 2 per worker in flight (or finished and waiting), and hand
    each result over in chunk order. A chunk whose workers kept dying (Dask gives up after
    `distributed.scheduler.allowed-failures` deaths) goes to `on_lost` with its index and
    size: the run goes on and its report says what was lost. A chunk that met a capture
    error ends the run's intake there, as one process does: nothing after it is merged or
    submitted (which is why the order: a later chunk may finish first)."""
    from distributed import as_completed

    limit = max(2, 2 * setup.share)
    # The setup travels inside each task, not scattered once: a scattered value lives only on
    # workers, so SIGKILLing the one that held it cancelled the redone chunk ("already
    # forgotten") instead of running it again. It is small beside a chunk's 2,000 exchanges.
    shared = setup
    pending = as_completed()
    sizes: dict[Any, tuple[int, int]] = {}
    order = _InOrder(on_partial, on_lost)

    def settle(future: Any) -> None:
        nonlocal shared
        index, size = sizes.pop(future.key)
        try:
            part = future.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, or the chunk's own crash
            order.arrive(index, (size, exc))
            return
        shared = carry_gave_up(shared, part)
        order.arrive(index, part)

    try:
        for index, chunk in enumerate(chunks):
            while not order.stopped and pending.count() + order.waiting >= limit:
                settle(next(pending))
            if order.stopped:
                break
            future = client.submit(judge_chunk, index, chunk, shared, pure=False)
            sizes[future.key] = (index, len(chunk))
            pending.add(future)
        for future in pending:
            if order.stopped:
                break
            settle(future)
    finally:
        for future in list(pending.futures):
            future.cancel()


class _InOrder:
    """Chunk results handed over by index, each as soon as those before it are."""

    def __init__(self, on_partial: Callable[[Partial], None],
                 on_lost: Callable[[int, int, BaseException], None]) -> None:
        self._on_partial, self._on_lost = on_partial, on_lost
        self._ready: dict[int, Partial | tuple[int, BaseException]] = {}
        self._next = 0
        self.stopped = False  # a capture error was handed over: the rest is not wanted

    @property
    def waiting(self) -> int:
        return len(self._ready)

    def arrive(self, index: int, result: Partial | tuple[int, BaseException]) -> None:
        self._ready[index] = result
        while not self.stopped and self._next in self._ready:
            item = self._ready.pop(self._next)
            if isinstance(item, Partial):
                self._on_partial(item)
                self.stopped = item.intake.error is not None
            else:
                self._on_lost(self._next, *item)
            self._next += 1
