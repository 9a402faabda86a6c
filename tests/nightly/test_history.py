"""shadowdiff.nightly.history: recording runs, since-last-run, trend, acceptances, bad stores."""

from __future__ import annotations

from testpaths import GOLDEN
import copy
import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from shadowdiff.errors import ShadowdiffError
from shadowdiff.nightly.history import DEFAULT_PATH, History, HistoryError
from shadowdiff.nightly.schema import SCHEMA_VERSION

GOLDEN = GOLDEN / "summary.json"


def make_summary(run_id: str, keys: list[str], *, diverging: float = 0.4,
                 interrupted: bool = False) -> dict[str, Any]:
    """The golden summary with its own run id and one signature per key."""
    summary = json.loads(GOLDEN.read_text(encoding="utf-8"))
    template = summary["signatures"][0]
    sigs = []
    for rank, key in enumerate(keys, 1):
        endpoint, location, kind = key.rsplit(" ", 2)
        sig = copy.deepcopy(template)
        sig.update(rank=rank, key=key, endpoint=endpoint, location=location, kind=kind,
                   impact=0.1 / rank)
        sigs.append(sig)
    summary["signatures"] = sigs
    summary["run"]["id"] = run_id
    summary["run"]["interrupted"] = interrupted
    summary["coverage"]["diverging_share"] = diverging
    return summary


A = "GET /users/{id} body.email field_missing"
B = "GET /orders/{id} body.items[*].price type_changed"
C = "GET /search body.hint value_changed"
D = "GET /health status status_changed"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "reports" / "history.sqlite"


def test_default_path_is_under_reports() -> None:
    assert DEFAULT_PATH == Path("reports/history.sqlite")


def test_three_runs_since_last_says_exactly_what_changed(db: Path) -> None:
    with History.open(db) as h:
        for run_id, keys in (("r1", [A, B]), ("r2", [A, B, C]), ("r3", [A, C, D])):
            summary = make_summary(run_id, keys)
            h.record(summary, f"reports/{run_id}")
        since = h.since_last(make_summary("r3", [A, C, D]))
        assert since.previous_run_id == "r2"
        assert set(since.new) == {D}
        assert set(since.resolved) == {B}
        assert set(since.persisting) == {A, C}
        assert since.persisting[C]["previous_impact"] == pytest.approx(0.1 / 3)
        assert since.persisting[C]["impact"] == pytest.approx(0.1 / 2)
        assert since.resolved[B]["rank"] == 2  # the previous run's figures
        assert [r.run_id for r in h.runs()] == ["r3", "r2", "r1"]
        assert json.loads(json.dumps(since.to_dict()))["new"][D]["kind"] == "status_changed"


def _with_certificate(summary: dict[str, Any], issuer: str | None) -> dict[str, Any]:
    """`summary` whose new target's certificate differs in issuer (None: no difference)."""
    divergences = [] if issuer is None else [
        {"key": "(tls) tls.issuer tls_issuer_changed", "kind": "tls_issuer_changed",
         "fact": "issuer", "old": "old CA", "new": issuer, "accepted": False}]
    summary["tls"] = {"targets": {}, "divergences": divergences, "insecure": []}
    return summary


def test_a_certificate_that_changed_overnight_is_new_since_last_run(db: Path) -> None:
    key = "(tls) tls.issuer tls_issuer_changed"
    with History.open(db) as h:
        h.record(_with_certificate(make_summary("r1", [A]), None), "reports/r1")
        since = h.since_last(_with_certificate(make_summary("r2", [A]), "new CA"))
        assert set(since.new) == {key} and set(since.persisting) == {A}
        assert since.new[key]["endpoint"] == "(tls)" and since.new[key]["location"] == "tls.issuer"
        h.record(_with_certificate(make_summary("r2", [A]), "new CA"), "reports/r2")
        assert h.seen(key)  # so `shadowdiff accept` knows the key
        since = h.since_last(_with_certificate(make_summary("r3", [A]), None))
        assert set(since.resolved) == {key} and not since.new


def test_since_last_for_a_run_not_recorded_yet_uses_the_latest(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A]), "d1")
        since = h.since_last(make_summary("r2", [B]))
    assert (since.previous_run_id, set(since.new), set(since.resolved)) == ("r1", {B}, {A})


def test_first_run_every_signature_is_new(db: Path) -> None:
    with History.open(db) as h:
        since = h.since_last(make_summary("r1", [A, B]))
    assert since.previous_run_id is None
    assert set(since.new) == {A, B} and not since.resolved and not since.persisting


def test_interrupted_runs_are_not_a_baseline(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A, B]), "d1")
        h.record(make_summary("r2", [A], interrupted=True), "d2")
        assert h.previous("r3").run_id == "r1"  # type: ignore[union-attr]
        assert h.previous("r3", complete_only=False).run_id == "r2"  # type: ignore[union-attr]
        assert h.previous("r1") is None
        assert not h.since_last(make_summary("r3", [A, B])).resolved


def test_recording_a_run_again_replaces_it_in_place(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A]), "d1")
        h.record(make_summary("r2", [A]), "d2")
        h.record(make_summary("r1", [A, B]), "d1-again")
        rows = h.runs()
        assert [r.run_id for r in rows] == ["r2", "r1"]
        assert rows[1].run_dir == "d1-again" and rows[1].signature_count == 2
        assert set(h.signatures("r1")) == {A, B}


def test_run_rows_and_trend(db: Path) -> None:
    with History.open(db) as h:
        for i in range(5):
            h.record(make_summary(f"r{i}", [A], diverging=0.5 - i / 10), f"d{i}")
        trend = h.trend(limit=3)
        row = h.runs(limit=1)[0]
    assert [p.run_id for p in trend] == ["r2", "r3", "r4"]  # oldest first
    assert [round(p.diverging_share, 2) for p in trend] == [0.3, 0.2, 0.1]
    run_id, started_at, diverging, verified, untested = trend[-1]
    assert (run_id, verified, untested) == ("r4", 0.55, 0.05)
    assert row.captures == ("captures/demo.jsonl",) and row.exit_code == 1
    assert row.target_new == "http://127.0.0.1:8002" and row.interrupted is False


def test_the_store_survives_reopening(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A]), "d1")
    with History.open(db) as h:
        assert [r.run_id for r in h.runs()] == ["r1"]
        assert h.seen(A) and not h.seen(B)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- accepted divergences -------------------------------------------------------------

def test_accept_expire_and_withdraw(db: Path) -> None:
    today = dt.date(2024, 5, 1)
    with History.open(db) as h:
        h.accept(A, "field renamed on purpose", until=dt.date(2024, 5, 1))
        h.accept(B, "prices are strings now")
        assert set(h.accepted(today)) == {A, B}  # the until day still counts
        later = h.accepted(today + dt.timedelta(days=1))
        assert set(later) == {B}
        assert set(h.accepted(today + dt.timedelta(days=1), include_expired=True)) == {A, B}
        h.accept(A, "extended", until=dt.date(2024, 6, 1))  # re-accepting replaces
        assert h.accepted(today + dt.timedelta(days=1))[A].reason == "extended"
        assert h.unaccept(B) is True and h.unaccept(B) is False
        assert set(h.accepted(today)) == {A}
        assert h.accepted(today)[A].until == dt.date(2024, 6, 1)


def test_accept_needs_a_key_and_a_reason(db: Path) -> None:
    with History.open(db) as h:
        with pytest.raises(ValueError, match="reason"):
            h.accept(A, "  ")
        with pytest.raises(ValueError, match="key"):
            h.accept("", "why")


# --- writes are all or nothing --------------------------------------------------------

def test_a_failure_mid_record_leaves_no_half_run(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A, B]), "d1")
    with closing(sqlite3.connect(db)) as conn:  # a real failure inside the transaction
        conn.execute(f"CREATE TRIGGER boom BEFORE INSERT ON signatures WHEN NEW.key = '{D}'"
                     " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        conn.commit()
    with History.open(db) as h:
        with pytest.raises(HistoryError, match="disk on fire"):
            h.record(make_summary("r2", [C, D]), "d2")  # run row and C went in before D
        assert [r.run_id for r in h.runs()] == ["r1"]
        assert not h.seen(C)
        with pytest.raises(HistoryError):
            h.record(make_summary("r1", [D]), "d1")  # a replacement fails whole, too
        assert set(h.signatures("r1")) == {A, B}


def test_a_summary_missing_figures_writes_nothing(db: Path) -> None:
    summary = make_summary("r1", [A])
    del summary["signatures"][0]["impact"]
    with History.open(db) as h:
        with pytest.raises(ValueError, match="impact"):
            h.record(summary, "d1")
        assert h.runs() == []


# --- bad stores: a clear error, and the file left exactly as it was -------------------

def _damaged_copy(db: Path) -> Path:
    with History.open(db) as h:
        for i in range(40):  # enough rows for several pages
            h.record(make_summary(f"r{i}", [A, B, C, D]), "x" * 200)
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page:len(data) - page] = b"\xa5" * (len(data) - 3 * page)
    db.write_bytes(bytes(data))
    return db


@pytest.mark.parametrize("content", [b"not a database" * 100, bytes(range(256)) * 16])
def test_a_file_that_is_not_a_database_is_refused_untouched(db: Path, content: bytes) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(content)
    with pytest.raises(HistoryError, match=str(db)) as info:
        with History.open(db):
            pass
    assert isinstance(info.value, ShadowdiffError) and info.value.path == str(db)
    assert db.read_bytes() == content
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]  # no -wal, no -shm


def test_a_damaged_history_is_refused_untouched(db: Path) -> None:
    damaged = _damaged_copy(db).read_bytes()
    with pytest.raises(HistoryError, match="damaged|malformed") as info:
        with History.open(db) as h:
            h.record(make_summary("new", [A]), "d")
    assert str(db) in str(info.value)
    assert db.read_bytes() == damaged


def test_another_database_is_not_taken_over(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
        conn.commit()
    before = db.read_bytes()
    with pytest.raises(HistoryError, match="not a shadowdiff history"):
        with History.open(db):
            pass
    assert db.read_bytes() == before


def test_a_newer_schema_is_refused(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A]), "d1")
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    with pytest.raises(HistoryError, match="newer shadowdiff"):
        with History.open(db):
            pass


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="directory"):
        with History.open(tmp_path):
            pass


def test_a_locked_store_gives_a_clear_error_and_keeps_past_runs(db: Path) -> None:
    with History.open(db) as h:
        h.record(make_summary("r1", [A]), "d1")
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with History.open(db, timeout_s=0.05) as h:
            locked = r"locked by another process \(waited 0.05 s\)"
            with pytest.raises(HistoryError, match=locked) as info:
                h.record(make_summary("r2", [B]), "d2")
            assert str(db) in str(info.value)
            with pytest.raises(HistoryError, match="locked"):
                h.accept(A, "renamed")
        other.execute("ROLLBACK")
    with History.open(db) as h:
        assert [r.run_id for r in h.runs()] == ["r1"]
        assert set(h.signatures("r1")) == {A}


def test_a_new_store_locked_while_being_created(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("CREATE TABLE runs (x)")  # another shadowdiff mid-creation
        with pytest.raises(HistoryError, match="locked"):
            with History.open(db, timeout_s=0.05):
                pass
        other.execute("ROLLBACK")
