"""What the driver of a partitioned run hands its workers: chunks of capture lines.

    raw:     a shadowdiff capture's own lines, read here and not parsed; each worker parses,
             redacts and selects its chunk (skips counted in its tally)
    parsed:  exchanges parsed, redacted and selected here and written back as lines (other
             formats, SMTP sessions, and a cluster on other machines)

Why two: parsing, redacting, selecting and re-serializing each exchange cost the driver
120k instructions per pair, a quarter of a whole identical pair in one process (508k), and
the workers then parsed the same exchange again; reading lines costs it 25k (cachegrind on
the driver alone, 5,000 vs 25,000 exchanges on 2 workers). Raw chunks go only to workers on this
machine: they read the secrets the capture holds before they redact them, and a cluster
elsewhere must not receive them (nor could it use this machine's redaction key).

A capture error (a line that is not an exchange) ends the intake where it is, as in one
process: the worker judges the lines before it and says so, and the driver merges chunks in
order and drops every chunk after that one (run_chunks).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import zstandard

from shadowdiff.capture import detect_format
from shadowdiff.capture.jsonl import capture_lines, exchange_from_dict, exchange_to_dict, parse_line
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange, Request
from shadowdiff.protocols.base import Protocol
from shadowdiff.replay.runner import ReplayPolicy, select
from shadowdiff.scrub import RedactConfig, Redactor, key_path


@dataclass(frozen=True)
class Chunk:
    """Lines for one worker task."""

    lines: list[bytes]
    source: str | None = None
    """raw: the capture file the lines come from; None: exchange_to_dict lines (parsed)."""
    linenos: list[int] | None = None
    """raw: each line's number in `source`, for errors that name it."""
    error: str | None = None
    """raw: the file could not be read past these lines (this error ends the intake)."""

    def __len__(self) -> int:
        return len(self.lines)

    def __getstate__(self) -> dict[str, Any]:
        # Travels as one zstd block and the lines' lengths: pickling the lines one by one,
        # then Dask's framing and its scheduler's hop (in the driver's process for a
        # LocalCluster) each copied every byte, and a capture with recorded or observed
        # bodies is ~4 KB a line. zstd at level 1 takes ~1 ms for 9 MB of such lines
        # (zlib's fastest ~13 ms). Lengths, not a separator: a capture's lines end in one.
        # Fed line by line, not joined first: the join's fresh 9 MB buffer cost 5 ms in page
        # faults, 2.5x the compression.
        state = dict(self.__dict__)
        if "_packed" in state:  # unpickled and never read: travels on as it came
            return state
        lengths = array("L", map(len, self.lines))
        stream = zstandard.ZstdCompressor(level=1).compressobj(size=sum(lengths))
        parts = [stream.compress(line) for line in self.lines]
        parts.append(stream.flush())
        linenos = None if self.linenos is None else array("L", self.linenos).tobytes()
        del state["lines"], state["linenos"]
        state["_packed"] = (b"".join(parts), lengths.tobytes(), linenos)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The lines (and their numbers) are unpacked when first read (__getattr__), not
        # here: Dask's scheduler unpickles every task it is given and pickles it again for
        # the worker, and for a LocalCluster it runs in the driver's process. Unpacking
        # there cost the driver ~6 ms a chunk, and its log of recent messages kept ~20
        # chunks' lines alive (+130 MB of driver RSS on 100,000 exchanges of 4.4 KB).
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        packed = self.__dict__.get("_packed")
        if name not in ("lines", "linenos") or packed is None:
            raise AttributeError(name)
        block, sizes, numbers = packed
        data, lengths = zstandard.ZstdDecompressor().decompress(block), array("L")
        lengths.frombytes(sizes)
        lines, start = [], 0
        for length in lengths:
            lines.append(data[start:start + length])
            start += length
        linenos = None
        if numbers is not None:
            linenos = array("L")
            linenos.frombytes(numbers)
        del self.__dict__["_packed"]
        self.__dict__.update(lines=lines, linenos=None if linenos is None else linenos.tolist())
        return self.__dict__[name]


def raw_allowed(captures: tuple[str, ...], protocol: Protocol, local: bool) -> bool:
    """Whether this run's chunks may be raw: shadowdiff captures (plain or gzip) of a
    protocol without sessions, judged by workers on this machine."""
    if not local or hasattr(protocol, "session_of") or not captures:
        return False
    try:
        return all(detect_format(path) == "shadowdiff" for path in captures)
    except CaptureError:
        return False  # the parsed path reports it, with its position


def worker_redact(redact: RedactConfig) -> RedactConfig:
    """The [redact] section as local workers need it: the key file named by its absolute
    path, so that a worker started elsewhere than the driver's directory hashes with the
    same key. It is read (or made, at the first secret, as one process makes it) there."""
    return replace(redact, key_file=str(key_path(redact.key_file).absolute()))


def raw_chunks(captures: tuple[str, ...], size: int) -> Iterator[Chunk]:
    """The captures' exchange lines, `size` at a time, unparsed. A file that cannot be read
    on ends the intake: its last chunk carries the error, so that it is reported in chunk
    order, after any error a worker finds in an earlier line."""
    for path in captures:
        lines: list[bytes] = []
        linenos: list[int] = []
        try:
            for lineno, raw in capture_lines(path):
                lines.append(raw)
                linenos.append(lineno)
                if len(lines) >= size:
                    yield Chunk(lines, path, linenos)
                    lines, linenos = [], []
        except CaptureError as exc:
            yield Chunk(lines, path, linenos, str(exc))
            return
        if lines:
            yield Chunk(lines, path, linenos)


def parsed_chunks(exchanges: Iterable[Exchange], protocol: Protocol,
                  size: int) -> Iterator[Chunk]:
    """The exchanges as capture lines, `size` at a time, whole sessions in one chunk."""
    session_of: Callable[[Request], tuple[Hashable, int] | None] | None = getattr(
        protocol, "session_of", None)
    chunk: list[bytes] = []
    open_sessions: dict[Hashable, list[bytes]] = {}
    for ex in exchanges:
        line = orjson.dumps(exchange_to_dict(ex))
        session = session_of(ex.request) if session_of else None
        if session is None:
            chunk.append(line)
        else:
            key, steps = session
            lines = open_sessions.setdefault(key, [])
            lines.append(line)
            if len(lines) >= steps:  # every step seen: the session may travel
                chunk.extend(open_sessions.pop(key))
        if len(chunk) >= size:
            yield Chunk(chunk)
            chunk = []
    for lines in open_sessions.values():  # sessions cut short by the capture's end
        chunk.extend(lines)
    if chunk:
        yield Chunk(chunk)


@dataclass
class Intake:
    """What a worker made of a raw chunk besides its exchanges."""

    skipped: int = 0          # exchanges (weighted by count) the policy left out
    skipped_entries: int = 0  # capture entries left out
    error: str | None = None  # the capture error that ended the chunk (and the intake)


def exchanges_of(chunk: Chunk, policy: ReplayPolicy, observed: frozenset[str],
                 redact: RedactConfig,
                 on_skip: Callable[[Exchange, str], None]) -> tuple[Iterator[Exchange], Intake]:
    """A chunk's exchanges to replay (on a worker), as they are read: parsed lines are taken
    as they are; raw ones are parsed, redacted and selected here, as the driver does for one
    process. `Intake` is complete once the iterator is exhausted.

    An iterator, not a list, for the collector's sake: a chunk's 2,000 exchanges held at
    once kept ~100k tracked objects alive through every young collection, 13 us per pair
    of a mirrored identical pair (81 -> 94 us judged in one process, with gc on and off)."""
    if chunk.source is None:
        return (exchange_from_dict(orjson.loads(line)) for line in chunk.lines), Intake()
    intake = Intake()
    secrets = Redactor(redact)

    def skipped(ex: Exchange, reason: str) -> None:
        intake.skipped += ex.count
        intake.skipped_entries += 1
        on_skip(ex, reason)

    def read() -> Iterator[Exchange]:
        for raw, lineno in zip(chunk.lines, chunk.linenos or ()):
            try:
                ex = parse_line(raw, chunk.source or "", lineno)
            except CaptureError as exc:
                intake.error = str(exc)
                return
            yield secrets.exchange(ex)
        intake.error = chunk.error

    return select(read(), policy, skipped, observed=observed), intake
