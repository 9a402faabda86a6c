"""report.md: the ranked divergences, short enough to paste in a ticket or a CI job summary.

Report stage: reads only the summary dict (see docs/report-schema.md), never the captured
exchanges, so it stays small. The value formatters here (`format_pct`, `format_value`)
are shared with html.py so both reports print the same figures.

Everything that comes from traffic (endpoints, locations, values) is put in code spans
with table pipes escaped, so captured text can neither break a table nor inject markup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from shadowdiff.model import DIVERGENCE_KINDS, FAILURE_KINDS, ROLES, USAGE_SOURCES
from shadowdiff.report.text import format_pct, md_code, md_text, truncate

#: Kinds whose `new` side does not exist: the example shows "(absent)" instead of null.
_NEW_ABSENT = frozenset({"field_missing", "header_missing"})
_OLD_ABSENT = frozenset({"field_added", "header_added"})

_VOCABULARY = frozenset((*DIVERGENCE_KINDS, *FAILURE_KINDS, *ROLES, "measurement", "replica", "rule"))


def render_markdown(
    summary: Mapping[str, Any], *, max_signatures: int = 25, max_uncovered: int = 10
) -> str:
    """The text of report.md: deterministic for a given summary.

    >>> render_markdown(summary).splitlines()[0]   # doctest: +SKIP
    '# shadowdiff: 3 significant divergences'
    """
    from shadowdiff.report import nightly_md, tls
    from shadowdiff.report.breakers import breaker_section_md

    sections = [
        f"# shadowdiff: {md_text(summary['verdict'])}",
        _run_line(summary),
        _warnings(summary),
        _totals_line(summary),
        _coverage_line(summary),
        nightly_md.gate_section(summary),
        nightly_md.since_last_section(summary),
        _signatures_section(summary["signatures"], max_signatures),
        nightly_md.latency_section_md(summary),
        _ranking_line(summary.get("ranking")),
        _noise_section(summary.get("noise"), max_uncovered),
        _failures_section(summary["failures"]),
        tls.markdown_section(summary),
        breaker_section_md(summary),
        _uncovered_section(summary["uncovered"], max_uncovered),
        _suggestion_section(summary.get("capture_suggestion"), max_uncovered),
        _skipped_line(summary["totals"]),
        _usage_line(summary["usage"]),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# --- shared formatters ---------------------------------------------------------------


def format_value(value: Any, limit: int = 60) -> str:
    """A JSON value on one line, truncated to `limit` characters with an ellipsis.

    >>> format_value({"a": [1, 2]}), format_value("x" * 10, limit=5)
    ('{"a":[1,2]}', '"xxx…')
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return truncate(text, limit)


def example_sides(kind: str, example: Mapping[str, Any], limit: int = 60) -> tuple[str | None, str | None]:
    """The example's old and new values formatted, None for a side that does not exist."""
    old_value, new_value = differing_window(example.get("old"), example.get("new"))
    old = None if kind in _OLD_ABSENT else format_value(old_value, limit)
    new = None if kind in _NEW_ABSENT else format_value(new_value, limit)
    return old, new


def differing_window(old: Any, new: Any, context: int = 12) -> tuple[Any, Any]:
    """Two strings with their long common prefix elided, so a cut excerpt still shows the change.

    >>> differing_window("line 6: Free shipping over 50", "line 6: Free shipping over 40")
    ('…ipping over 50', '…ipping over 40')
    """
    if not (isinstance(old, str) and isinstance(new, str)):
        return old, new
    common = 0
    for a, b in zip(old, new):
        if a != b:
            break
        common += 1
    if common <= context:
        return old, new
    return "…" + old[common - context:], "…" + new[common - context:]


# --- escaping ------------------------------------------------------------------------


def _word(text: str) -> str:
    """A known vocabulary word (kind, role) as is; anything else escaped like text."""
    return text if text in _VOCABULARY else md_text(text)


def _table(header: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- sections ------------------------------------------------------------------------


def _run_line(summary: Mapping[str, Any]) -> str:
    run = summary["run"]
    targets = run["targets"]
    parts = [
        f"Run {md_code(run['id'])}",
        md_text(run["started_at"]),
        f"{run['duration_s']:.1f} s",
        f"old {md_code(targets['old'])} → new {md_code(targets['new'])}",
    ]
    if targets.get("old_replica"):
        parts.append(f"old replica {md_code(targets['old_replica'])}")
    return " · ".join(parts)


def _warnings(summary: Mapping[str, Any]) -> str:
    from shadowdiff.report.tls import insecure_warning
    run = summary["run"]
    lines = []
    insecure = insecure_warning(summary)
    if insecure:
        lines.append(f"> **Not verified**: {md_text(insecure)}")
    if run["interrupted"]:
        lines.append("> **Interrupted**: the run stopped early; the figures cover what it did.")
    if run["errors"]:
        lines.append(f"> **Input errors** ({len(run['errors'])}); the run kept what it had done:")
        lines += [f"> - {md_text(e)}" for e in run["errors"]]
    return "\n".join(lines)


def _totals_line(summary: Mapping[str, Any]) -> str:
    t = summary["totals"]
    # old_replica only when one was configured: "old replica 0" would suggest noise was measured
    replica = summary["run"]["targets"].get("old_replica") is not None
    failed = ", ".join(f"{role.replace('_', ' ')} {n:,}" for role, n in t["failed"].items()
                       if role != "old_replica" or replica)
    return (
        f"**{t['replayed']:,}** replayed of {t['exchanges']:,} exchanges · "
        f"{t['identical']:,} identical · **{t['diverged']:,} diverged** · failed: {failed} · "
        f"{t['skipped']:,} skipped · {t['noise_suppressed']:,} noise-suppressed · "
        f"{t['exchanges_per_s']:,.0f} exchanges/s"
    )


def _coverage_line(summary: Mapping[str, Any]) -> str:
    c = summary["coverage"]
    return (
        f"Production traffic: **{format_pct(c['verified_share'])}** verified identical · "
        f"**{format_pct(c['diverging_share'])}** diverging · "
        f"**{format_pct(c['untested_share'])}** untested"
    )


def _signatures_section(signatures: Sequence[Mapping[str, Any]], limit: int) -> str:
    if not signatures:
        return "## Divergences\n\nNo divergences: every replayed response matched."
    rows = [_signature_row(s) for s in signatures[:limit]]
    scored = "score" in signatures[0]
    header = ["#", "impact", *(["severity"] if scored else []), "endpoint", "location", "kind",
              "affected", "usage", "example (old → new)"]
    align = ["--:", "--:", *(["--:"] if scored else []), "---", "---", "---", "--:", "--:", "---"]
    table = _table(header, align, rows)
    more = len(signatures) - limit
    tail = f"\n\n…and {more:,} more in summary.json and report.html." if more > 0 else ""
    by = "impact × severity" if scored else "impact"
    return f"## Divergences, ranked by {by}\n\n{table}{tail}"


def _ranking_line(ranking: Mapping[str, Any] | None) -> str:
    if not ranking:
        return ""
    return (f"How ranked: impact = {md_text(ranking['impact'])}; usage share = "
            f"{md_text(ranking['usage_share'])}; severity = {md_text(ranking['severity'])}; "
            f"ranked by {md_text(ranking['by'])}.")


def _suggestion_section(suggestion: Mapping[str, Any] | None, limit: int) -> str:
    if not suggestion or not suggestion["rows"]:
        return ""
    rows = [[md_code(r["endpoint"]), f"{r['requests']:,}", format_pct(r["cumulative_share"]),
             f"{r['capture']:,}", f"{r['have']:,}"] for r in suggestion["rows"][:limit]]
    table = _table(["endpoint", "requests", "cumulative", "capture", "have"],
                   ["---", "--:", "--:", "--:", "--:"], rows)
    more = suggestion["endpoints"] - min(limit, len(suggestion["rows"]))
    tail = f"\n\n…and {more:,} more endpoints in summary.json." if more > 0 else ""
    return (f"## To cover {format_pct(suggestion['target_share'])} of production traffic, capture\n\n"
            f"{table}{tail}")


def _signature_row(s: Mapping[str, Any]) -> list[str]:
    old, new = example_sides(s["kind"], s["example"], limit=40)
    example = " → ".join("*(absent)*" if v is None else md_code(v) for v in (old, new))
    return [
        str(s["rank"]),
        format_pct(s["impact"], 2),
        *([f"{s['severity']:g}"] if "severity" in s else []),
        md_code(s["endpoint"]),
        md_code(s["location"]),
        _word(s["kind"]),
        f"{s['affected']:,}/{s['replayed']:,} ({format_pct(s['rate'])})",
        format_pct(s["usage_share"]),
        example,
    ]


def noise_intro(noise: Mapping[str, Any]) -> str:
    """One sentence: how noise was measured (or that it was not), and the margins used."""
    how = {"old_replica": "an old replica", "replay_old_twice": "old, asked twice"}
    if noise["measured"]:
        head = (f"Noise measured against {how.get(noise['source'], 'a second old answer')} on "
                f"{noise['exchanges']:,} exchanges: a signature counts only when old vs new "
                f"differs more often than old vs old by more than {noise['min_relative_pct']:g}% "
                f"(relative) and {noise['min_absolute_pct']:g}% of the endpoint's exchanges "
                "(absolute).")
    else:
        head = "Noise was not measured (no old replica; see --old-replica, --replay-old-twice)."
    return head + (f" Rules were audited on {noise['audited']:,} exchanges."
                   if noise["audited"] else "")


def suppressed_by(entry: Mapping[str, Any]) -> str:
    """What suppressed a noise entry, in words."""
    if entry["by"] == "measurement":
        return (f"measurement: old vs replica {entry['old_replica']:,}/{entry['out_of']:,}, "
                "not significantly less")
    if entry["by"] == "replica":
        return "old replica, per request (old differed from itself there)"
    return f"rule {entry['rule']}"


def _noise_section(noise: Mapping[str, Any] | None, limit: int) -> str:
    if not noise:
        return ""  # a summary from before noise was reported
    entries = noise["suppressed"]
    parts = ["## Suppressed as noise", md_text(noise_intro(noise))]
    if entries:
        rows = [[_word(e["by"]), md_code(e["endpoint"]), md_code(e["location"]), _word(e["kind"]),
                 f"{e['count']:,}/{e['out_of']:,} ({format_pct(e['count'] / max(e['out_of'], 1))})",
                 md_text(suppressed_by(e)), _noise_example(e)] for e in entries[:limit]]
        parts.append(_table(["by", "endpoint", "location", "kind", "how often", "suppressed by",
                             "example (old → new)"],
                            ["---", "---", "---", "---", "--:", "---", "---"], rows))
        if len(entries) > limit:
            parts.append(f"…and {len(entries) - limit:,} more in summary.json and report.html.")
    else:
        parts.append("Nothing was suppressed.")
    return "\n\n".join(parts)


def _noise_example(entry: Mapping[str, Any]) -> str:
    if not entry.get("example"):
        return ""
    old, new = example_sides(entry["kind"], entry["example"], limit=30)
    return " → ".join("*(absent)*" if v is None else md_code(v) for v in (old, new))


def _failures_section(failures: Sequence[Mapping[str, Any]]) -> str:
    if not failures:
        return ""
    rows = [
        [_word(f["role"]), _word(f["kind"]), f"{f['count']:,}", md_code(f["endpoint"]),
         md_code(f["example_exchange_id"]), md_code(f["detail"], limit=60)]
        for f in failures
    ]
    header = ["role", "kind", "count", "endpoint", "example", "detail"]
    return "## Failures\n\n" + _table(header, ["---", "---", "--:", "---", "---", "---"], rows)


def _uncovered_section(uncovered: Sequence[Mapping[str, Any]], limit: int) -> str:
    if not uncovered:
        return ""
    rows = [[md_code(u["endpoint"]), f"{u['requests']:,}", format_pct(u["usage_share"])]
            for u in uncovered[:limit]]
    table = _table(["endpoint", "requests", "usage"], ["---", "--:", "--:"], rows)
    more = len(uncovered) - limit
    tail = f"\n\n…and {more:,} more." if more > 0 else ""
    return f"## Busiest endpoints never replayed (untested, not identical)\n\n{table}{tail}"


def _skipped_line(totals: Mapping[str, Any]) -> str:
    reasons = sorted(totals["skipped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    if not reasons:
        return ""
    return "Skipped, not replayed: " + " · ".join(f"{md_text(r)} {n:,}" for r, n in reasons)


def _usage_line(usage: Mapping[str, Any]) -> str:
    where = USAGE_SOURCES.get(usage["source"], usage["source"])
    kind = "Usage" if usage["source"] == "capture" else "Production usage"
    line = f"{kind} from {where}: {usage['requests']:,} requests"
    if usage["files"]:
        line += " in " + ", ".join(md_code(f) for f in usage["files"])
    if usage.get("window_days") is not None:  # older summaries lack the key
        line += f", last {usage['window_days']:g} days only"
    if usage["malformed"]:
        line += f" ({usage['malformed']:,} malformed lines skipped)"
    note = f" {md_text(usage['note'])}" if usage["note"] else ""
    return f"{line}.{note}"
