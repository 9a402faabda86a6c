"""The notification a finished run sends: whether it is due, and what it says.

Sits after the gate and the history: it reads the summary (its `gate`, `since_last` and
ranked `signatures`) and builds one message, a JSON document whose `text` is what Slack and
Mattermost incoming webhooks show, and whose `shadowdiff` object carries the figures for
any other receiver (docs/nightly.md, "Notifications"). Delivery is deliver.py's job.

Nothing captured goes out: no example values, no headers, no bodies; only signature names,
counts and the report's location, and target URLs with their secrets hidden
(redact.redact_url). The text is escaped for chat: a hostile endpoint or location cannot
ping a channel (`<!channel>`, `@all`) or inject markup.

>>> message = build_message(summary, {"html": "reports/r1/report.html"}, ["gate-failed"])
>>> message["shadowdiff"]["verdict"]            # doctest: +SKIP
'FAIL: 2 divergence signatures (any)'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shadowdiff.redact import redact_url

SCHEMA = "shadowdiff-notification"
SCHEMA_VERSION = 1
SIGNATURE_FIELDS = ("rank", "key", "endpoint", "location", "kind", "affected", "replayed",
                    "impact", "accepted")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def new_signatures(summary: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """This run's open signatures (not accepted) that the last complete run did not show,
    in rank order; None when the run kept no history (`--no-history`): then nothing is
    known to be new. The first recorded run finds every signature new."""
    since = summary.get("since_last")
    if since is None:
        return None
    new = since.get("new") or {}
    return [s for s in summary.get("signatures", []) if s["key"] in new and not s.get("accepted")]


def triggered(summary: Mapping[str, Any], when: Sequence[str]) -> list[str]:
    """The events of `when` this run meets, in NOTIFY_EVENTS order ([] : no message).

    `gate-failed` is any exit code but 0: a failed `--fail-on` condition, or an input
    error that cut the run short (exit 2). `always` is reported only when nothing else is.
    """
    met = []
    if summary.get("exit_code", 0) != 0:
        met.append("gate-failed")
    if new_signatures(summary):
        met.append("new-signatures")
    if "always" in when:
        return met or ["always"]
    return [e for e in met if e in when]


def report_locations(paths: Mapping[str, Path], report_url: str | None) -> dict[str, str]:
    """Where a reader finds each report: `report_url` + the run directory's name + the file
    when the run directories are served there, else the absolute path on this machine."""
    out = {}
    for name, path in paths.items():
        path = Path(path).absolute()
        if report_url:
            out[name] = f"{report_url.rstrip('/')}/{path.parent.name}/{path.name}"
        else:
            out[name] = str(path)
    return out


def build_message(summary: Mapping[str, Any], reports: Mapping[str, str],
                  events: Sequence[str], top: int = 5) -> dict[str, Any]:
    """The notification document: {"text": ..., "shadowdiff": {...}} (docs/nightly.md)."""
    gate = summary.get("gate") or {"passed": summary["exit_code"] == 0, "conditions": [],
                                   "reasons": []}
    new = new_signatures(summary)
    since = summary.get("since_last") or {}
    signatures = summary.get("signatures", [])
    body = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "events": list(events),
        "verdict": summary["verdict"],
        "exit_code": summary["exit_code"],
        "gate": {"passed": gate["passed"], "conditions": list(gate["conditions"]),
                 "failed": [{k: r[k] for k in ("condition", "message", "detail")}
                            for r in gate["reasons"] if r["failed"]]},
        "run": _run(summary["run"]),
        "totals": _totals(summary["totals"]),
        "signatures": {"count": len(signatures),
                       "open": sum(1 for s in signatures if not s.get("accepted")),
                       "top": [_signature(s) for s in signatures[:top]]},
        "new_signatures": None if new is None else {
            "count": len(new), "previous_run_id": since.get("previous_run_id"),
            "top": [_signature(s) for s in new[:top]]},
        "report": dict(reports),
    }
    return {"text": render_text(body, chat=True), "shadowdiff": body}


def _run(run: Mapping[str, Any]) -> dict[str, Any]:
    targets = run.get("targets") or {}
    return {
        "id": run["id"], "started_at": run["started_at"], "finished_at": run["finished_at"],
        "duration_s": run["duration_s"], "shadowdiff_version": run["shadowdiff_version"],
        "targets": {role: redact_url(url) if url else None for role, url in targets.items()},
        "interrupted": run["interrupted"], "errors": list(run["errors"][:3]),
    }


def _totals(totals: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("exchanges", "replayed", "identical", "diverged", "failed_both", "skipped")
    # .get: failed_both is newer than some version-1 summaries
    return {**{k: totals.get(k, 0) for k in keys}, "failed": dict(totals["failed"])}


def _signature(sig: Mapping[str, Any]) -> dict[str, Any]:
    return {k: sig.get(k, False if k == "accepted" else None) for k in SIGNATURE_FIELDS}


# --- text ---------------------------------------------------------------------------------

def render_text(body: Mapping[str, Any], *, chat: bool) -> str:
    """The message for people: a few lines. `chat` escapes it for Slack/Mattermost (`&<>`
    as entities, names in code spans, `@` mentions broken); without it, plain text (mail)."""
    esc = _Escape(chat)
    run, t = body["run"], body["totals"]
    lines = [f"shadowdiff: {esc.plain(body['verdict'])}"]
    targets = run["targets"]
    if targets.get("old") or targets.get("new"):
        lines.append(f"old {esc.code(targets.get('old') or 'recorded')} → new "
                     f"{esc.code(targets.get('new') or 'recorded')}")
    lines.append(f"{t['replayed']} replayed: {t['identical']} identical, {t['diverged']} "
                 f"diverged, {t['failed_both']} failed on both, {t['skipped']} skipped")
    lines += _signature_lines(body, esc)
    if run["interrupted"]:
        lines.append("Interrupted: the report covers only what was replayed before it")
    lines += [f"Input error: {esc.plain(e)}" for e in run["errors"]]
    where = body["report"].get("html") or body["report"].get("markdown")
    if where:
        lines.append(f"Report: {esc.plain(where)}")
    lines.append(f"Run {esc.code(run['id'])}, {esc.plain(run['finished_at'])}")
    return "\n".join(lines)


class _Escape:
    """Text from the run (names, errors) made inert: for chat, no markup and no mentions."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat

    def plain(self, value: Any) -> str:
        text = _CONTROL.sub(" ", str(value))
        if self.chat:
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            text = text.replace("@", "@\u2060")  # a word joiner: no @channel, @all, @here
        return text

    def code(self, value: Any) -> str:
        # a backtick inside would close the code span early
        return f"`{self.plain(str(value).replace('`', chr(39)))}`" if self.chat else self.plain(value)


def _signature_lines(body: Mapping[str, Any], esc: _Escape) -> list[str]:
    """The top signatures, those new since the last run marked; new ones below the top
    listed apart, so each signature is named once."""
    lines = []
    sigs, new = body["signatures"], body["new_signatures"] or {"count": 0, "top": []}
    new_keys = {s["key"] for s in new["top"]}
    if sigs["count"]:
        lines.append(f"Top signatures ({sigs['open']} open of {sigs['count']}):")
        lines += [_line(s, esc, s["key"] in new_keys) for s in sigs["top"]]
        if sigs["count"] > len(sigs["top"]):
            lines.append(f"… and {sigs['count'] - len(sigs['top'])} more in the report")
    if new["count"]:
        lines.append(f"New since the last run: {new['count']}")
        shown = {s["key"] for s in sigs["top"]}
        lines += [_line(s, esc, True) for s in new["top"] if s["key"] not in shown]
    return lines


def _line(sig: Mapping[str, Any], esc: _Escape, new: bool = False) -> str:
    marks = (" (accepted)" if sig["accepted"] else "") + (" NEW" if new else "")
    return (f"{sig['rank']}. {esc.code(sig['endpoint'])} {esc.code(sig['location'])} "
            f"{esc.code(sig['kind'])}: {sig['affected']}/{sig['replayed']} "
            f"(impact {sig['impact']:.2%}){marks}")


def mail_subject(body: Mapping[str, Any], limit: int = 150) -> str:
    """One header line: `[shadowdiff] ` and the verdict, cut at `limit` characters."""
    subject = "[shadowdiff] " + _CONTROL.sub(" ", str(body["verdict"]))
    return subject if len(subject) <= limit else subject[:limit - 1] + "…"
