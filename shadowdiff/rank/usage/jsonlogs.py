"""Rank stage, JSON access logs: blocks of JSON lines -> (method, target, status) counts.

    block ──> count_json_block() ──> pyarrow.json on the whole block (fast path)
                                 └─> orjson line by line, when the block has a bad line,
                                     mixed types or a request-line field (exact path)

Which key holds what is found on the first object of each file (nginx `escape=json`
formats, Caddy, ECS spellings; see JSON_CANDIDATES) unless `json_fields` says. A line
that is not a JSON object, or lacks the fields, is malformed; an object whose request
fields are empty (nginx logs a TLS hello sent to an HTTP port that way) has no request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from shadowdiff.rank.usage.sources import split_lines
from shadowdiff.rank.usage.tally import (GROUP_SCHEMA, REQUEST_LINE, BatchCounts, GroupKey,
                                    day_start, groups_table, parse_time, reduce_targets_table,
                                    regroup)

#: Where JSON access logs usually keep each field, tried in order (dots go into objects):
#: nginx `escape=json` formats, Caddy (`request.method`), ECS (`http.request.method`).
JSON_CANDIDATES: dict[str, tuple[str, ...]] = {
    "method": ("method", "request_method", "verb", "http_method", "request.method",
               "http.request.method"),
    "target": ("request_uri", "uri", "url", "path", "target", "request.uri", "request.url",
               "url.original", "url.path"),
    "request": ("request",),
    "query": ("args", "query_string", "query"),
    "status": ("status", "status_code", "response_code", "code", "response.status",
               "http.response.status_code"),
    "time": ("time", "time_iso8601", "time_local", "timestamp", "@timestamp", "ts", "msec",
             "datetime", "date"),
}


def _lookup(obj: Any, key: str) -> Any:
    if key in obj:
        return obj[key]
    for part in key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


@dataclass
class JsonPlan:
    """Which JSON key holds each role; unresolved roles are found on the first object."""

    given: Mapping[str, str] = field(default_factory=dict)
    keep_query: bool = False
    reduce: bool = False
    keys: dict[str, str] | None = None

    def resolve(self, obj: dict[str, Any]) -> dict[str, str]:
        keys = {role: key for role, key in self.given.items() if role in JSON_CANDIDATES}
        for role, candidates in JSON_CANDIDATES.items():
            if role not in keys:
                found = next((k for k in candidates if _lookup(obj, k) is not None), None)
                if found is not None:
                    keys[role] = found
        if "method" in keys and "target" in keys:
            keys.pop("request", None)  # method + target beat a request line
        return keys

    def usable(self, keys: Mapping[str, str]) -> bool:
        return "request" in keys or ("method" in keys and "target" in keys)


def count_json_batch(lines: pa.Array, plan: JsonPlan) -> BatchCounts:
    """Count JSON lines one by one with orjson (~250k lines/s): exact on any input.

    Targets lose their query here unless `plan.keep_query` (the text path drops it in
    the regex).
    """
    out = BatchCounts(lines=len(lines), groups=GROUP_SCHEMA.empty_table())
    rows: Counter[GroupKey] = Counter()
    times: dict[Any, float | None] = {}  # logged value -> epoch seconds, parsed once
    for i, raw in enumerate(lines.to_pylist()):
        key = _json_key(raw, plan, times)
        if key is None:
            out.malformed += 1
            if out.bad_index is None:
                out.bad_index, out.bad_text = i, raw
        elif key is not False:
            rows[key] += 1
        else:
            out.no_request += 1
    out.groups = groups_table(rows)
    if plan.reduce:
        out.groups = regroup(reduce_targets_table(out.groups))
    parsed = [t for t in times.values() if t is not None]
    out.time_min, out.time_max = (min(parsed), max(parsed)) if parsed else (None, None)
    return out


def _json_key(raw: bytes, plan: JsonPlan, times: dict[Any, float | None]
              ) -> GroupKey | None | bool:
    """(method, target, status, day); None when malformed, False when it has no request."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if plan.keys is None or not plan.usable(plan.keys):
        plan.keys = plan.resolve(obj)
    keys = plan.keys
    if not plan.usable(keys):
        return None
    method, target = _json_request(obj, keys)
    if method is None:
        return target  # False: fields there but no request in them; None: fields missing
    status = _lookup(obj, keys["status"]) if "status" in keys else None
    day = _day_of(_lookup(obj, keys["time"]), times) if "time" in keys else None
    if not plan.keep_query:
        target = target.split("?", 1)[0]
    return (method.upper().encode(), target.encode(errors="replace"),
            None if status in (None, "") else str(status).encode(), day)


def _day_of(value: Any, times: dict[Any, float | None]) -> int | None:
    """The UTC day start of a logged time, parsing each distinct value once."""
    if isinstance(value, (dict, list)):
        return None  # not a time, and not hashable
    if value not in times:
        times[value] = parse_time(value)
    return day_start(times[value])


def _json_request(obj: dict[str, Any], keys: Mapping[str, str]
                  ) -> tuple[str, str] | tuple[None, bool | None]:
    """(method, target); or (None, False) for an empty request, (None, None) for none."""
    if "method" in keys:
        method, target = _lookup(obj, keys["method"]), _lookup(obj, keys["target"])
        if not isinstance(method, str) or not isinstance(target, str):
            return None, None
        if not method or method == "-" or not target:
            return None, False  # nginx logs a bad request with empty fields
        query = _lookup(obj, keys["query"]) if "query" in keys else None
        if isinstance(query, str) and query and "?" not in target:
            target = f"{target}?{query.lstrip('?')}"
        return method, target
    request = _lookup(obj, keys["request"])
    if not isinstance(request, str):
        return None, None
    m = REQUEST_LINE.match(request.encode())
    return (None, False) if m is None else (m.group(1).decode(), m.group(2).decode())


# -- the fast path -----------------------------------------------------------------------


def count_json_block(block: bytes, plan: JsonPlan) -> BatchCounts:
    """Count a block of JSON lines: Arrow's JSON reader when it can, orjson when not."""
    lines = split_lines(block)
    if plan.keys is None:
        _resolve_from(lines, plan)
    fast = _count_arrow(block, len(lines), plan) if _fast_ok(plan) else None
    return fast if fast is not None else count_json_batch(lines, plan)


def resolve_keys(block: bytes, plan: JsonPlan) -> None:
    """Settle the plan's keys from a file's first block, before any block is counted: every
    block (in whichever thread or worker process) then reads the same keys."""
    if plan.keys is None:
        _resolve_from(split_lines(block), plan)


def _resolve_from(lines: pa.Array, plan: JsonPlan) -> None:
    for raw in lines[:100].to_pylist():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            plan.keys = plan.resolve(obj)
            return


def _fast_ok(plan: JsonPlan) -> bool:
    keys = plan.keys or {}
    return "method" in keys and "target" in keys and not ("query" in keys and plan.keep_query)


def _count_arrow(block: bytes, n: int, plan: JsonPlan) -> BatchCounts | None:
    """None when the block needs the exact path (a bad line, blank lines, odd types)."""
    try:
        table = pj.read_json(pa.BufferReader(block),
                             read_options=pj.ReadOptions(use_threads=False,
                                                         block_size=len(block) + 1),
                             parse_options=pj.ParseOptions(newlines_in_values=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    keys = plan.keys or {}
    method, target = _column(table, keys["method"]), _column(table, keys["target"])
    if (table.num_rows != n or method is None or target is None or method.null_count
            or target.null_count or not pa.types.is_string(method.type)
            or not pa.types.is_string(target.type)):
        return None
    status = _column(table, keys.get("status", ""))
    status = pa.nulls(n, pa.string()) if status is None else status.cast(pa.string())
    has_request = pc.and_(pc.invert(pc.is_in(method, pa.array(["", "-"]))),
                          pc.not_equal(target, ""))
    days, lo, hi = _days(_column(table, keys.get("time", "")), n)
    keyed = pa.table({"method": method, "target": target, "status": status,
                      "day": days}).filter(has_request)
    groups = keyed.group_by(["method", "target", "status", "day"], use_threads=False).aggregate(
        [([], "count_all")]).rename_columns(["method", "target", "status", "day", "count"])
    return BatchCounts(lines=n, groups=_finish_groups(groups, plan),
                       no_request=n - keyed.num_rows, time_min=lo, time_max=hi)


def _finish_groups(groups: pa.Table, plan: JsonPlan) -> pa.Table:
    # methods upper-cased and queries dropped on distinct rows, not per line
    groups = groups.set_column(0, "method", pc.utf8_upper(groups["method"]))
    if not plan.keep_query:
        groups = groups.set_column(1, "target",
                                   pc.replace_substring_regex(groups["target"], r"\?.*", ""))
    groups = groups.cast(GROUP_SCHEMA)
    return regroup(reduce_targets_table(groups) if plan.reduce else groups)


def _column(table: pa.Table, key: str) -> pa.ChunkedArray | None:
    if not key:
        return None
    if key in table.column_names:
        return table[key]
    head, *rest = key.split(".")
    if head not in table.column_names or not rest:
        return None
    col: Any = table[head]
    for part in rest:
        if not pa.types.is_struct(col.type) or col.type.get_field_index(part) < 0:
            return None
        col = pc.struct_field(col, part)
    return col  # type: ignore[no-any-return]


def _days(col: pa.ChunkedArray | None, n: int
          ) -> tuple[pa.Array, float | None, float | None]:
    """Per row, the UTC day start (int64, null without a time), and the time range."""
    if col is None:
        return pa.nulls(n, pa.int64()), None, None
    col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        secs = pc.divide(col.cast(pa.timestamp("ms", "UTC")).cast(pa.int64()).cast(pa.float64()),
                         1000.0)
        index = None
    else:
        # strings or numbers: few distinct values per block, parsed in Python
        encoded = pc.dictionary_encode(col)
        secs = pa.array([parse_time(v) for v in encoded.dictionary.to_pylist()], pa.float64())
        index = encoded.indices
    lo, hi = pc.min_max(secs).values()
    starts = pc.multiply(pc.floor(pc.divide(secs, 86_400.0)), 86_400.0).cast(pa.int64())
    return (starts if index is None else starts.take(index)), lo.as_py(), hi.as_py()
