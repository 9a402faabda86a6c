"""Rank stage, the entry point: access logs -> `UsageTable` (production requests per endpoint).

    paths/globs ──> expand_paths ──> per file: sniff or given format ──> LineReader blocks
        ──> worker threads: count_text_batch / count_json_block ──> Tally ──> UsageTable

The reading thread only cuts blocks at newlines while two workers split them into lines
and run the regex and group-by (Arrow and numpy release the GIL); at most 2 x workers blocks are in
flight, which is what keeps memory flat whatever the size of the log.

The workers are threads of this process by default; a run on Dask (`--workers N`,
`--scheduler`) passes its client as `executor`, so the blocks are counted by the same
worker processes (or machines) that judge the capture: anything with `submit(fn, *args)`
returning a future with `result()` will do. Blocks are absorbed in the order they were read
either way, so line numbers, examples and counts do not depend on where they were counted.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from shadowdiff.protocols.http.endpoints import http_endpoint
from shadowdiff.errors import CaptureError
from shadowdiff.rank.usage.formats import LogFormat, named_format, parse_log_format
from shadowdiff.rank.usage.ranges import byte_ranges, count_range
from shadowdiff.rank.usage.sources import (BLOCK_SIZE, LineReader, expand_paths, open_log,
                                           read_head, split_lines)
from shadowdiff.rank.usage.table import UsageTable, build_frame
from shadowdiff.rank.usage.jsonlogs import JsonPlan, count_json_block, resolve_keys
from shadowdiff.rank.usage.tally import BatchCounts, Tally, TextPlan, count_text_batch

Format = Union[LogFormat, str]  # a LogFormat, or "json"
_SNIFF_LINES = 20


class Executor(Protocol):
    """Where blocks are counted: a ThreadPoolExecutor, or a Dask client's adapter. One that
    also has `sees(path) -> bool` (every worker sees this very file) is sent byte ranges of
    plain files instead of their bytes (see ranges.py)."""

    def submit(self, fn: Callable[..., BatchCounts], /, *args: Any) -> Any: ...


def read_usage(paths: Sequence[str], *, fmt: str = "auto", log_format: str | None = None,
               json_fields: Mapping[str, str] | None = None,
               endpoint: Callable[[str, str], str] = http_endpoint,
               workers: int = 2, block_size: int = BLOCK_SIZE,
               executor: Executor | None = None) -> UsageTable:
    """Count production requests per endpoint template in access logs.

    `fmt`: `auto` (sniff each file), `combined` / `common`, `json`, `nginx:<log_format>`,
    `apache:<LogFormat>`; or pass the format line as `log_format`. `executor` counts the
    blocks (default: `workers` threads of this process). `json_fields` maps
    roles (method, target, request, query, status, time) to JSON keys (dots go into
    objects). `endpoint(method, target)` names the endpoint; it is called once per
    distinct (method, target), never per line. Malformed lines are counted; a file in
    the wrong format or unreadable raises `CaptureError`. Requests are also counted per
    (endpoint, UTC day) in `UsageTable.by_day`, so usage can be windowed to recent days
    without a second pass; lines without a parsable time are in the totals only.

    >>> read_usage(["/var/log/nginx/access.log*"]).counts.head()  # doctest: +SKIP
    """
    given = resolve_format(fmt, log_format)
    run = _Run(endpoint, json_fields or {}, workers, block_size)
    if executor is not None:  # `workers`: how many blocks it counts at once
        run.read_files(paths, given, executor)
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="usage") as pool:
            run.read_files(paths, given, pool)
    run.tally.flush()
    frame, total = build_frame(run.tally.counts)
    return UsageTable(
        counts=frame, total=total, malformed=run.malformed, malformed_example=run.example,
        files=tuple(run.files), first_seen=run.first_seen, last_seen=run.last_seen,
        no_request=run.no_request, formats=tuple(run.formats), problems=tuple(run.problems),
        by_day={(e, float(day)): n for (e, day), n in sorted(run.tally.by_day.items())})


def resolve_format(fmt: str, log_format: str | None = None) -> Format | None:
    """The format every file is read as, or None to sniff each file (`auto`)."""
    if log_format is not None:
        if fmt not in ("auto", "nginx", "apache"):
            raise ValueError(f"give either fmt={fmt!r} or log_format, not both")
        prefix = f"{fmt}:" if fmt in ("nginx", "apache") else ""
        return parse_log_format(prefix + log_format)
    if fmt == "auto":
        return None
    if fmt == "json":
        return "json"
    if fmt in ("combined", "common"):
        return named_format(fmt)
    if fmt.startswith(("nginx:", "apache:")):
        return parse_log_format(fmt)
    raise ValueError(f"unknown log format {fmt!r}: use auto, combined, common, json, "
                     "'nginx:<log_format string>' or 'apache:<LogFormat string>'")


# -- sniffing ------------------------------------------------------------------------------


def sniff_format(path: str) -> Format:
    """What a file holds: JSON lines or combined/common; CaptureError when neither."""
    lines = _sample(path)
    if not lines:
        return named_format("combined")  # empty (a freshly rotated log): nothing to count
    guess = describe(lines)
    if guess == "json":
        return "json"
    if guess == "combined":
        return named_format("combined")
    if "binary" in guess:
        raise CaptureError(guess, source=path)
    raise CaptureError(f"cannot tell the log format: {guess}. Pass the format: "
                       "fmt='combined', 'json', or your own line as 'nginx:<log_format>' / "
                       f"'apache:<LogFormat>'. First line: {_clip(lines[0])}",
                       source=path, position="line 1")


def _sample(path: str) -> list[str]:
    head = read_head(path)
    if b"\n" in head:
        head = head[: head.rindex(b"\n")]  # drop a line cut by the sample's end
    return [ln for ln in head.decode("utf-8", "replace").splitlines() if ln.strip()][
        :_SNIFF_LINES]


def describe(lines: Sequence[str]) -> str:
    """`json`, `combined`, or a short description of what the lines look like."""
    text = "".join(lines)
    if "\x00" in text or text.count("\ufffd") > len(text) // 20:
        return "binary data, not a text access log"
    if lines[0].lstrip().startswith("{"):
        return "json"
    combined = named_format("combined")
    loose = re.compile(combined.regex(loose=True))
    hits = sum(1 for ln in lines if combined.parse_line(ln) or loose.match(ln))
    if hits * 2 >= len(lines):
        return "combined"
    return "no line looks like the combined format or JSON"


def _clip(line: str, width: int = 160) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def count_text_block(block: bytes, plan: TextPlan) -> BatchCounts:
    """One block of a text log counted (in a worker thread or a Dask worker)."""
    return count_text_batch(split_lines(block), plan)


# -- one run -------------------------------------------------------------------------------


@dataclass
class _Run:
    """The state of one read_usage call, across files."""

    endpoint: Callable[[str, str], str]
    json_fields: Mapping[str, str]
    workers: int
    block_size: int
    tally: Tally = field(init=False)
    files: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    malformed: int = 0
    no_request: int = 0
    example: str | None = None
    first_seen: float | None = None
    last_seen: float | None = None

    def __post_init__(self) -> None:
        self.tally = Tally(self.endpoint)

    def read_files(self, paths: Sequence[str], given: Format | None, pool: Executor) -> None:
        for path in expand_paths(paths):
            self.read_file(path, given or sniff_format(path), pool)

    def read_file(self, path: str, fmt: Format, pool: Executor) -> None:
        self.files.append(path)
        self.formats.append(fmt if isinstance(fmt, str) else fmt.name)
        count, plan = self._counter(fmt)
        state = _FileState(path, fmt)
        where = _on_workers(pool, path)
        if where is not None:  # the workers read their own byte ranges of it
            if isinstance(plan, JsonPlan):
                resolve_keys(_head(path, self.block_size), plan)
            self._drain(state, (pool.submit(count_range, where, start, end, count, plan)
                                for start, end in byte_ranges(os.path.getsize(where),
                                                              self.block_size)))
            return self._finish_file(state, None)
        reader = LineReader(path, block_size=self.block_size)
        with closing(iter(reader)) as blocks:  # closes the file even when we raise
            self._drain(state, (pool.submit(count, block, plan)
                                for block in _keyed(blocks, plan)))
        self._finish_file(state, reader.problem)

    def _drain(self, state: _FileState, tasks: Iterator[Future[BatchCounts]]) -> None:
        """Absorb the blocks' counts in file order, with at most 2 x workers in flight."""
        inflight: deque[Future[BatchCounts]] = deque()
        for task in tasks:
            inflight.append(task)
            while len(inflight) > 2 * self.workers:
                self._absorb(state, inflight.popleft())
        while inflight:
            self._absorb(state, inflight.popleft())

    def _counter(self, fmt: Format) -> tuple[Callable[..., BatchCounts], TextPlan | JsonPlan]:
        """The counting function and its plan: module-level, so they pickle to a Dask worker."""
        # the default endpoint ignores the query: read it only for a custom function
        # ... and so does a Templater whose routes survive the reader's id folding
        default = self.endpoint is http_endpoint or getattr(self.endpoint, "fold_safe", False)
        if isinstance(fmt, LogFormat):
            return count_text_block, TextPlan.of(fmt, keep_query=not default, reduce=default)
        return count_json_block, JsonPlan(given=dict(self.json_fields), keep_query=not default,
                                          reduce=default)

    def _absorb(self, state: _FileState, future: Future[BatchCounts]) -> None:
        got = future.result()
        first = state.lines + 1
        self.tally.add(got.groups)
        self.malformed += got.malformed
        self.no_request += got.no_request
        state.lines += got.lines
        state.counted += got.lines - got.malformed
        if got.bad_index is not None and state.bad is None:
            state.bad = (first + got.bad_index, got.bad_text or b"")
        for t in (got.time_min, got.time_max):
            if t is not None:
                self.first_seen = t if self.first_seen is None else min(self.first_seen, t)
                self.last_seen = t if self.last_seen is None else max(self.last_seen, t)
        if state.lines == got.lines and got.lines and not state.counted:
            _wrong_format(state)  # the whole first block fits nothing

    def _finish_file(self, state: _FileState, problem: str | None) -> None:
        if state.lines and not state.counted:
            _wrong_format(state)
        if state.bad is not None and self.example is None:
            line, text = state.bad
            self.example = f"{state.path}:line {line}: {_clip(text.decode('utf-8', 'replace'))}"
        if problem:
            self.problems.append(f"{state.path}: {problem} "
                                 f"({state.lines:,} lines read)")


def _keyed(blocks: Iterator[bytes], plan: TextPlan | JsonPlan) -> Iterator[bytes]:
    # JSON keys are settled from the first block in the driver, so every worker reads the same
    for block in blocks:
        if isinstance(plan, JsonPlan):
            resolve_keys(block, plan)
        yield block


def _on_workers(pool: Executor, path: str) -> str | None:
    """The absolute path the executor's workers read themselves, or None: the driver reads
    the file and ships its blocks (threads; compressed files; workers that do not see it)."""
    sees = getattr(pool, "sees", None)
    if sees is None:
        return None
    stream, compression = open_log(path)
    stream.close()
    where = os.path.abspath(path)
    return where if not compression and sees(where) else None


def _head(path: str, size: int) -> bytes:
    head = read_head(path, size)
    return head[: head.rfind(b"\n") + 1]


@dataclass
class _FileState:
    path: str
    fmt: Format
    lines: int = 0
    counted: int = 0
    bad: tuple[int, bytes] | None = None


def _wrong_format(state: _FileState) -> None:
    name = "JSON lines" if state.fmt == "json" else f"the {_fmt_name(state.fmt)} format"
    text = state.bad[1].decode("utf-8", "replace") if state.bad else ""
    hint = describe([text]) if text.strip() else "blank"
    if hint in ("json", "combined"):
        hint = f"it looks like {'JSON lines' if hint == 'json' else 'the combined format'} " \
               f"(fmt={hint!r})"
    raise CaptureError(f"no line of the first {state.lines:,} fits {name}; {hint}. "
                       f"First line: {_clip(text)}", source=state.path, position="line 1")


def _fmt_name(fmt: Format) -> str:
    return fmt if isinstance(fmt, str) else fmt.name
