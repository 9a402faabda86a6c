"""Capture stage, live mirror core: copy each production request to new, record old and new.

    client ──> mitmproxy (live.py) ──> old ──> client        (the production path, untouched)
                    │ offer()                ▲ old_outcome()
                    ▼                        │
               bounded queue ──> workers ──> new (shadowdiff's own sender)
                                      └──> CaptureWriter: Exchange(observed=old, new)

This module knows nothing of mitmproxy, so it is tested on its own against real servers.
Its one promise is that nothing here can slow or fail the client's request: `offer()` and
`old_outcome()` never wait, a full queue drops the copy (counted), and new's failures and
hangs are bounded by the sender's timeout and recorded as `Failure`s.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.replay.options import SAFE_METHODS, ReplayConfig
from shadowdiff.model import Exchange, Failure, Outcome, Request
from shadowdiff.scrub import RedactConfig, Redactor
from shadowdiff.protocols.base import Sender
from shadowdiff.protocols.http.tls import TlsSettings

#: Counters written to the capture header's `stats` and printed at exit. Invariant:
#: requests == mirrored + dropped_queue_full + dropped_shutdown + skipped_method +
#: skipped_sample + skipped_large_body, and
#: mirrored == recorded + unfinished once the mirror has stopped.
STAT_KEYS: tuple[str, ...] = (
    "requests", "mirrored", "dropped_queue_full", "dropped_shutdown", "skipped_method",
    "skipped_sample", "recorded", "new_failures", "old_failures", "unfinished",
    "skipped_large_body",
)


@dataclass(frozen=True)
class MirrorSettings:
    """What `shadowdiff mirror` was asked to do (old is mitmproxy's business, not ours)."""

    new: str
    """URL of the new system; copies go there."""
    output: str
    """Capture file to write (`.jsonl` or `.jsonl.gz`)."""
    sample: float = 1.0
    """Fraction of clients whose requests are mirrored (chosen by a hash of the client)."""
    queue: int = 1000
    """Copies waiting for a worker; beyond this a copy is dropped and counted."""
    timeout_s: float = 10.0
    """Per-copy timeout for new."""
    methods: tuple[str, ...] = SAFE_METHODS
    """Methods copied to new; the same safety rule as replay."""
    concurrency: int = 16
    """Copies in flight to new at once."""
    sample_header: str = ""
    """Take the client from this header (e.g. X-Forwarded-For) instead of the peer address."""
    drain_s: float = 5.0
    """At shutdown, how long copies already queued or in flight may still take."""
    source: str = "mirror"
    """The capture's `source` and the prefix of each exchange's source."""
    keep_secrets: bool = False
    """Store credentials, cookies and tokens as seen; by default they are hashed (scrub.py)."""
    redact: RedactConfig = field(default_factory=RedactConfig)
    """What counts as a secret (`[redact]`); `keep_secrets` above wins."""
    tls: TlsSettings = field(default_factory=TlsSettings)
    """How copies reach an HTTPS new: trust, client certificate, pinned address ([tls])."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Larger request bodies are refused by the proxy (413) and larger answers of new are
    a `too_large` failure."""


def sampled(client: str, fraction: float) -> bool:
    """Whether `client`'s requests are mirrored: the same answer for a client every time.

    >>> sampled("203.0.113.7", 1.0), sampled("203.0.113.7", 0.0)
    (True, False)
    """
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(client.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass(eq=False)
class MirrorJob:
    """One copied request, waiting for old's and new's outcomes (whichever comes last writes)."""

    seq: int
    """Position among every request the mirror saw (1-based)."""
    request: Request
    seen_at: float
    old: Outcome | None = None
    new: Outcome | None = None
    done: bool = field(default=False)

    @property
    def id(self) -> str:
        return f"mirror-{self.seq}"


class Mirror:
    """The queue, the workers sending to new, and the capture writer.

    >>> mirror = Mirror(MirrorSettings(new="http://new:8080", output="live.jsonl"))  # doctest: +SKIP
    >>> await mirror.start(); job = mirror.offer(request, "203.0.113.7")            # doctest: +SKIP
    >>> mirror.old_outcome(job, response); stats = await mirror.stop()              # doctest: +SKIP
    """

    def __init__(self, settings: MirrorSettings, sender: Sender | None = None) -> None:
        self.settings = settings
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._methods = frozenset(m.upper() for m in settings.methods)
        self._sender = sender
        self._queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=settings.queue)
        self._pending: set[MirrorJob] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._writer: CaptureWriter | None = None
        self._stopping = False

    async def start(self) -> None:
        """Open the capture file and new's sender; start the workers."""
        if self._sender is None:
            from shadowdiff.protocols.base import protocol_for_url
            replay = ReplayConfig(concurrency=self.settings.concurrency,
                                  timeout_s=self.settings.timeout_s,
                                  methods=self.settings.methods,
                                  max_body_bytes=self.settings.max_body_bytes,
                                  tls=self.settings.tls)
            self._sender = protocol_for_url(self.settings.new).open_sender(self.settings.new, replay)
        self._writer = CaptureWriter(self.settings.output, source=self.settings.source,
                                     redactor=Redactor(self.settings.redact.keeping(
                                         self.settings.keep_secrets)))
        self._workers = [asyncio.create_task(self._worker())
                         for _ in range(self.settings.concurrency)]

    def client_key(self, request: Request, peer: str) -> str:
        """The client a request is sampled by: the named header's first hop, else the peer."""
        if self.settings.sample_header:
            value = request.header(self.settings.sample_header)
            if value:
                return value.split(",")[0].strip()
        return peer

    def skip_large(self) -> None:
        """Count a request whose body passed max_body_bytes: it reached old, not new."""
        self.stats["requests"] += 1
        self.stats["skipped_large_body"] += 1

    def offer(self, request: Request, peer: str, seen_at: float | None = None) -> MirrorJob | None:
        """Queue a copy of `request` for new, or count why not. Never waits."""
        self.stats["requests"] += 1
        if self._stopping or self._writer is None:
            self.stats["dropped_shutdown"] += 1  # not started yet, or draining for exit
            return None
        if request.method.upper() not in self._methods:
            self.stats["skipped_method"] += 1
            return None
        if not sampled(self.client_key(request, peer), self.settings.sample):
            self.stats["skipped_sample"] += 1
            return None
        job = MirrorJob(self.stats["requests"], request,
                        time.time() if seen_at is None else seen_at)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats["dropped_queue_full"] += 1
            return None
        self.stats["mirrored"] += 1
        self._pending.add(job)
        return job

    def old_outcome(self, job: MirrorJob, outcome: Outcome) -> None:
        """Old's answer (what the client got) for a queued copy. Never waits."""
        if job.old is None:
            job.old = outcome
            self.stats["old_failures"] += isinstance(outcome, Failure)
            self._finish(job)

    async def _worker(self) -> None:
        assert self._sender is not None
        while True:
            job = await self._queue.get()
            try:
                job.new = await self._sender.send(job.request)
            except Exception as exc:  # noqa: BLE001 - the contract says no raise; a worker must not die anyway
                job.new = Failure("error", f"{exc.__class__.__name__}: {exc}")
            finally:
                self._queue.task_done()
            self.stats["new_failures"] += isinstance(job.new, Failure)
            self._finish(job)

    def _finish(self, job: MirrorJob) -> None:
        if job.old is None or job.new is None or job.done or self._writer is None:
            return
        job.done = True
        self._pending.discard(job)
        self._writer.write(Exchange(
            id=job.id, request=job.request, source=f"{self.settings.source}#{job.seq}",
            seen_at=job.seen_at, observed=(("old", job.old), ("new", job.new))))
        self.stats["recorded"] += 1

    async def stop(self) -> dict[str, int]:
        """Let queued copies finish (up to `drain_s`), then flush the capture with its stats."""
        self._stopping = True
        deadline = time.monotonic() + self.settings.drain_s
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # old's answers arrive through hooks, not the queue
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._sender is not None:
            await self._sender.close()
        self.stats["unfinished"] = len(self._pending)
        if self._writer is not None:
            self._writer.stats.update(self.stats)
            self._writer.close()
        return dict(self.stats)


def describe(stats: dict[str, Any]) -> str:
    """`mirrored 10, dropped_queue_full 2, ...`: every counter, in STAT_KEYS order."""
    return ", ".join(f"{k} {stats.get(k, 0)}" for k in STAT_KEYS)


__all__ = ["STAT_KEYS", "Mirror", "MirrorJob", "MirrorSettings", "describe", "sampled"]
