"""Build script: compiles the pcap importer's hot path with mypyc when it can.

Everything else is declared in pyproject.toml. The modules in COMPILED are plain,
type-annotated Python; mypyc (mypy's compiler, a build requirement) turns them into C
extensions, which import in their place and run the importer 1.25-1.45x faster (the
per-packet and per-message Python calls are what an importer spends its time on:
benchmarks/capture.py). When compiling is impossible or fails (no C compiler, an
interpreter mypyc does not support, SHADOWDIFF_PURE=1), the build says why (pip shows it
with -v) and installs the same modules as pure Python: slower, never different.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _hot_path() -> tuple[str, ...]:
    """shadowdiff.capture.pcap.compiled.HOT_PATH, read without importing the package."""
    spec = importlib.util.spec_from_file_location(
        "_shadowdiff_compiled", Path(__file__).parent / "shadowdiff/capture/pcap/compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.HOT_PATH)


COMPILED = [f"shadowdiff/capture/pcap/{name}.py" for name in _hot_path()]
#: The shared library of the compiled modules, inside the package (not a top-level module).
GROUP = "shadowdiff.capture.pcap._compiled"


def _say(message: str) -> None:
    print(f"shadowdiff build: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "pure Python"
            _say(f"compiling failed ({exc}); installing pure Python (slower)")
            for out in self.get_outputs():  # a partial set would not import: none at all
                Path(out).unlink(missing_ok=True)
            self.extensions = []


def _extensions() -> list[Any]:
    if os.environ.get("SHADOWDIFF_PURE"):
        _say("SHADOWDIFF_PURE is set: pure Python")
        return []
    try:
        from mypyc.build import mypycify
        return mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3",
                        group_name=GROUP)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - no mypyc, or its type check failed
        _say(f"not compiling ({exc}); installing pure Python (slower)")
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
