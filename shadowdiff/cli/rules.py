"""`shadowdiff rules suggest RUN_DIR`: proposed normalization rules from a run's measured noise."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shadowdiff.errors import ShadowdiffError
from shadowdiff.compare.noisefile import NOISE_FILE, NOISE_FORMAT
from shadowdiff.compare.rules.suggest import render_toml, suggest


@click.group()
def rules() -> None:
    """Normalization rules: propose them from what a run measured."""


@rules.command("suggest")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Where to write the TOML ('-' for stdout) [RUN_DIR/suggested-rules.toml].")
def suggest_command(run_dir: str, output: str | None) -> None:
    """Write a TOML file of proposed rules from the noise RUN_DIR measured, to review and commit."""
    record = read_noise(Path(run_dir))
    proposals = suggest(record)
    text = render_toml(proposals, run_dir, record.get("source"))
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output) if output else Path(run_dir) / "suggested-rules.toml"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ShadowdiffError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"{len(proposals)} rule{'s' * (len(proposals) != 1)} proposed: {target}")


def read_noise(run_dir: Path) -> dict:
    """A run directory's noise.json, checked enough to trust its shape."""
    path = run_dir / NOISE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShadowdiffError(f"{path}: cannot read ({exc.strerror or exc}); is {run_dir} the "
                              "directory of a finished `shadowdiff run`?") from exc
    except ValueError as exc:
        raise ShadowdiffError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != NOISE_FORMAT:
        raise ShadowdiffError(f"{path}: not a shadowdiff noise record")
    return record
