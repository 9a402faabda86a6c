"""The certificates part of report.md and report.html: each HTTPS target's facts side by
side, what changed old vs new (summary `tls`, docs/report-schema.md), and a warning when
verification was off (--insecure). Reads only the summary dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shadowdiff.report.text import md_code, md_text

#: (fact, label) in the order both reports show them.
ROWS: tuple[tuple[str, str], ...] = (
    ("address", "connected to"), ("server_name", "name (SNI, Host, verified)"),
    ("verified", "certificate verified"), ("tls_version", "TLS version"),
    ("alpn", "ALPN offered (asked h2, http/1.1)"), ("replayed_over", "replayed over"),
    ("issuer", "issuer"), ("subject", "subject"), ("subject_names", "subject names"),
    ("not_after", "expires"), ("sha256", "SHA-256"),
)


def fact_text(facts: Mapping[str, Any] | None, fact: str) -> str:
    """One fact in words (plain text: each report escapes it its own way)."""
    if facts is None:
        return "—"
    value = facts.get(fact)
    if fact == "verified":
        if facts.get("error"):
            return f"no: {facts['error']}"
        return "NOT CHECKED (--insecure)" if facts.get("insecure") else "yes"
    if fact == "replayed_over":
        return _replayed_over(facts)
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    if fact == "sha256" and value:
        return str(value)[:16] + "…"
    return "—" if value is None else str(value)


#: Why HTTP/2 was or was not spoken to a target (summary `http2`), in words.
HTTP2_WHY = {"off": "HTTP/2 off (--http2 off)",
             "not_offered": "the target does not offer h2 by ALPN",
             "not_captured": "no exchange was captured as HTTP/2"}


def _replayed_over(facts: Mapping[str, Any]) -> str:
    """`HTTP/2 (12), HTTP/1.1 (3)`, and why not HTTP/2 when it was not spoken."""
    counts = facts.get("replayed_over_counts")
    text = (", ".join(f"{v} ({n})" for v, n in counts.items() if n) if counts and any(counts.values())
            else str(facts.get("replayed_over") or "—"))
    why = HTTP2_WHY.get(facts.get("http2") or "")
    return f"{text}; {why}" if why else text


def insecure_warning(summary: Mapping[str, Any]) -> str | None:
    """The sentence for the report's header when some target was not verified."""
    roles = (summary.get("tls") or {}).get("insecure") or []
    if not roles:
        return None
    return (f"Certificate verification was OFF for {', '.join(r.replace('_', ' ') for r in roles)} "
            "(--insecure): names, issuers and expiry were not checked on replay.")


def view(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the HTML template shows: roles, rows of (label, text per role), divergences."""
    tls = summary.get("tls")
    if not tls:
        return None
    roles = [r for r in ("old", "new", "old_replica") if r in tls["targets"]]
    rows = [{"label": label, "cells": [fact_text(tls["targets"][r], fact) for r in roles],
             "differs": any(d["fact"] == fact for d in tls["divergences"])}
            for fact, label in ROWS]
    divergences = [{**d, "old_text": _value(d["old"]), "new_text": _value(d["new"])}
                   for d in tls["divergences"]]
    return {"roles": roles, "rows": rows, "divergences": divergences}


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return "—" if value is None else str(value)


def markdown_section(summary: Mapping[str, Any]) -> str:
    """`## Certificates`: the facts table and the divergences, or "" without HTTPS targets."""
    shown = view(summary)
    if shown is None:
        return ""
    head = "| fact | " + " | ".join(r.replace("_", " ") for r in shown["roles"]) + " |"
    lines = [head, "|---" * (len(shown["roles"]) + 1) + "|"]
    lines += ["| " + " | ".join([md_text(row["label"]) + (" **≠**" if row["differs"] else "")]
                                + [md_code(v, limit=70) for v in row["cells"]]) + " |"
              for row in shown["rows"]]
    parts = ["## Certificates", "\n".join(lines)]
    if shown["divergences"]:
        rows = [f"| {d['kind']} | {md_code(d['old_text'], limit=60)} | {md_code(d['new_text'], limit=60)} |"
                f" {'accepted' if d.get('accepted') else ''} |" for d in shown["divergences"]]
        parts.append("Old vs new, as their own divergences (a gate fails on them like on a "
                     "signature; `shadowdiff accept KEY` takes the key from summary.json):\n\n"
                     "| kind | old | new | |\n|---|---|---|---|\n" + "\n".join(rows))
    else:
        parts.append("Old and new present the same certificate facts.")
    return "\n\n".join(parts)
