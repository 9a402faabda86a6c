"""Mirrored benchmark: how N workers compare with one process when no target shares the cores.

A capture written by a live mirror (`shadowdiff live`) already holds old's and new's answers,
so `shadowdiff run` on it sends nothing: every CPU second is shadowdiff's own (intake,
redaction, normalizing, diffing, tallying, reports). This script writes such captures, of
identical pairs and of pairs differing in two fields (benchmarks/replay.py's ~2 KB JSON
document, with a page number that differs per exchange so that no two bodies repeat), and
times `shadowdiff run` on them for each worker count, the counts taking turns. It prints
pairs/s end to end and marginal (the larger capture's extra pairs over its extra seconds,
so that start-up, a LocalCluster's start and the reports are taken off), and each worker
count's speedup over one process: measured wall clock, not an estimate.

    .venv/bin/python benchmarks/mirrored.py [--small N] [--large N] [--repeat K] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from replay import Run, document, shadowdiff_run  # noqa: E402

from shadowdiff.capture.jsonl import CaptureWriter  # noqa: E402
from shadowdiff.model import Exchange, Request, Response  # noqa: E402

KINDS = (("identical", "same"), ("differing", "diff"))


def answer(variant: str, i: int) -> Response:
    """What nginx answered for exchange `i`, as a mirror records it."""
    body = document(variant).replace(b'"page": 1', b'"page": %d' % i)
    headers = (("Server", "nginx"), ("Date", f"Fri, 04 Dec 2026 17:{i // 60 % 60:02d}:{i % 60:02d} GMT"),
               ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Connection", "keep-alive"), ("ETag", '"6750-7f2"'))
    return Response(200, headers, body, 0.0004)


def make_capture(path: Path, n: int, kind: str) -> None:
    with CaptureWriter(path, source="benchmark") as w:
        for i in range(n):
            req = Request("http", "GET", f"/{kind}/{i}", (("Host", "bench.example"),
                                                         ("Accept", "application/json")))
            new = answer("old" if kind == "same" else "new", i)
            w.write(Exchange(id=f"m-{i}", request=req, source="mirror", seen_at=0.0,
                             observed=(("old", answer("old", i)), ("new", new))))


def check(run: Run, n: int, kind: str) -> None:
    """A benchmark that measured the wrong thing is worse than none: check the verdicts."""
    totals = run.summary["totals"]
    assert totals["replayed"] == n, totals
    if kind == "same":
        assert totals["identical"] == n and not run.summary["signatures"], totals
    else:
        found = {(s["location"], s["affected"]) for s in run.summary["signatures"]}
        assert found == {("body.items[*].price", n), ("body.meta.currency", n)}, found


def timed(work: Path, n: int, kind: str, counts: list[int], repeat: int) -> dict[int, Run]:
    """The fastest of `repeat` runs per worker count, the counts taking turns (1, 2, 1, 2...)
    so that a machine drifting during the benchmark drifts under all alike."""
    cap = work / f"mirror-{kind}-{n}.jsonl.gz"
    make_capture(cap, n, kind)
    best: dict[int, Run] = {}
    for attempt in range(repeat):
        for w in counts:
            run = shadowdiff_run(cap, None, None, work / f"out-{kind}-{n}-{w}-{attempt}", workers=w)
            check(run, n, kind)
            if w not in best or run.wall < best[w].wall:
                best[w] = run
    return best


def report(label: str, small: int, large: int, runs: dict[int, tuple[Run, Run]]) -> None:
    marginal = {w: (large - small) / (big.wall - little.wall)
                for w, (little, big) in runs.items() if big.wall > little.wall}
    for w, (little, big) in runs.items():
        m = marginal.get(w)
        print(f"{label:>10} {w:>8} {little.wall:>8.2f} s {big.wall:>8.2f} s {big.rate:>10,.0f} "
              f"{f'{m:,.0f}' if m else 'n/a':>10} {big.rss:>7.0f} MB")
    one, one_m = runs.get(1), marginal.get(1)
    for w, (_, big) in runs.items():
        if w > 1 and one is not None:
            line = f"{label}: {w} workers {one[1].wall / big.wall:.2f}x one process end to end"
            if one_m and marginal.get(w):
                line += f", {marginal[w] / one_m:.2f}x marginal"
            print(line + " (measured wall clock, no targets)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement, the fastest kept [2]")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated [1,2]")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; each figure the fastest of {args.repeat} runs")
    print(f"{'pairs':>10} {'workers':>8} {format(args.small, ','):>10} {format(args.large, ','):>10} "
          f"{'pairs/s':>10} {'marginal':>10} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory(prefix="shadowdiff-mirror-") as tmp:
        work = Path(tmp)
        for label, kind in KINDS:
            small = timed(work, args.small, kind, counts, args.repeat)
            large = timed(work, args.large, kind, counts, args.repeat)
            report(label, args.small, args.large, {w: (small[w], large[w]) for w in counts})
    print("(pairs/s: the larger capture end to end; marginal: (large - small) / (t_large - t_small);\n"
          " RSS: the driver's, at the larger capture; every worker is a process of its own)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
