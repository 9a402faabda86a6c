"""Which capture modules run compiled, and whether their build is older than their source.

setup.py compiles the pcap importer's hot path (frames, packet, tcp, http1, order, reader) with
mypyc when it can; the C extension then imports in place of the `.py` beside it. An
editable install builds those extensions in the source tree, so a source edited (or
checked out) after the build would be silently shadowed by the old extension: importing
`shadowdiff.capture.pcap` warns when that happens, and `make` rebuilds.

SHADOWDIFF_PURE=1 in the environment runs the sources even where a build exists (to
compare the two, or for a traceback with every line): `shadowdiff.capture.pcap` then puts
`SourcesFirst` ahead of the usual finders.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The modules setup.py compiles (the pcap importer's per-packet and per-message path).
HOT_PATH: tuple[str, ...] = ("frames", "packet", "tcp", "http1", "order", "reader")

_HERE = Path(__file__).parent


def _extensions(directory: Path) -> dict[str, Path]:
    """module name -> its extension file, for the extensions built in `directory`."""
    found: dict[str, Path] = {}
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        for suffix in suffixes:
            if name.endswith(suffix):
                found[name[:-len(suffix)]] = directory / name
    return found


def stale_builds(directory: Path = _HERE) -> list[str]:
    """Compiled modules of `directory` whose `.py` was changed after the last build.

    The code of all of them lives in one shared library; each module's own extension is a
    small shim that a rebuild leaves alone when unchanged. So the build's time is that of
    the newest extension file, and a source newer than that has not been compiled.
    """
    exts = _extensions(directory)
    try:
        built = max(ext.stat().st_mtime for ext in exts.values()) if exts else 0.0
    except OSError:
        return []
    stale = []
    for module in sorted(exts):
        try:
            if (directory / f"{module}.py").stat().st_mtime > built:
                stale.append(module)
        except OSError:
            continue  # no source beside it (the shared library): nothing to compare
    return stale


def compiled(directory: Path = _HERE) -> dict[str, bool]:
    """Each hot-path module -> whether an extension for it is built (and so imported)."""
    built = _extensions(directory)
    return {module: module in built for module in HOT_PATH}


def warn_if_stale(directory: Path = _HERE) -> None:
    """Warn (once per import) when compiled modules are older than their sources."""
    stale = stale_builds(directory)
    if stale:
        warnings.warn(
            f"shadowdiff: the compiled {', '.join(stale)} module(s) in {directory} are older "
            "than their source and run instead of it; rebuild with `make` (or "
            "`pip install -e .`), or delete the .so files there to run the sources",
            RuntimeWarning, stacklevel=2)


class SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds `shadowdiff.capture.*` modules as their `.py` even where an extension is built."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(__package__ + ".") or not path:
            return None
        for entry in path:
            source = os.path.join(entry, name.rsplit(".", 1)[1] + ".py")
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def _using_sources() -> bool:
    return any(isinstance(f, SourcesFirst) for f in sys.meta_path)


def use_sources() -> None:
    """From now on, import the capture modules from their sources (SHADOWDIFF_PURE)."""
    if not _using_sources():
        sys.meta_path.insert(0, SourcesFirst())


def running_compiled() -> bool:
    """Whether the hot path imports (or has imported) its compiled build."""
    return not _using_sources() and all(compiled().values())
