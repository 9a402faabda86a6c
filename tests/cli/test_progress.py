"""Progress displays: replay and import."""

from __future__ import annotations


def test_import_progress_passes_every_item_through_and_counts():
    import io

    from rich.console import Console

    from shadowdiff.cli.progress import import_progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with import_progress(console, "importing har") as count:
        assert list(count(iter(range(1000)))) == list(range(1000))
    with import_progress(console, "quiet", enabled=False) as count:
        items = iter([1, 2])
        assert count(items) is items  # no wrapper at all when quiet
    assert "importing har" in out.getvalue()


def test_capture_command_shows_progress_unless_quiet(tmp_path):
    from click.testing import CliRunner

    from shadowdiff.cli.main import main

    log = tmp_path / "access.log"
    log.write_text('10.0.0.1 - - [11/Jun/2024:00:00:01 +0000] "GET /a HTTP/1.1" 200 1 "-" "t"\n' * 3)
    loud = CliRunner().invoke(main, ["capture", "log", str(log), "-o", str(tmp_path / "a.jsonl")])
    quiet = CliRunner().invoke(main, ["capture", "log", str(log), "-o", str(tmp_path / "b.jsonl"), "-q"])
    assert loud.exit_code == quiet.exit_code == 0
    assert "wrote 3 exchanges" in loud.output and "wrote 3 exchanges" in quiet.output
