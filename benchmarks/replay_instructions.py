"""Instructions per replayed pair, counted by valgrind: a figure the machine's load cannot move.

    .venv/bin/python benchmarks/replay_instructions.py [--kind same|diff] [--small N] [--large N]

Starts the two nginx of benchmarks/replay.py, runs `shadowdiff run --workers 1` under
`valgrind --tool=cachegrind --cache-sim=no` on a capture of `--small` and one of `--large`
exchanges, and prints the marginal user-space instructions per pair,
(I(large) - I(small)) / (large - small), which takes start-up and reports off. The kernel's
share (the loopback sends and receives) is not counted: benchmarks/replay.py times it.
Wall-clock rates on a shared machine drift by tens of percent between runs; this count
repeats within ~1-2%, so it is what tells whether a change to the hot path helped.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from replay import make_capture, nginx_servers  # noqa: E402


def instructions(capture: Path, old: str, new: str, out: Path) -> int:
    """User-space instructions of one `shadowdiff run` of `capture`."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, "-m", "shadowdiff", "run", str(capture), "--old", old, "--new", new,
           "--out", str(out), "--quiet", "--concurrency", "64", "--workers", "1",
           "--history", str(out) + "-history.sqlite"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode not in (0, 1) or found is None:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=("same", "diff"), default="same",
                        help="identical answers, or two fields of the JSON differing [same]")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=11_000)
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("nginx")):
        raise SystemExit("needs valgrind and nginx (apt-get install valgrind nginx-light)")
    with nginx_servers(("old", "new"), "shadowdiff-instr-") as (work, urls):
        counts = {}
        for n in (args.small, args.large):
            cap = work / f"{args.kind}-{n}.jsonl"
            make_capture(cap, n, args.kind)
            counts[n] = instructions(cap, urls["old"], urls["new"], work / f"out-{n}")
    per_pair = (counts[args.large] - counts[args.small]) / (args.large - args.small)
    fixed = counts[args.small] - per_pair * args.small
    print(f"{args.kind}: {per_pair:,.0f} instructions per pair (marginal, "
          f"{args.small:,} vs {args.large:,} exchanges); fixed {fixed / 1e9:.2f} G")

if __name__ == "__main__":
    main()
