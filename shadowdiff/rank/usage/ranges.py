"""Rank stage, log byte ranges: a plain log counted where it lies, by the worker that counts it.

    access.log (12 GB, seen by every worker) ──> byte_ranges() ──> (0, 4M) (4M, 8M) ...
    each range ──> a Dask worker: count_range() opens the file, reads the lines that START
                   in its range, counts them ──> BatchCounts (a few KB back to the driver)

Shipping 4 MB blocks from the driver to the workers costs more than counting them: on this
2-core machine a 2-process LocalCluster fed blocks counted 1M lines in 1.77 s where the
driver's own two threads took 0.79 s (`benchmarks/usage.py`). So when every worker sees the
file (the same size and modification time as the driver sees: always so for a LocalCluster,
and for a cluster on shared storage) the driver sends only (path, start, end). Compressed
files cannot be entered in the middle and are still read and shipped by the driver.

A line belongs to the range in which it starts, so the ranges' lines are the file's lines,
each once, whatever the range size; the driver absorbs the counts in file order, so line
numbers of malformed lines are the same as when the blocks are cut by one reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from shadowdiff.errors import CaptureError
from shadowdiff.rank.usage.sources import _LONGEST_LINE

FileFacts = tuple[int, int]  # size, mtime in ns


def file_facts(path: str) -> FileFacts | None:
    """What identifies this version of the file here (None: this machine does not see it).
    Module-level: it runs on each Dask worker (`client.run`)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def byte_ranges(size: int, block_size: int) -> Iterator[tuple[int, int]]:
    """[start, end) ranges of `block_size` bytes covering a file of `size` bytes.

    >>> list(byte_ranges(10, 4))
    [(0, 4), (4, 8), (8, 10)]
    """
    for start in range(0, size, max(1, block_size)):
        yield start, min(size, start + block_size)


def read_range(path: str, start: int, end: int) -> bytes:
    """The whole lines that start in [start, end), the last one ending in a newline.

    A line longer than the longest the block reader keeps is cut there, as it is cut there.
    """
    try:
        with open(path, "rb") as f:
            if start > 0:
                f.seek(start - 1)
                f.readline(_LONGEST_LINE)  # the line begun before us is the previous range's
            pos = f.tell()
            if pos >= end:
                return b""
            data = f.read(end - pos)
            if not data.endswith(b"\n"):
                data += f.readline(_LONGEST_LINE)
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", source=path,
                           position=f"byte {start}") from exc
    return data if not data or data.endswith(b"\n") else data + b"\n"


def count_range(path: str, start: int, end: int, count: Callable[[bytes, Any], Any],
                plan: Any) -> Any:
    """A range read and counted with the file's counting function (on a Dask worker)."""
    return count(read_range(path, start, end), plan)
