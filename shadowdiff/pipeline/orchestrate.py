"""The pipeline: capture -> replay -> judge -> tally -> rank -> report, for one run.

`run()` is what the CLI and the demo call. I/O happens here and at the capture end; the
stages in between are pure. An input error or a Ctrl-C stops the intake, never the
bookkeeping: the report is still written for what was done, and says why it is partial.
"""

from __future__ import annotations

import datetime as dt
import gzip
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from shadowdiff import __version__
from shadowdiff.capture import read_exchanges
from shadowdiff.scrub import Redactor
from shadowdiff.config import Config, plugin_configured
from shadowdiff.errors import CaptureError, ConfigError
from shadowdiff.model import Exchange, Request, Trial
from shadowdiff.compare.noisefile import NOISE_FILE, noise_record
from shadowdiff.protocols.base import Protocol, get_protocol, protocol_for_url
from shadowdiff.protocols.http.templater import Templater
from shadowdiff.rank.impact import capture_usage
from shadowdiff.rank.traffic import Usage
from shadowdiff.rank.routing import endpoint_function
from shadowdiff.nightly.history import History
from shadowdiff.pipeline.nightly import assess, open_history, record, stamp_run, write_junit
from shadowdiff.pipeline.nightly import notify
from shadowdiff.replay.runner import ReplayPolicy, select
from shadowdiff.replay.breaker_log import BreakerBook
from shadowdiff.replay.journal import Journal
from shadowdiff.pipeline.judging import (finish_tls, judged, needed_roles, replay_policy, result_line,
                                         run_loop, tls_section, with_alpn)
from shadowdiff.pipeline.summary import breaker_section, build_summary
from shadowdiff.rank.tally import Tally

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

    def count(self, verdict_state: str, n: int = 1) -> None:
        """`n` more exchanges judged, in `verdict_state`."""
        self.replayed += n
        self.diverged += n if verdict_state == "diverged" else 0
        self.failed += n if verdict_state == "failed" else 0

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


def _guarded(paths: tuple[str, ...], state: RunState,
             secrets: Redactor | None = None) -> Iterator[Exchange]:
    """Exchanges from every capture, secrets redacted ([redact]); an input error ends
    intake and is recorded."""
    for path in paths:
        try:
            yield from read_exchanges(path, secrets=secrets)
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


class _Results:
    """results.jsonl.gz: one line per judged exchange, written as it comes."""

    def __init__(self, path: Path) -> None:
        self._f = gzip.open(path, "wb", compresslevel=1)

    def write(self, trial: Trial, verdict: Any) -> None:
        self._f.write(result_line(trial, verdict))

    def write_lines(self, lines: bytes) -> None:
        self._f.write(lines)

    def close(self) -> None:
        self._f.close()


async def _replay_all(captures: tuple[str, ...], config: Config, protocol: Protocol,
                      tally: Tally, state: RunState, results: _Results,
                      progress: ProgressFn | None,
                      endpoint_of: Callable[[Request], str], journal: Journal,
                      book: BreakerBook) -> None:
    policy = replay_policy(config, protocol)
    needed = needed_roles(config)
    # journal.pending: on --resume, what the journal already holds is not replayed
    exchanges = journal.pending(selected(captures, policy, tally, state, endpoint_of, needed,
                                         secrets=Redactor(config.redact)))
    async for trial, verdict in judged(exchanges, config, protocol, policy, tally, endpoint_of,
                                       book):
        results.write(trial, verdict)
        journal.add(trial, verdict, tally)
        state.count(verdict.state)
        if progress is not None:
            progress(state)
    check_observed(needed, state)


def selected(captures: tuple[str, ...], policy: ReplayPolicy, tally: Tally, state: RunState,
             endpoint_of: Callable[[Request], str], needed: frozenset[str], *,
             secrets: Redactor | None = None) -> Iterator[Exchange]:
    """The captures' exchanges the policy lets through; the others are counted as skipped."""
    def on_skip(ex: Exchange, reason: str) -> None:
        tally.add_skip(endpoint_of(ex.request), ex, reason)
        state.skipped += ex.count
        state.skipped_entries += 1

    return select(_guarded(captures, state, secrets), policy, on_skip, observed=needed)


def check_observed(needed: frozenset[str], state: RunState) -> None:
    """Without targets, a capture with no recorded answers compared nothing: say so."""
    if needed and not state.replayed and state.skipped and not state.errors:
        state.errors.append("no --old/--new targets were given and the capture holds no "
                            "recorded old/new answers (as a live mirror writes): nothing to compare")


def run(captures: tuple[str, ...], config: Config, out_dir: Path, *,
        usage: Usage | None = None, progress: ProgressFn | None = None,
        templater: Templater | None = None, junit: Path | None = None,
        resume: bool = False, workers: int = 1, scheduler: str | None = None,
        client: Any = None) -> RunResult:
    """Replay the captures to the configured targets and write the run directory.

    With `workers` > 1 or a Dask `scheduler` address the capture is judged in partitions
    by worker processes (partitioned.py); the summary is the same apart from timings.
    `client`: a Dask client already open for the run (partitioned.shared_engine), used
    instead of starting one.

    `templater` (shadowdiff.rank.routing) names HTTP endpoints from routes and learned id
    positions; give the same one that counted `usage`, so capture and logs join.
    `resume` continues the interrupted or killed run in `out_dir` (shadowdiff.replay.journal);
    `junit` also writes a JUnit XML file. The history store ([history]) is opened before
    anything is replayed, so a locked or damaged one fails the run at once (exit 2).
    """
    protocol = _protocol(config)
    protocol, config = plugin_configured(protocol, config)  # e.g. the [dns] rules
    engine = _Engine(workers, scheduler, client)
    if engine.partitioned and resume:
        raise ConfigError("--resume continues a run judged by one process: resume it with "
                          "--workers 1 (partitioned runs keep no journal)", key="workers")
    with open_history(config.history) as history:
        return _run_with(captures, config, out_dir, protocol, history, usage=usage,
                         progress=progress, templater=templater, junit=junit, resume=resume,
                         engine=engine)


@dataclass(frozen=True)
class _Engine:
    """Where the judging happens: this process, or partitions on Dask workers."""

    workers: int = 1
    scheduler: str | None = None
    client: Any = None  # a Dask client opened by the caller, else one is opened for the run

    @property
    def partitioned(self) -> bool:
        return self.workers > 1 or self.scheduler is not None or self.client is not None


def _run_with(captures: tuple[str, ...], config: Config, out_dir: Path, protocol: Protocol,
              history: History | None, *, usage: Usage | None, progress: ProgressFn | None,
              templater: Templater | None, junit: Path | None, resume: bool,
              engine: _Engine) -> RunResult:
    from shadowdiff.report import write_reports, write_summary  # Jinja2: keep import local

    out_dir.mkdir(parents=True, exist_ok=True)
    tally, state, book = Tally(config.report), RunState(), BreakerBook()
    started_at = dt.datetime.now(dt.timezone.utc)
    journal = Journal.start(out_dir, captures, config, resume=resume)
    results = _Results(out_dir / "results.jsonl.gz")
    tls = None
    try:
        tls = tls_section(protocol, config)  # certificates, before any request is replayed
        config = with_alpn(config, tls)      # and which targets speak h2: no handshake again
        journal.restore(tally, state, results)
        endpoint_of = endpoint_function(protocol.name, templater, protocol.endpoint_key)
        if engine.partitioned:
            _replay_partitioned(captures, config, protocol, templater, engine,
                                (tally, state, results, book), progress, endpoint_of)
        else:
            run_loop(_replay_all(captures, config, protocol, tally, state, results, progress,
                                 endpoint_of, journal, book))
    except KeyboardInterrupt:
        state.interrupted = True  # Ctrl-C: report what was done
    finally:
        results.close()
        journal.close(keep=state.interrupted and not engine.partitioned)
    summary = build_summary(
        tally, usage or capture_usage(tally), state, config=config, captures=captures,
        started_at=started_at, version=__version__, tls=finish_tls(tls, tally.sent_over, config))
    summary["breakers"] = breaker_section(tally, book, config, protocol)
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
    if notify(summary, paths, config.notify) is not None:
        write_summary(out_dir, summary)  # with what each delivery did
    record(history, summary, out_dir)
    return RunResult(summary, out_dir, paths, summary["exit_code"])


def _replay_partitioned(captures: tuple[str, ...], config: Config, protocol: Protocol,
                        templater: Templater | None, engine: _Engine,
                        sinks: tuple[Tally, RunState, _Results, BreakerBook],
                        progress: ProgressFn | None,
                        endpoint_of: Callable[[Request], str]) -> None:
    from shadowdiff.pipeline import partitioned  # Dask: only for partitioned runs
    from shadowdiff.report import charts

    tally, state, _, _ = sinks

    def merge(part: partitioned.Partial) -> None:
        _merge(part, sinks)
        if progress is not None:
            progress(state)

    def lost(index: int, size: int, exc: BaseException) -> None:
        state.errors.append(f"chunk {index} ({size} exchanges) was not judged: "
                            f"{exc.__class__.__name__}: {exc}")

    with partitioned.dask_client(engine.workers, engine.scheduler, engine.client,
                                 meanwhile=charts.warm) as (client, share):
        from shadowdiff.pipeline import pacing  # imports distributed: only when partitioned

        setup = partitioned.Setup(config, protocol, templater, share,
                                  pacing.install(client, config.replay.rate))
        setup, chunks = _chunks(captures, setup, engine, tally, state, endpoint_of)
        partitioned.run_chunks(chunks, setup, client, merge, lost)
        check_observed(needed_roles(config), state)


def _chunks(captures: tuple[str, ...], setup: Any, engine: _Engine, tally: Tally,
            state: RunState, endpoint_of: Callable[[Request], str]) -> tuple[Any, Iterator[Any]]:
    """What to submit, and the partitioned.Setup it needs: a shadowdiff capture's own lines
    for local workers to parse, redact and select (pipeline/intake.py), else the exchanges
    parsed, redacted and selected here (their skips counted here)."""
    from shadowdiff.pipeline import intake, partitioned

    config, protocol = setup.config, setup.protocol
    if intake.raw_allowed(captures, protocol, local=engine.scheduler is None):
        redact = intake.worker_redact(config.redact)
        return (replace(setup, config=replace(config, redact=redact)),
                intake.raw_chunks(captures, partitioned.CHUNK))
    exchanges = selected(captures, replay_policy(config, protocol), tally, state, endpoint_of,
                         needed_roles(config), secrets=Redactor(config.redact))
    return setup, intake.parsed_chunks(exchanges, protocol, partitioned.CHUNK)


def _merge(part: Any, sinks: tuple[Tally, RunState, _Results, BreakerBook]) -> None:
    """One chunk's partitioned.Partial into the run's tally, counts and results.jsonl.gz."""
    tally, state, results, book = sinks
    tally.merge(part.tally)
    book.merge(part.breakers)
    results.write_lines(part.results)
    for verdict_state, n in part.states.items():
        state.count(verdict_state, n)
    state.skipped += part.intake.skipped  # a raw chunk was selected on its worker
    state.skipped_entries += part.intake.skipped_entries
    if part.intake.error is not None:  # the capture error that ended the intake
        state.errors.append(part.intake.error)
