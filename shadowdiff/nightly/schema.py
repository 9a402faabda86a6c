"""The history store's SQLite schema, its migrations, and opening it safely.

`_MIGRATIONS[i]` takes a store from user_version i to i + 1. Append, never edit: a store
written by an older shadowdiff is brought forward one step at a time, each step in its
own transaction. A store that is not ours, is newer than this shadowdiff, is corrupt or
is locked raises `HistoryError` naming the file, and is left byte-identical.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shadowdiff.errors import HistoryError

_V1 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- recording order: what "previous" means
    run_id TEXT NOT NULL UNIQUE,
    run_dir TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    recorded_at TEXT NOT NULL,
    shadowdiff_version TEXT,
    captures TEXT NOT NULL,                  -- JSON list
    target_old TEXT,
    target_new TEXT,
    target_old_replica TEXT,
    interrupted INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    replayed INTEGER NOT NULL,
    identical INTEGER NOT NULL,
    diverged INTEGER NOT NULL,
    signature_count INTEGER NOT NULL,
    verified_share REAL NOT NULL,
    diverging_share REAL NOT NULL,
    untested_share REAL NOT NULL,
    totals TEXT NOT NULL                     -- JSON: summary.totals as recorded
);
CREATE TABLE signatures (
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    location TEXT NOT NULL,
    kind TEXT NOT NULL,
    rank INTEGER NOT NULL,
    affected INTEGER NOT NULL,
    replayed INTEGER NOT NULL,
    rate REAL NOT NULL,
    usage_share REAL NOT NULL,
    impact REAL NOT NULL,
    PRIMARY KEY (run_seq, key)
);
CREATE INDEX signatures_by_key ON signatures(key);
CREATE TABLE endpoints (
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    replayed INTEGER NOT NULL,
    identical INTEGER NOT NULL,
    diverged INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    usage_share REAL NOT NULL,
    latency_ms TEXT NOT NULL,                -- JSON: summary.endpoints[].latency_ms
    PRIMARY KEY (run_seq, endpoint)
);
CREATE TABLE acceptances (
    key TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    until TEXT,                              -- ISO date, last day it holds; NULL: no end
    accepted_at TEXT NOT NULL
);
"""


_MIGRATIONS: tuple[str, ...] = (_V1,)


SCHEMA_VERSION = len(_MIGRATIONS)


_OUR_TABLES = {"runs", "signatures", "endpoints", "acceptances", "sqlite_sequence"}


def connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    if path.is_dir():
        raise HistoryError("is a directory, not a history file", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a write is one
        # explicit transaction and reads never hold a lock open.
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open: {exc}", path=path) from exc
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def translated(path: Path, timeout_s: float) -> Iterator[None]:
    """sqlite3 errors -> HistoryError naming the file (chained, for debugging)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise HistoryError(f"locked by another process (waited {timeout_s:g} s); try "
                               "again when the other shadowdiff run has finished",
                               path=path) from exc
        raise HistoryError(f"cannot use: {exc}", path=path) from exc
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"damaged or not a SQLite database ({exc}); it was left as it "
                           "is: move it aside to start a new history", path=path) from exc


def check_and_migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse what is not ours before writing a byte; then bring the schema forward."""
    # Reading the schema is the first touch: a non-database file fails here, read-only.
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(f"written by a newer shadowdiff (schema {version}, this one "
                           f"knows up to {SCHEMA_VERSION})", path=path)
    if tables - _OUR_TABLES or (version == 0 and tables):
        raise HistoryError(f"a SQLite database, but not a shadowdiff history (tables: "
                           f"{', '.join(sorted(tables))})", path=path)
    if version:
        problem = conn.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise HistoryError(f"damaged ({problem}); it was left as it is", path=path)
    conn.execute("PRAGMA journal_mode = WAL")  # readers never block the nightly writer
    conn.execute("PRAGMA foreign_keys = ON")
    for step in range(version, SCHEMA_VERSION):
        _apply(conn, _MIGRATIONS[step], step + 1)


def _apply(conn: sqlite3.Connection, script: str, to_version: int) -> None:
    # executescript() would COMMIT on its own; run statement by statement in one
    # transaction so a failed migration leaves the previous version intact.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(to_version)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script; sqlite3 itself says where a statement ends (comments
    and string literals may hold semicolons)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete statement in a migration: {buffer.strip()[:60]}")
