"""The replay progress bar (rich): done / total, rate, elapsed and ETA.

The total is known when every capture is a shadowdiff capture whose header counts its
`exchanges` (docs/capture-format.md); otherwise the bar is indeterminate (it pulses)
and still shows the count and the rate. Redraws are throttled by rich itself, and
`update` is cheap, so it can be called per exchange.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                           SpinnerColumn, Task, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from shadowdiff.errors import CaptureError

_EVERY_S = 0.1


class RateColumn(ProgressColumn):
    """Exchanges per second, from rich's moving speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("–/s" if speed is None else f"{speed:,.0f}/s", style="cyan")


def capture_total(captures: Sequence[str]) -> int | None:
    """Exchanges in the captures per their headers; None when any capture cannot say."""
    from shadowdiff.capture import detect_format
    from shadowdiff.capture.jsonl import read_header

    total = 0
    for path in captures:
        try:
            if detect_format(path) != "shadowdiff":
                return None
            count = read_header(path).get("exchanges")
        except (CaptureError, OSError):
            return None  # the run itself will report the file properly
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return None
        total += count
    return total


@contextmanager
def replay_progress(console: Console, total: int | None) -> Iterator[Any]:
    """A context giving `update(state)` for pipeline.run's progress callback."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]replaying"), BarColumn(),
                          MofNCompleteColumn() if total is not None
                          else TextColumn("{task.completed:,.0f}"),
                          RateColumn(), TextColumn("{task.fields[detail]}"),
                          TimeElapsedColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, refresh_per_second=5) as bar:
        task = bar.add_task("replay", total=total, detail="")
        last = [0.0]

        def update(state: Any) -> None:
            now = time.monotonic()
            if now - last[0] < _EVERY_S:  # bar.update per exchange would cost more than the replay
                return
            last[0] = now
            bar.update(task, completed=state.replayed + state.skipped_entries,
                       detail=f"[yellow]{state.diverged:,} diverged[/] "
                              f"[red]{state.failed:,} failed[/] {state.skipped:,} skipped")
        yield update


@contextmanager
def import_progress(console: Console, label: str, enabled: bool = True) -> Iterator[Any]:
    """A context giving `count(iterable)`, which passes items through and shows how many
    went by and how fast. Importers stream without knowing their total, so there is no ETA."""
    if not enabled:
        yield lambda items: items
        return
    columns = [SpinnerColumn(), TextColumn(f"[bold]{label}"),
               TextColumn("{task.completed:,.0f} exchanges"), RateColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, refresh_per_second=5) as bar:
        task = bar.add_task(label, total=None)

        def count(items: Any) -> Any:
            done, last = 0, 0.0
            for item in items:
                done += 1
                now = time.monotonic()
                if now - last >= _EVERY_S:
                    last = now
                    bar.update(task, completed=done)
                yield item
            bar.update(task, completed=done)
        yield count
