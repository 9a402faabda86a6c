"""The pipeline: capture -> replay -> judge -> tally -> rank -> report, for one run.

`run()` is what the CLI and the demo call. I/O happens here and at the capture end; the
stages in between are pure. An input error or a Ctrl-C stops the intake, never the
bookkeeping: the report is still written for what was done, and says why it is partial.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shadowdiff import __version__
from shadowdiff.capture import read_exchanges
from shadowdiff.config import SAFE_METHODS, Config
from shadowdiff.errors import CaptureError, ConfigError
from shadowdiff.judge import judge, lifted_pair
from shadowdiff.model import Exchange, Failure, Request, Trial
from shadowdiff.noise import NOISE_FILE, noise_record
from shadowdiff.protocols.base import Protocol, Sender, get_protocol, protocol_for_url
from shadowdiff.endpoints import Templater
from shadowdiff.rank import Usage, capture_usage
from shadowdiff.routing import endpoint_function
from shadowdiff.history import History
from shadowdiff.nightly import assess, open_history, record, stamp_run, write_junit
from shadowdiff.replay import ReplayPolicy, replay, select
from shadowdiff.resume import Journal
from shadowdiff.summary import build_summary
from shadowdiff.tally import Tally

ProgressFn = Callable[["RunState"], None]


@dataclass
class RunState:
    """Live figures, for progress displays."""

    started: float = field(default_factory=time.monotonic)
    replayed: int = 0
    skipped: int = 0
    diverged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    skipped_entries: int = 0  # capture entries skipped, unweighted: progress vs the header's count

    @property
    def rate(self) -> float:
        return self.replayed / max(time.monotonic() - self.started, 1e-9)


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced."""

    summary: dict[str, Any]
    out_dir: Path
    paths: dict[str, Path]
    exit_code: int


def default_out_dir(base: str | Path = "reports") -> Path:
    """reports/run-YYYYmmdd-HHMMSS (UTC), unique."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"run-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(base) / f"run-{stamp}-{n}"
    return path


def _guarded(paths: tuple[str, ...], state: RunState) -> Iterator[Exchange]:
    """Exchanges from every capture; an input error ends intake and is recorded."""
    for path in paths:
        try:
            yield from read_exchanges(path)
        except CaptureError as exc:
            state.errors.append(str(exc))
            return


def _protocol(config: Config) -> Protocol:
    t = config.targets
    if not t.old and not t.new:
        # A mirrored capture already holds old's and new's answers: nothing to send.
        return get_protocol("http")
    if not t.old or not t.new:
        raise ConfigError("both an old and a new target are needed (--old URL --new URL, "
                          "or [targets] in the config); give neither to diff a mirrored "
                          "capture as recorded", key="targets")
    protocol = protocol_for_url(t.old)
    for url in (t.new, t.old_replica):
        if url and protocol_for_url(url) is not protocol:
            raise ConfigError(f"targets mix protocols ({t.old} and {url})", key="targets")
    return protocol


def _senders(protocol: Protocol, config: Config) -> dict[str, Sender]:
    t = config.targets
    # Replaying old twice is a replica that happens to be old itself: its own connections.
    replica = t.old_replica or (t.old if t.replay_old_twice else None)
    urls = {"old": t.old, "new": t.new, "old_replica": replica}
    return {role: protocol.open_sender(url, config.replay) for role, url in urls.items() if url}


class _Results:
    """results.jsonl.gz: one line per judged exchange, written as it comes."""

    def __init__(self, path: Path) -> None:
        self._f = gzip.open(path, "wb", compresslevel=1)

    def write(self, trial: Trial, verdict: Any) -> None:
        outcomes = {role: (o.kind if isinstance(o, Failure) else o.status)
                    for role, o in trial.outcomes.items()}
        self._f.write(orjson.dumps({
            "id": trial.exchange.id, "endpoint": verdict.endpoint, "state": verdict.state,
            "count": trial.exchange.count, "outcomes": outcomes,
            "divergences": [[d.location, d.kind] for d in verdict.divergences],
            **({"suppressed": [[d.location, d.kind] for d in verdict.suppressed]}
               if verdict.suppressed else {}),
        }) + b"\n")

    def close(self) -> None:
        self._f.close()


def _methods(config: Config, protocol: Protocol) -> frozenset[str]:
    """The safe methods: the user's list, or the plugin's own safe default (SMTP's commands)."""
    if config.replay.methods == SAFE_METHODS and hasattr(protocol, "replay_methods"):
        return frozenset(protocol.replay_methods(config.replay))
    return frozenset(config.replay.methods)


async def _replay_all(captures: tuple[str, ...], config: Config, protocol: Protocol,
                      tally: Tally, state: RunState, results: _Results,
                      progress: ProgressFn | None,
                      endpoint_of: Callable[[Request], str], journal: Journal) -> None:
    # A pcap may hold HTTP and SMTP together: replay what the targets speak, skip the rest.
    policy = ReplayPolicy(methods=_methods(config, protocol),
                          concurrency=config.replay.concurrency, rate=config.replay.rate,
                          protocol=protocol.name if config.targets.old else None)

    def on_skip(ex: Exchange, reason: str) -> None:
        tally.add_skip(endpoint_of(ex.request), ex, reason)
        state.skipped += ex.count
        state.skipped_entries += 1

    senders = _senders(protocol, config)
    needed = {"old", "new"} - set(senders)
    lift = lambda trial: lifted_pair(trial, protocol)  # noqa: E731 - only for examples
    try:
        # journal.pending: on --resume, what the journal already holds is not replayed
        exchanges = journal.pending(select(_guarded(captures, state), policy, on_skip,
                                           observed=needed))
        async for trial in replay(exchanges, senders, policy):
            verdict = judge(trial, protocol, config, audit=tally.noise.wants_audit,
                            endpoint_of=endpoint_of)
            tally.add(trial, verdict, lift)
            results.write(trial, verdict)
            journal.add(trial, verdict, tally)
            state.replayed += 1
            state.diverged += verdict.state == "diverged"
            state.failed += verdict.state == "failed"
            if progress is not None:
                progress(state)
    finally:
        await asyncio.gather(*(s.close() for s in senders.values()))
    if needed and not state.replayed and state.skipped and not state.errors:
        state.errors.append("no --old/--new targets were given and the capture holds no "
                            "recorded old/new answers (as a live mirror writes): nothing to compare")


def run(captures: tuple[str, ...], config: Config, out_dir: Path, *,
        usage: Usage | None = None, progress: ProgressFn | None = None,
        templater: Templater | None = None, junit: Path | None = None,
        resume: bool = False) -> RunResult:
    """Replay the captures to the configured targets and write the run directory.

    `templater` (shadowdiff.routing) names HTTP endpoints from routes and learned id
    positions; give the same one that counted `usage`, so capture and logs join.
    `resume` continues the interrupted or killed run in `out_dir` (shadowdiff.resume);
    `junit` also writes a JUnit XML file. The history store ([history]) is opened before
    anything is replayed, so a locked or damaged one fails the run at once (exit 2).
    """
    protocol = _protocol(config)
    configure = getattr(protocol, "configure", None)
    if configure is not None:  # the plugin's own defaults ([dns] rules), as ordinary Rules
        protocol, config = configure(config)
    with open_history(config.history) as history:
        return _run_with(captures, config, out_dir, protocol, history, usage=usage,
                         progress=progress, templater=templater, junit=junit, resume=resume)


def _run_with(captures: tuple[str, ...], config: Config, out_dir: Path, protocol: Protocol,
              history: History | None, *, usage: Usage | None, progress: ProgressFn | None,
              templater: Templater | None, junit: Path | None, resume: bool) -> RunResult:
    from shadowdiff.report import write_reports  # report pulls Jinja2; keep import local

    out_dir.mkdir(parents=True, exist_ok=True)
    tally, state = Tally(config.report), RunState()
    started_at = dt.datetime.now(dt.timezone.utc)
    journal = Journal.start(out_dir, captures, config, resume=resume)
    results = _Results(out_dir / "results.jsonl.gz")
    try:
        journal.restore(tally, state, results)
        endpoint_of = endpoint_function(protocol.name, templater, protocol.endpoint_key)
        _run_loop(_replay_all(captures, config, protocol, tally, state, results, progress,
                              endpoint_of, journal))
    except KeyboardInterrupt:
        state.interrupted = True  # Ctrl-C: report what was done
    finally:
        results.close()
        journal.close(keep=state.interrupted)
    summary = build_summary(
        tally, usage or capture_usage(tally), state, config=config, captures=captures,
        started_at=started_at, version=__version__)
    stamp_run(summary, journal)
    assessment = assess(summary, {ep: s.latency for ep, s in tally.endpoints.items()},
                        history, config)
    examples = tally.examples
    (out_dir / "examples.json").write_bytes(orjson.dumps(examples, option=orjson.OPT_INDENT_2))
    (out_dir / NOISE_FILE).write_bytes(orjson.dumps(noise_record(tally, summary),
                                                    option=orjson.OPT_INDENT_2))
    paths = write_reports(out_dir, summary, examples)
    if junit is not None:
        paths["junit"] = write_junit(junit, summary, assessment)
    record(history, summary, out_dir)
    return RunResult(summary, out_dir, paths, summary["exit_code"])


def _run_loop(coro: Any) -> None:
    """asyncio.run on uvloop when it is installed (the `fast` extra): ~2x less loop overhead."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
