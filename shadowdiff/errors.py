"""The exception tree. The CLI catches `ShadowdiffError` in one place and exits 2.

    ShadowdiffError
      ConfigError      bad or unknown key; the message names the key and the file
      CaptureError     unreadable input; carries source and position
      PluginError      plugin missing, or broke its contract
      ReportError      template or output failure
      HistoryError     run history store not a history, damaged, locked or newer; names the file
      ResumeError      a run directory cannot be resumed (no journal, other captures or targets)

A failure of one replayed request is never an exception: it is a `Failure` value.
"""

from __future__ import annotations

from pathlib import Path


class ShadowdiffError(Exception):
    """Base of every error shadowdiff raises on purpose."""


class ConfigError(ShadowdiffError):
    """A configuration file or flag is wrong."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ", ".join(p for p in (path and f"file {path}", key and f"key {key!r}") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class CaptureError(ShadowdiffError):
    """An input file cannot be read; names the file and the position."""

    def __init__(self, message: str, *, source: str, position: str | None = None) -> None:
        where = f"{source}:{position}" if position else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.position = position


class PluginError(ShadowdiffError):
    """A protocol or importer plugin is missing or broke its contract."""


class ReportError(ShadowdiffError):
    """A report could not be rendered or written."""


class HistoryError(ShadowdiffError):
    """The history store cannot be used: not a history, damaged, locked or newer.

    The message names the file; the file is never modified to "repair" it.
    """

    def __init__(self, message: str, *, path: str | Path) -> None:
        super().__init__(f"history {path}: {message}")
        self.path = str(path)


class ResumeError(ShadowdiffError):
    """`--resume RUN_DIR` cannot continue that run; the message says why."""


#: Exit codes (contract, docs/nightly.md): no significant divergence, significant divergences
#: (the CI gate), usage/config/input error. One copy for the CLI, the verdict and the gates.
EXIT_CLEAN, EXIT_DIVERGED, EXIT_INPUT = 0, 1, 2
