"""A load test: the steps, old and new one after the other, and where each one breaks.

Load stage, above replay (senders, policy), nightly (percentiles) and report. Old and new
are loaded separately, alternating step by step (old x1, new x1, old x2, new x2, ...): a
saturated system piles up in-flight requests, timeouts and sockets in the one load
generator, and loading both at once would let that slow the other's arrivals; alternating
keeps both measured under the same conditions of the moment. Once a system breaks, it gets
no higher step (there is nothing more to learn, and it spares the system).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shadowdiff.load.generator import StepResult, run_step
from shadowdiff.load.schedule import Plan
from shadowdiff.protocols.base import Protocol, Sender
from shadowdiff.replay.options import ReplayConfig

ROLES = ("old", "new")


@dataclass(frozen=True)
class LoadOptions:
    """How hard, how long, and what counts as broken."""

    steps: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    step_seconds: float = 10.0
    max_p99_ms: float = 1000.0
    max_errors: float = 0.01           # share of a step's planned requests
    max_inflight: int = 256
    pause_s: float = 1.0               # between steps: let queues drain
    max_requests: int = 100_000        # per step and target, whatever the rate
    ramp: bool = False


@dataclass
class LoadRun:
    """Every step run so far, and each role's breaking point."""

    steps: list[StepResult] = field(default_factory=list)
    broke: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc)
                            .isoformat(timespec="seconds"))


ProgressFn = Callable[[StepResult], None]


def broken(result: StepResult, options: LoadOptions) -> str | None:
    """Why this step broke the target (p99 or error rate above the limit), or None."""
    figures = result.figures()
    if figures["error_rate"] > options.max_errors:
        return f"error rate {figures['error_rate']:.1%} > {options.max_errors:.1%}"
    if figures["p99_ms"] is not None and figures["p99_ms"] > options.max_p99_ms:
        return f"p99 {figures['p99_ms']:.0f} ms > {options.max_p99_ms:.0f} ms"
    return None


def run_load(plan: Plan, targets: Mapping[str, str], protocol: Protocol,
             replay: ReplayConfig, options: LoadOptions,
             progress: ProgressFn | None = None) -> LoadRun:
    """Run the steps against old and new; a Ctrl-C stops at once and returns what ran."""
    run = LoadRun()
    try:
        asyncio.run(_steps(plan, targets, protocol, replay, options, run, progress))
    except KeyboardInterrupt:
        run.interrupted = True  # the step under way marked itself (_one_step)
    return run


async def _steps(plan: Plan, targets: Mapping[str, str], protocol: Protocol,
                 replay: ReplayConfig, options: LoadOptions, run: LoadRun,
                 progress: ProgressFn | None) -> None:
    # The sender's own pool may hold every in-flight request: the bound is ours, so that
    # an arrival over it is counted (overflow), never queued where its wait would hide.
    sender_options = replace(replay, concurrency=options.max_inflight)
    for multiple in options.steps:
        for role in ROLES:
            if role in run.broke:
                continue
            result = StepResult(role, multiple, plan.base_rate * multiple, options.step_seconds)
            run.steps.append(result)
            await _one_step(protocol.open_sender(targets[role], sender_options.for_role(role)), plan,
                            result, replay, options)
            reason = broken(result, options)
            if reason is not None:
                run.broke[role] = {"multiple": multiple, "target_rate": round(result.target_rate, 2),
                                   "reason": reason}
            if progress is not None:
                progress(result)
            await asyncio.sleep(options.pause_s)
        if all(role in run.broke for role in ROLES):
            return


async def _one_step(sender: Sender, plan: Plan, result: StepResult, replay: ReplayConfig,
                    options: LoadOptions) -> None:
    try:
        await run_step(sender, plan, result, max_inflight=options.max_inflight,
                       drain_s=replay.timeout_s, max_requests=options.max_requests)
    except asyncio.CancelledError:
        result.interrupted = True
        raise
    finally:
        await sender.close()  # a fresh pool per step: no warm connections carried over


def exit_code(run: LoadRun) -> int:
    """0: new held as long as old; 1: new broke at a lower step (or alone); 130: Ctrl-C."""
    if run.interrupted:
        return 130
    new, old = run.broke.get("new"), run.broke.get("old")
    if new is None:
        return 0
    return 0 if old is not None and old["multiple"] <= new["multiple"] else 1
