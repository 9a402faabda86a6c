"""Instructions per replayed pair, counted by valgrind: a figure the machine's load cannot move.

    .venv/bin/python benchmarks/replay_instructions.py [--kind same|diff] [--small N] [--large N]
    .venv/bin/python benchmarks/replay_instructions.py --worker [--kind ...] [--small N] [--large N]

Starts the two nginx of benchmarks/replay.py, runs `shadowdiff run --workers 1` under
`valgrind --tool=cachegrind --cache-sim=no` on a capture of `--small` and one of `--large`
exchanges, and prints the marginal user-space instructions per pair,
(I(large) - I(small)) / (large - small), which takes start-up and reports off. The kernel's
share (the loopback sends and receives) is not counted: benchmarks/replay.py times it.
Wall-clock rates on a shared machine drift by tens of percent between runs; this count
repeats within ~1-2%, so it is what tells whether a change to the hot path helped.

`--worker` counts a partitioned run's worker path instead: pipeline.partitioned.judge_chunk
called in one process on the capture's raw chunks (2,000 lines, parsed, redacted, selected,
replayed and judged there), each with the Setup unpickled anew as a Dask worker receives
it, and no Dask around it: what each worker spends per pair, the driver and Dask left out.
"""

from __future__ import annotations

import argparse
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from replay import make_capture, nginx_servers  # noqa: E402


VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]


def instructions(capture: Path, old: str, new: str, out: Path, worker: bool = False) -> int:
    """User-space instructions of one `shadowdiff run` of `capture` (or, `worker`, of its
    chunks judged as a worker judges them)."""
    if worker:
        cmd = [*VALGRIND, sys.executable, __file__, "--judge-chunks", str(capture), old, new]
    else:
        cmd = [*VALGRIND, sys.executable, "-m", "shadowdiff", "run", str(capture), "--old", old,
               "--new", new, "--out", str(out), "--quiet", "--concurrency", "64",
               "--workers", "1", "--history", str(out) + "-history.sqlite"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode not in (0, 1) or found is None:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def judge_chunks(capture: str, old: str, new: str) -> None:
    """The worker path (--worker): every raw chunk of `capture` through judge_chunk, here."""
    from dataclasses import replace

    from shadowdiff.config import Config, Targets
    from shadowdiff.pipeline import intake, partitioned
    from shadowdiff.protocols.http.plugin import PROTOCOL

    config = Config(targets=Targets(old=old, new=new))
    config = replace(config, replay=replace(config.replay, concurrency=64),
                     redact=intake.worker_redact(config.redact))
    setup = pickle.dumps(partitioned.Setup(config, PROTOCOL, None, share=2))  # 2 workers
    for index, chunk in enumerate(intake.raw_chunks((capture,), partitioned.CHUNK)):
        partitioned.judge_chunk(index, chunk, pickle.loads(setup))


def main() -> None:
    if sys.argv[1:2] == ["--judge-chunks"]:
        judge_chunks(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=("same", "diff"), default="same",
                        help="identical answers, or two fields of the JSON differing [same]")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=11_000)
    parser.add_argument("--worker", action="store_true",
                        help="count a partitioned run's worker path (judge_chunk), not a whole run")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("nginx")):
        raise SystemExit("needs valgrind and nginx (apt-get install valgrind nginx-light)")
    with nginx_servers(("old", "new"), "shadowdiff-instr-") as (work, urls):
        counts = {}
        for n in (args.small, args.large):
            cap = work / f"{args.kind}-{n}.jsonl"
            make_capture(cap, n, args.kind)
            counts[n] = instructions(cap, urls["old"], urls["new"], work / f"out-{n}", args.worker)
    per_pair = (counts[args.large] - counts[args.small]) / (args.large - args.small)
    fixed = counts[args.small] - per_pair * args.small
    path = "worker path (judge_chunk)" if args.worker else "whole run, 1 process"
    print(f"{args.kind}, {path}: {per_pair:,.0f} instructions per pair (marginal, "
          f"{args.small:,} vs {args.large:,} exchanges); fixed {fixed / 1e9:.2f} G")


if __name__ == "__main__":
    main()
