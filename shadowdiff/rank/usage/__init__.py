"""Rank stage: production access logs -> requests per endpoint template (`UsageTable`).

    access.log*, *.gz ──> read_usage() ──> UsageTable ──> rank.py (impact, coverage)
                                                      └─> render_usage_table() (`shadowdiff usage`)

Modules: `formats` (log_format / LogFormat strings -> regexes), `sources` (files, globs,
rotation, decompression, Arrow line blocks), `tally` (regex + group-by per block, endpoint
per distinct target), `jsonlogs` (JSON lines), `reader` (the entry point), `table` (the
result and its rendering).
"""

from __future__ import annotations

from shadowdiff.rank.usage.formats import LogFormat, named_format, parse_log_format
from shadowdiff.rank.usage.reader import read_usage, resolve_format, sniff_format
from shadowdiff.rank.usage.table import COLUMNS, UsageTable, render_usage_table

__all__ = [
    "COLUMNS",
    "LogFormat",
    "UsageTable",
    "named_format",
    "parse_log_format",
    "read_usage",
    "render_usage_table",
    "resolve_format",
    "sniff_format",
]
