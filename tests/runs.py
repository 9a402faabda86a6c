"""`shadowdiff run` through click's runner, for tests that read the run's summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result

from shadowdiff.cli.main import main


def run(capture: Path, out: Path, *targets: str, config: Path | None = None
        ) -> tuple[Result, dict[str, Any]]:
    """Run on `capture` into `out` (targets as flags); the CLI result and summary.json."""
    args = ["run", str(capture), *targets, "--out", str(out), "--quiet"]
    if config is not None:
        args += ["--config", str(config)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert (out / "summary.json").exists(), result.output
    return result, orjson.loads((out / "summary.json").read_bytes())
