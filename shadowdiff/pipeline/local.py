"""The local worker processes of a partitioned run: how many, and how they start.

Kept apart from partitioned.py, whose imports (Dask, the judge, deepdiff, pandas) take
~0.7 s: the CLI decides here, before importing them, whether to start the workers'
forkserver, so the forkserver's own imports run on another core while this process does
its own instead of after them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

#: Below this many exchanges a LocalCluster's start costs more than it saves. Measured on 2
#: cores with the targets on the same machine (benchmarks/replay.py --repeat 3, three runs,
#: raw chunks): 2 workers start 0.7-0.9 s later than one process and then save 30-59 us per
#: identical pair, so they come out ahead past 16,000-29,000 exchanges; twice that, for a
#: slower machine. (Before raw chunks and the early forkserver: 1.7 s and 5-50 us, 35,000-
#: 350,000, and this was 100,000.)
AUTO_MIN_EXCHANGES = 50_000

#: What each LocalCluster worker needs imported; the forkserver imports it once.
PRELOAD = ["distributed", "shadowdiff.pipeline.partitioned"]


def auto_workers(total: int | None) -> int:
    """`--workers auto`: every core this process may use for a large capture, else 1."""
    if total is None or total < AUTO_MIN_EXCHANGES:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def start_forkserver() -> dict[str, str]:
    """Start the forkserver LocalCluster workers fork from (if not running yet), and return
    the Dask config that makes them do so.

    Why a forkserver that has imported Dask and shadowdiff once, rather than Dask's default
    spawn (a fresh interpreter per worker importing both): measured on 2 workers, start,
    first task and close took 3.2-3.3 s -> 2.3-2.5 s (the first task's imports 0.9 -> 0.35 s,
    the close 0.5 -> 0.05 s). Starting it early is free: it only imports, and its process
    exits with this one. Calling this again is harmless."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}  # Windows: spawn, Dask's default
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return {"distributed.worker.multiprocessing-method": "forkserver"}
