"""The run journal: what makes `--resume RUN_DIR` lose no exchange and count none twice.

Every judged exchange is appended to `journal.sqlite` in the run directory with exactly
what the tally needs to count it again: its position among the replayed exchanges of
the capture, weight, per-role status or failure and time, and the verdict (divergences
with their values, the replica's mask, the rules audit) plus any example exchange it
contributed. Records are committed in batches (every BATCH records or FLUSH_S seconds):
SQLite's transactions make a SIGKILL lose at most the uncommitted batch, never half of
one, and those exchanges are simply replayed on resume.

On resume the tally is rebuilt by feeding the journal, in its original order, through
the same `Tally.add` (so counts, signatures, examples and even the latency reservoirs
come out as they were), `results.jsonl.gz` is rewritten from it, and only exchanges
whose position is not in the journal are replayed. Skipped exchanges (unsafe methods,
...) are not journaled: the capture is read again from the start, so they are counted
again, once.

A complete run deletes its journal (it is as large as the results); an interrupted or
killed run keeps it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from shadowdiff.replay.options import ReplaySettings
from shadowdiff.errors import ResumeError
from shadowdiff.compare.judge import Verdict
from shadowdiff.model import Divergence, Exchange, Failure, Outcome, Request, Response, Trial

JOURNAL_FILE = "journal.sqlite"
BATCH = 512
FLUSH_S = 0.5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS judged (position INTEGER PRIMARY KEY, record BLOB NOT NULL);
"""


class Journal:
    """The open journal of one run directory. `Journal.start` opens or creates it."""

    def __init__(self, conn: sqlite3.Connection, path: Path, meta: dict[str, Any]) -> None:
        self._conn, self.path, self.meta = conn, path, meta
        self._pending: list[tuple[int, bytes]] = []
        self._inflight: dict[int, int] = {}     # id(exchange) -> position, while replayed
        self._done = bytearray()                # position -> 1 when already in the journal
        self._flushed = time.monotonic()
        self.restored = 0

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @classmethod
    def start(cls, out_dir: Path, captures: tuple[str, ...], config: ReplaySettings, *,
              resume: bool) -> Journal:
        """A new journal (a fresh run starts over), or the existing one for `resume`.

        Raises ResumeError when there is nothing to resume, or the captures or targets
        differ from the interrupted run's (resuming those would mix two runs).
        """
        path = out_dir / JOURNAL_FILE
        print_ = fingerprint(captures, config)
        if not resume:
            _remove(path)
            conn = _connect(path)
            meta = {"run_id": uuid.uuid4().hex[:12], "fingerprint": print_,
                    "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            with conn:
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [(k, orjson.dumps(v).decode()) for k, v in meta.items()])
            return cls(conn, path, meta)
        if not path.exists():
            raise ResumeError(f"{out_dir}: no {JOURNAL_FILE}: not a run that can be resumed "
                              "(it finished, or was not started by this shadowdiff)")
        conn = _connect(path)
        meta = {k: orjson.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        _check_same(meta.get("fingerprint"), print_, out_dir)
        return cls(conn, path, meta)

    # -- resuming -------------------------------------------------------------------------

    def restore(self, tally: Any, state: Any, results: Any) -> None:
        """Count every journaled exchange again, in order, and rewrite results from them."""
        rows = self._conn.execute("SELECT position, record FROM judged ORDER BY rowid")
        for position, blob in rows:
            trial, verdict, examples = decode(orjson.loads(blob))
            tally.add(trial, verdict, None)
            tally.examples.update(examples)  # the real example, not the stub's
            results.write(trial, verdict)
            self._mark(position)
            state.replayed += 1
            state.diverged += verdict.state == "diverged"
            state.failed += verdict.state == "failed"
            self.restored += 1

    def pending(self, exchanges: Iterable[Exchange]) -> Iterator[Exchange]:
        """The exchanges still to replay, numbered in capture order (after selection)."""
        for position, ex in enumerate(exchanges):
            if position < len(self._done) and self._done[position]:
                continue
            self._inflight[id(ex)] = position
            yield ex

    # -- recording ------------------------------------------------------------------------

    def add(self, trial: Trial, verdict: Verdict, tally: Any) -> None:
        """Journal one exchange the tally has just counted (with any example it kept)."""
        position = self._inflight.pop(id(trial.exchange))
        # the examples this exchange became (a new signature, or a smaller id than before)
        examples = {k: tally.examples[k] for k in tally.last_examples}
        self._pending.append((position, orjson.dumps(encode(trial, verdict, examples),
                                                     default=repr)))
        if len(self._pending) >= BATCH or time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Commit the pending batch: from here on, a SIGKILL cannot lose it."""
        if self._pending:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO judged VALUES (?, ?)",
                                       self._pending)
            self._pending.clear()
        self._flushed = time.monotonic()

    def close(self, *, keep: bool) -> None:
        """Flush and close; delete the journal unless the run may still be resumed."""
        self.flush()
        self._conn.close()
        if not keep:
            _remove(self.path)

    def _mark(self, position: int) -> None:
        if position >= len(self._done):
            self._done.extend(b"\0" * (position + 1 - len(self._done)))
        self._done[position] = 1


# --- records -------------------------------------------------------------------------------

def encode(trial: Trial, verdict: Verdict, examples: dict[str, Any]) -> dict[str, Any]:
    """One journal record (short keys: there is one per exchange)."""
    ex = trial.exchange
    return {
        "id": ex.id, "c": ex.count, "e": verdict.endpoint, "s": verdict.state,
        "o": {role: _outcome(o) for role, o in trial.outcomes.items()},
        "d": [_div(d) for d in verdict.divergences],
        "u": [_div(d) for d in verdict.suppressed],
        "z": None if verdict.noise is None else [_div(d) for d in verdict.noise],
        "h": None if verdict.hidden is None else [[*_div(d), rule] for d, rule in verdict.hidden],
        "x": examples,
    }


def decode(rec: dict[str, Any]) -> tuple[Trial, Verdict, dict[str, Any]]:
    """A record back as the (Trial, Verdict) the tally counted, and its examples."""
    ep = rec["e"]
    divs = lambda items: tuple(Divergence(ep, *d[:4]) for d in items)  # noqa: E731
    ex = Exchange(rec["id"], Request("", "", ""), count=rec["c"])
    outcomes = {role: _from_outcome(o) for role, o in rec["o"].items()}
    verdict = Verdict(ep, rec["s"], divs(rec["d"]), divs(rec["u"]),
                      None if rec["z"] is None else divs(rec["z"]),
                      None if rec["h"] is None else tuple((Divergence(ep, *h[:4]), h[4])
                                                          for h in rec["h"]))
    return Trial(ex, outcomes), verdict, rec["x"]


def _div(d: Divergence) -> list[Any]:
    return [d.location, d.kind, d.old, d.new]


def _outcome(o: Outcome) -> list[Any]:
    if isinstance(o, Failure):
        return ["f", o.kind, o.detail, o.elapsed_s]
    return ["r", o.status, o.elapsed_s]


def _from_outcome(o: list[Any]) -> Outcome:
    if o[0] == "f":
        return Failure(o[1], o[2], o[3])
    return Response(o[1], (), b"", o[2])


# --- the fingerprint -----------------------------------------------------------------------

def fingerprint(captures: tuple[str, ...], config: ReplaySettings) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    files = []
    for c in captures:
        stat = Path(c).stat()
        files.append([str(Path(c).resolve()), stat.st_size, stat.st_mtime_ns])
    t = config.targets
    return {"captures": files, "targets": [t.old, t.new, t.old_replica, t.replay_old_twice],
            "methods": sorted(config.replay.methods)}


def _check_same(before: Any, now: dict[str, Any], out_dir: Path) -> None:
    if before == now:
        return
    before = before or {}
    what = [k for k in ("captures", "targets", "methods") if before.get(k) != now[k]]
    raise ResumeError(f"{out_dir}: cannot resume: the {' and '.join(what) or 'run'} differ "
                      "from the interrupted run's (give the same captures, targets and "
                      "--methods, or start a new run)")


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level="DEFERRED")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # survives a killed process, not power loss
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise ResumeError(f"{path}: cannot use the run journal: {exc}") from exc
    return conn


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
