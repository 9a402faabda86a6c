"""Rank stage, the result: `UsageTable`, production requests per endpoint, and its rendering.

    Tally.counts ──> build_frame() ──> UsageTable.counts (pandas) ──> rank.py, the report,
                                                                      `shadowdiff usage`
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from rich.table import Table

from shadowdiff.rank.usage.tally import OTHER_STATUS, STATUS_CLASSES

#: The columns of `UsageTable.counts`, in order.
COLUMNS = ("endpoint", "method", "requests", "share", *STATUS_CLASSES, OTHER_STATUS)


@dataclass(frozen=True)
class UsageTable:
    """Production requests per endpoint template, read from access logs.

    `counts` has one row per endpoint, busiest first: `endpoint` (`GET /users/{id}`),
    `method` (the methods seen, comma-joined), `requests`, `share` (of `total`), and the
    status mix as request counts in `1xx` ... `5xx` and `other` (no or odd status).
    """

    counts: pd.DataFrame
    """One row per endpoint; see the class docstring for the columns."""
    total: int
    """Requests counted (lines with a method and a target)."""
    malformed: int
    """Lines skipped because they do not fit the format."""
    malformed_example: str | None
    """The first malformed line, as `file:line N: text`."""
    files: tuple[str, ...]
    """The files read, in reading order."""
    first_seen: float | None = None
    """Epoch seconds of the earliest logged request, when the format has a time."""
    last_seen: float | None = None
    """Epoch seconds of the latest logged request."""
    no_request: int = 0
    """Well-formed lines without a usable request line (nginx logs `"-"` for those)."""
    formats: tuple[str, ...] = ()
    """The format each file was read as (same order as `files`)."""
    problems: tuple[str, ...] = ()
    """Non-fatal trouble, e.g. a half-written `.gz` read up to its break."""
    by_day: Mapping[tuple[str, float], int] = field(default_factory=dict)
    """(endpoint, UTC day start in epoch seconds) -> requests: what a usage window
    (`severity.weight_recent`) needs. Lines without a parsable time are in `counts` and
    `total` but in no day (see `undated`)."""

    @property
    def undated(self) -> int:
        """Requests counted in the totals but in no day bucket (no or unparsable time)."""
        return self.total - sum(self.by_day.values())

    @property
    def lines(self) -> int:
        """Every line read: requests, lines without a request, malformed lines."""
        return self.total + self.no_request + self.malformed

    def requests_by_endpoint(self) -> dict[str, int]:
        """endpoint -> requests, the shape `rank.Usage.counts` takes."""
        return {str(e): int(r) for e, r in zip(self.counts["endpoint"], self.counts["requests"])}


def build_frame(counts: Counter[tuple[str, str, str]]) -> tuple[pd.DataFrame, int]:
    """The per-endpoint frame (busiest first) and the total, from tally counts."""
    rows: dict[str, dict[str, int]] = {}
    methods: dict[str, set[str]] = {}
    for (endpoint, method, klass), n in counts.items():
        row = rows.setdefault(endpoint, dict.fromkeys((*STATUS_CLASSES, OTHER_STATUS), 0))
        row[klass] += n
        methods.setdefault(endpoint, set()).add(method)
    frame = pd.DataFrame.from_dict(rows, orient="index", dtype="int64")
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in COLUMNS})
        frame["endpoint"] = frame["endpoint"].astype(str)
        frame["method"] = frame["method"].astype(str)
        frame["share"] = frame["share"].astype(float)
        return frame[list(COLUMNS)], 0
    frame.index.name = "endpoint"
    frame = frame.reset_index()
    frame["method"] = [",".join(sorted(methods[e])) for e in frame["endpoint"]]
    frame["requests"] = frame[list((*STATUS_CLASSES, OTHER_STATUS))].sum(axis=1)
    total = int(frame["requests"].sum())
    frame["share"] = frame["requests"] / total
    frame = frame.sort_values(["requests", "endpoint"], ascending=[False, True])
    return frame[list(COLUMNS)].reset_index(drop=True), total


def render_usage_table(table: UsageTable, top: int = 20) -> Table:
    """The `shadowdiff usage` table: the busiest endpoints, their share and status mix.

    >>> from rich.console import Console
    >>> Console().print(render_usage_table(table))  # doctest: +SKIP
    """
    out = Table(title=_title(table), caption=_caption(table, top), title_justify="left",
                caption_justify="left")
    out.add_column("#", justify="right")
    out.add_column("endpoint", no_wrap=True)  # the one column worth reading whole
    out.add_column("requests", justify="right")
    out.add_column("share", justify="right")
    out.add_column("status mix")
    for i, row in enumerate(table.counts.head(top).itertuples(index=False), 1):
        values = row._asdict()
        out.add_row(str(i), str(values["endpoint"]), f"{int(values['requests']):,}",
                    f"{float(values['share']):.1%}", _status_mix(table, i - 1))
    return out


def _status_mix(table: UsageTable, i: int) -> str:
    row = table.counts.iloc[i]
    total = max(int(row["requests"]), 1)
    parts = [f"{k} {int(row[k]) / total:.0%}" for k in (*STATUS_CLASSES, OTHER_STATUS)
             if int(row[k])]
    return " ".join(parts)


def _title(table: UsageTable) -> str:
    span = ""
    if table.first_seen is not None and table.last_seen is not None:
        span = f", {_when(table.first_seen)} to {_when(table.last_seen)}"
    return (f"Production usage: {table.total:,} requests, {len(table.counts):,} endpoints, "
            f"{len(table.files)} file{'s' if len(table.files) != 1 else ''}{span}")


def _caption(table: UsageTable, top: int) -> str:
    notes = []
    if len(table.counts) > top:
        rest = table.counts["requests"].iloc[top:].sum()
        notes.append(f"{len(table.counts) - top:,} more endpoints ({int(rest):,} requests) "
                     "not shown")
    if table.no_request:
        notes.append(f"{table.no_request:,} lines without a request line (e.g. \"-\")")
    if table.malformed:
        notes.append(f"{table.malformed:,} malformed lines skipped; first: "
                     f"{table.malformed_example}")
    notes.extend(table.problems)
    return "\n".join(notes)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
