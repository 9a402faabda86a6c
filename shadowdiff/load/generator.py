"""The open-loop load generator: one step, one target.

Load stage. Each request is fired at its scheduled time whether or not earlier ones were
answered (an open loop), and its latency is measured from that scheduled time, not from
when it actually left: a generator that waits for answers, or falls behind, would
otherwise hide the queueing it causes (coordinated omission). In-flight requests are
bounded; an arrival finding the bound full is not sent and counts as an `overflow` error.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.load.schedule import Plan, arrivals
from shadowdiff.model import Failure, Outcome, Request
from shadowdiff.nightly.latency import percentiles
from shadowdiff.protocols.base import Sender

#: Answers that say the server is out of capacity, counted as errors like transport failures.
ERROR_STATUS_MIN = 500
TOO_MANY = 429


@dataclass
class StepResult:
    """What one step did to one target."""

    role: str
    multiple: float
    target_rate: float
    seconds: float
    planned: int = 0
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    interrupted: bool = False

    def record(self, outcome: Outcome, latency_s: float) -> None:
        """One answer (or failure), `latency_s` after its scheduled time."""
        self.latencies_ms.append(latency_s * 1000.0)
        kind = error_kind(outcome)
        if kind is None:
            self.ok += 1
        else:
            self.errors[kind] += 1

    @property
    def error_rate(self) -> float:
        return sum(self.errors.values()) / self.planned if self.planned else 0.0

    def figures(self) -> dict[str, Any]:
        """The step's row of load.json (docs/load.md)."""
        p = percentiles(self.latencies_ms)
        wall = max(self.duration_s, self.seconds)  # rates over the whole step, drain included
        return {"role": self.role, "multiple": self.multiple,
                "target_rate": round(self.target_rate, 2),
                "achieved_rate": round(self.ok / wall, 2), "sent_rate": round(self.sent / wall, 2),
                "planned": self.planned, "sent": self.sent, "ok": self.ok,
                "errors": dict(sorted(self.errors.items())),
                "error_rate": round(self.error_rate, 4),
                "p50_ms": p.p50, "p95_ms": p.p95, "p99_ms": p.p99,
                "duration_s": round(self.duration_s, 3), "interrupted": self.interrupted}


def error_kind(outcome: Outcome) -> str | None:
    """None for a served answer; else the failure kind or `status NNN` (5xx and 429)."""
    if isinstance(outcome, Failure):
        return outcome.kind
    status = outcome.status
    if isinstance(status, int) and (status >= ERROR_STATUS_MIN or status == TOO_MANY):
        return f"status {status}"
    return None


async def run_step(sender: Sender, plan: Plan, result: StepResult, *, max_inflight: int,
                   drain_s: float, max_requests: int) -> None:
    """Fire the step's arrivals on schedule, then wait up to `drain_s` for the last answers.

    Fills `result` as it goes, so a Ctrl-C (cancellation) leaves what was measured.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    inflight: set[asyncio.Task[None]] = set()

    async def one(request: Request, due: float) -> None:
        outcome = await sender.send(request)
        result.record(outcome, loop.time() - due)

    try:
        for at, request in arrivals(plan, result.multiple, result.seconds, max_requests):
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result.planned += 1
            if len(inflight) >= max_inflight:
                result.errors["overflow"] += 1
                continue
            task = asyncio.create_task(one(request, start + at))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            result.sent += 1
        if inflight:
            await asyncio.wait(set(inflight), timeout=drain_s)
    finally:
        result.duration_s = loop.time() - start
        pending = [task for task in inflight if not task.done()]
        if pending:
            result.errors["unfinished"] += len(pending)  # no answer within the drain time
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
