"""The report stage: the ranked summary becomes summary.json, report.md and report.html.

The renderers return text and never touch the disk; `write_reports` is the one place
that writes a run directory's reports (DESIGN.md, "Run output (contract)").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shadowdiff.errors import ReportError
from shadowdiff.report.html import render_html
from shadowdiff.report.json import SCHEMA, SCHEMA_VERSION, read_summary, render_json, validate_summary
from shadowdiff.report.markdown import render_markdown

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "read_summary",
    "render_html",
    "render_json",
    "render_markdown",
    "validate_summary",
    "write_reports",
    "write_summary",
]

#: Report name -> file name in the run directory.
REPORT_FILES = {"json": "summary.json", "markdown": "report.md", "html": "report.html"}


def write_reports(
    run_dir: str | Path, summary: Mapping[str, Any], examples: Mapping[str, Mapping[str, Any]]
) -> dict[str, Path]:
    """Validate `summary`, render all three reports and write them into `run_dir`.

    Returns {"json": .../summary.json, "markdown": .../report.md, "html": .../report.html}.
    Raises ReportError when the summary breaks the schema or a file cannot be written.

    >>> write_reports("reports/demo", summary, examples)["html"]   # doctest: +SKIP
    PosixPath('reports/demo/report.html')
    """
    problems = validate_summary(summary)
    if problems:
        raise ReportError("summary breaks the schema: " + "; ".join(problems[:10]))
    # Render everything before writing anything, so a template error leaves no half report.
    texts = {
        "json": render_json(summary),
        "markdown": render_markdown(summary),
        "html": render_html(summary, examples),
    }
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{run_dir}: cannot create the run directory: {exc.strerror or exc}") from exc
    return {name: _write_atomic(run_dir / REPORT_FILES[name], text) for name, text in texts.items()}


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Validate and write summary.json alone (a key added once the reports exist, such as
    the notifications sent about them); the other reports are left as they are."""
    problems = validate_summary(summary)
    if problems:
        raise ReportError("summary breaks the schema: " + "; ".join(problems[:10]))
    return _write_atomic(Path(run_dir) / REPORT_FILES["json"], render_json(summary))


def _write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    # Not mkstemp: its 0600 mode would make reports unreadable to a web server or CI upload.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            tmp.write_text(text, encoding="utf-8", newline="\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return path
