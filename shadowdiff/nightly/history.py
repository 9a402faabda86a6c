"""Run history: every finished run's headline figures and signatures, in SQLite.

Sits after the report stage: the pipeline records each summary here, and the reports
read back "since last run" (new, resolved, persisting signatures), the trend of the
diverging share, and the accepted divergences that no longer fail a gate.

An embedded store, not a home-made file database (DESIGN.md, "Scale"): stdlib sqlite3
in WAL mode, one transaction per write so a crash never leaves half a run, the schema
versioned with ``PRAGMA user_version``. A file that is not a history, is damaged, or is
locked by another writer raises `HistoryError` naming the file; nothing here ever
rewrites or deletes a past run to "repair" a store.

>>> with History.open("reports/history.sqlite") as h:   # doctest: +SKIP
...     h.record(summary, "reports/run-20240501-020000")
...     h.since_last(summary).new
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from shadowdiff.errors import HistoryError
from shadowdiff.nightly.schema import check_and_migrate, connect, translated

__all__ = ["DEFAULT_PATH", "Acceptance", "History", "HistoryError", "RunRow", "SinceLast",
           "TrendPoint"]

DEFAULT_PATH = Path("reports") / "history.sqlite"
DEFAULT_TIMEOUT_S = 5.0  # how long to wait for another writer before calling the store locked

#: Figures kept per signature; a subset of summary.json's signatures[] entries.
SIGNATURE_FIGURES = ("rank", "affected", "replayed", "rate", "usage_share", "impact")


# --- values -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunRow:
    """One recorded run's headline figures, as `shadowdiff history` lists them."""

    run_id: str
    run_dir: str
    started_at: str
    finished_at: str | None
    captures: tuple[str, ...]
    target_old: str | None
    target_new: str | None
    interrupted: bool
    exit_code: int
    verdict: str
    replayed: int
    identical: int
    diverged: int
    signature_count: int
    verified_share: float
    diverging_share: float
    untested_share: float


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A known, intended divergence: it stays in reports but fails no gate until `until`."""

    key: str
    reason: str
    until: dt.date | None     # last day the acceptance holds; None: until withdrawn
    accepted_at: str          # ISO 8601 timestamp, UTC

    def active(self, today: dt.date) -> bool:
        """True while the acceptance holds (through its `until` day)."""
        return self.until is None or today <= self.until


@dataclass(frozen=True, slots=True)
class SinceLast:
    """How this run's signatures compare with the last complete recorded run.

    Each dict maps signature key -> figures (SIGNATURE_FIGURES plus endpoint, location,
    kind). `new` and `persisting` carry this run's figures (persisting ones also
    `previous_impact`); `resolved` carries the previous run's. With no previous run
    (`previous_run_id` None), every signature is new.
    """

    previous_run_id: str | None
    new: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)
    persisting: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for a `since_last` key in summary.json."""
        return {"previous_run_id": self.previous_run_id, "new": self.new,
                "resolved": self.resolved, "persisting": self.persisting}


class TrendPoint(NamedTuple):
    """One run on the trend chart (a tuple, oldest first in `History.trend`)."""

    run_id: str
    started_at: str
    diverging_share: float
    verified_share: float
    untested_share: float


# --- the store ----------------------------------------------------------------------------

class History:
    """An open history store. Use `History.open(path)` as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, timeout_s: float) -> None:
        self._conn = conn
        self.path = path
        self._timeout_s = timeout_s

    @classmethod
    @contextmanager
    def open(cls, path: str | Path = DEFAULT_PATH, *,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[History]:
        """Open (creating when missing) the store at `path`; closes it on exit.

        Raises HistoryError for a file that is not a shadowdiff history, a damaged one,
        one written by a newer shadowdiff, or one another process keeps locked longer
        than `timeout_s`. The file is left exactly as it was in every one of those cases.
        """
        path = Path(path)
        conn = connect(path, timeout_s)
        try:
            with translated(path, timeout_s):
                check_and_migrate(conn, path)
            yield cls(conn, path, timeout_s)
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it (crash included)."""
        with translated(self.path, self._timeout_s):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with translated(self.path, self._timeout_s):
            return self._conn.execute(sql, params).fetchall()

    # -- runs --------------------------------------------------------------------------

    def record(self, summary: Mapping[str, Any], run_dir: str | Path) -> None:
        """Record a finished run's summary. Recording the same run id again replaces it
        in place (a re-rendered or resumed run), keeping its position in the order."""
        run_row, sig_rows, ep_rows = _rows_from_summary(summary, str(run_dir), self.path)
        with self._write() as conn:
            conn.execute(_UPSERT_RUN, run_row)
            seq = conn.execute("SELECT seq FROM runs WHERE run_id = ?",
                               (run_row["run_id"],)).fetchone()[0]
            conn.execute("DELETE FROM signatures WHERE run_seq = ?", (seq,))
            conn.execute("DELETE FROM endpoints WHERE run_seq = ?", (seq,))
            conn.executemany(_INSERT_SIGNATURE, [(seq, *row) for row in sig_rows])
            conn.executemany(_INSERT_ENDPOINT, [(seq, *row) for row in ep_rows])

    def runs(self, limit: int = 50) -> list[RunRow]:
        """The most recent runs, newest first."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY seq DESC LIMIT ?",
                          (limit,))
        return [_run_row(r) for r in rows]

    def previous(self, run_id: str, *, complete_only: bool = True) -> RunRow | None:
        """The run recorded just before `run_id` (or the latest, when `run_id` is not
        recorded yet). Interrupted runs are skipped by default: their missing signatures
        would read as "resolved"."""
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id != ?"
            " AND seq < COALESCE((SELECT seq FROM runs WHERE run_id = ?), 1e18)"
            " AND (? = 0 OR interrupted = 0) ORDER BY seq DESC LIMIT 1",
            (run_id, run_id, int(complete_only)))
        return _run_row(rows[0]) if rows else None

    def signatures(self, run_id: str) -> dict[str, dict[str, Any]]:
        """A recorded run's signatures: key -> figures."""
        rows = self._read(
            "SELECT s.* FROM signatures s JOIN runs r ON r.seq = s.run_seq WHERE r.run_id = ?"
            " ORDER BY s.rank", (run_id,))
        return {r["key"]: _figures(r) for r in rows}

    def seen(self, key: str) -> bool:
        """Whether any recorded run showed this signature (to warn on a mistyped accept)."""
        return bool(self._read("SELECT 1 FROM signatures WHERE key = ? LIMIT 1", (key,)))

    def since_last(self, summary: Mapping[str, Any]) -> SinceLast:
        """New, resolved and persisting signatures against the last complete run."""
        current = {s["key"]: _figures(s) for s in _signatures_and_tls(summary)}
        prev = self.previous(str(summary["run"]["id"]))
        if prev is None:
            return SinceLast(None, new=current)
        before = self.signatures(prev.run_id)
        persisting = {k: {**v, "previous_impact": before[k]["impact"]}
                      for k, v in current.items() if k in before}
        return SinceLast(
            prev.run_id,
            new={k: v for k, v in current.items() if k not in before},
            resolved={k: v for k, v in before.items() if k not in current},
            persisting=persisting)

    def trend(self, limit: int = 30) -> list[TrendPoint]:
        """The last `limit` runs' coverage shares, oldest first (for the trend chart)."""
        rows = self._read(
            "SELECT run_id, started_at, diverging_share, verified_share, untested_share"
            " FROM (SELECT * FROM runs ORDER BY seq DESC LIMIT ?) ORDER BY seq", (limit,))
        return [TrendPoint(*tuple(r)) for r in rows]

    # -- accepted divergences ----------------------------------------------------------

    def accept(self, key: str, reason: str, until: dt.date | None = None) -> Acceptance:
        """Accept a signature (replacing an earlier acceptance of the same key)."""
        key, reason = key.strip(), reason.strip()
        if not key:
            raise ValueError("a signature key is needed (summary.json signatures[].key)")
        if not reason:
            raise ValueError(f"accepting {key!r} needs a reason")
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO acceptances (key, reason, until, accepted_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET reason = excluded.reason,"
                " until = excluded.until, accepted_at = excluded.accepted_at",
                (key, reason, until.isoformat() if until else None, now))
        return Acceptance(key, reason, until, now)

    def unaccept(self, key: str) -> bool:
        """Withdraw an acceptance; False when there was none."""
        with self._write() as conn:
            return conn.execute("DELETE FROM acceptances WHERE key = ?", (key,)).rowcount > 0

    def accepted(self, today: dt.date | None = None, *,
                 include_expired: bool = False) -> dict[str, Acceptance]:
        """Acceptances in force on `today` (default: today, UTC). Expired ones stay in
        the store, so `include_expired=True` can still list them."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        rows = self._read("SELECT key, reason, until, accepted_at FROM acceptances ORDER BY key")
        found = (Acceptance(r["key"], r["reason"],
                            dt.date.fromisoformat(r["until"]) if r["until"] else None,
                            r["accepted_at"]) for r in rows)
        return {a.key: a for a in found if include_expired or a.active(today)}


# --- helpers ------------------------------------------------------------------------------

_RUN_COLUMNS = ", ".join(f.name for f in fields(RunRow))

_UPSERT_RUN = """
INSERT INTO runs (run_id, run_dir, started_at, finished_at, recorded_at, shadowdiff_version,
    captures, target_old, target_new, target_old_replica, interrupted, exit_code, verdict,
    replayed, identical, diverged, signature_count, verified_share, diverging_share,
    untested_share, totals)
VALUES (:run_id, :run_dir, :started_at, :finished_at, :recorded_at, :shadowdiff_version,
    :captures, :target_old, :target_new, :target_old_replica, :interrupted, :exit_code,
    :verdict, :replayed, :identical, :diverged, :signature_count, :verified_share,
    :diverging_share, :untested_share, :totals)
ON CONFLICT(run_id) DO UPDATE SET run_dir = excluded.run_dir,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    recorded_at = excluded.recorded_at, shadowdiff_version = excluded.shadowdiff_version,
    captures = excluded.captures, target_old = excluded.target_old,
    target_new = excluded.target_new, target_old_replica = excluded.target_old_replica,
    interrupted = excluded.interrupted, exit_code = excluded.exit_code,
    verdict = excluded.verdict, replayed = excluded.replayed, identical = excluded.identical,
    diverged = excluded.diverged, signature_count = excluded.signature_count,
    verified_share = excluded.verified_share, diverging_share = excluded.diverging_share,
    untested_share = excluded.untested_share, totals = excluded.totals
"""
_INSERT_SIGNATURE = ("INSERT INTO signatures (run_seq, key, endpoint, location, kind, rank,"
                     " affected, replayed, rate, usage_share, impact)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_ENDPOINT = ("INSERT INTO endpoints (run_seq, endpoint, replayed, identical, diverged,"
                    " failed, usage_share, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _rows_from_summary(summary: Mapping[str, Any], run_dir: str, path: Path
                       ) -> tuple[dict[str, Any], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Everything to insert, built before the transaction opens (a bad summary writes
    nothing). Raises ValueError naming the missing key."""
    try:
        return _run_values(summary, run_dir), _signature_values(summary), _endpoint_values(summary)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"cannot record into {path}: summary lacks {exc}") from exc


def _run_values(summary: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
    run, totals, cov = summary["run"], summary["totals"], summary["coverage"]
    targets = run.get("targets") or {}
    return {
        "run_id": str(run["id"]), "run_dir": run_dir, "started_at": run["started_at"],
        "finished_at": run.get("finished_at"),
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "shadowdiff_version": run.get("shadowdiff_version"),
        "captures": json.dumps(list(run.get("captures", []))),
        "target_old": targets.get("old"), "target_new": targets.get("new"),
        "target_old_replica": targets.get("old_replica"),
        "interrupted": int(bool(run.get("interrupted"))), "exit_code": int(summary["exit_code"]),
        "verdict": str(summary["verdict"]), "replayed": int(totals["replayed"]),
        "identical": int(totals["identical"]), "diverged": int(totals["diverged"]),
        "signature_count": len(summary["signatures"]),
        "verified_share": float(cov["verified_share"]),
        "diverging_share": float(cov["diverging_share"]),
        "untested_share": float(cov["untested_share"]),
        "totals": json.dumps(totals, sort_keys=True),
    }


def _signature_values(summary: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["key"], s["endpoint"], s["location"], s["kind"], int(s["rank"]),
             int(s["affected"]), int(s["replayed"]), float(s["rate"]),
             float(s["usage_share"]), float(s["impact"])) for s in _signatures_and_tls(summary)]


def _signatures_and_tls(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The summary's signatures, and its certificate divergences (summary `tls`) as
    signatures of endpoint `(tls)`, so "since last run" says when a certificate changed.
    A certificate is met by every request to the target: each touches all the traffic
    replayed (rate, usage share and impact 1), and ranks after the body signatures."""
    signatures = list(summary["signatures"])
    replayed = int(summary["totals"]["replayed"])
    for i, d in enumerate((summary.get("tls") or {}).get("divergences", [])):
        signatures.append({"key": d["key"], "endpoint": "(tls)", "location": f"tls.{d['fact']}",
                           "kind": d["kind"], "rank": len(summary["signatures"]) + i + 1,
                           "affected": replayed, "replayed": replayed, "rate": 1.0,
                           "usage_share": 1.0, "impact": 1.0})
    return signatures


def _endpoint_values(summary: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    return [(e["endpoint"], int(e["replayed"]), int(e["identical"]), int(e["diverged"]),
             int(e["failed"]), float(e["usage_share"]), json.dumps(e.get("latency_ms") or {}))
            for e in summary.get("endpoints", [])]


_FIGURE_KEYS = ("endpoint", "location", "kind", *SIGNATURE_FIGURES)


def _figures(row: Mapping[str, Any] | sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in _FIGURE_KEYS}


def _run_row(row: sqlite3.Row) -> RunRow:
    values: dict[str, Any] = dict(zip(row.keys(), tuple(row)))
    values["captures"] = tuple(json.loads(values["captures"]))
    values["interrupted"] = bool(values["interrupted"])
    return RunRow(**values)

