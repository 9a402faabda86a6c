"""Instructions per compare of the 60 KB HTML pairs of benchmarks/diff.py, under cachegrind.

    .venv/bin/python benchmarks/diff_instructions.py [--calls 10] [case ...]

Wall time on a shared machine measures the neighbours too; an instruction count does not.
Each case runs twice under `valgrind --tool=cachegrind`: once with the imports, the pages
and one warm-up compare only, once with `--calls` more compares (both sides parsed, no
cache, as in diff.py); the difference divided by `--calls` is the cost of one compare,
whatever the machine's load (PYTHONHASHSEED=0 fixes the hashes; runs still differ by up to
~0.5 M). OPENBLAS_NUM_THREADS=1: numpy (imported by a dependency) would otherwise start
threads whose spinning is counted too.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(case: str, calls: int) -> None:
    """The measured program: `calls` compares of one case after one warm-up."""
    from diff import html_cases

    from shadowdiff.compare import markup
    from shadowdiff.compare.judge import compare_responses
    from shadowdiff.config import Config
    from shadowdiff.model import Response
    from shadowdiff.protocols.http.plugin import PROTOCOL

    headers = (("Content-Type", "text/html; charset=utf-8"),)
    old_body, new_body = html_cases()[case]
    old, new = Response(200, headers, old_body), Response(200, headers, new_body)
    config = Config()
    for _ in range(calls + 1):
        markup._CACHE.clear()  # both pages parsed every time: a fresh pair
        compare_responses(old, new, "GET /catalog", PROTOCOL, config)


def instructions(case: str, calls: int) -> int:
    """Instructions executed by `run(case, calls)` in a fresh interpreter, per cachegrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
               sys.executable, __file__, "--run", case, str(calls)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    from diff import html_cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="html cases of diff.py (default: all)")
    parser.add_argument("--calls", type=int, default=10, help="compares in the measured run")
    parser.add_argument("--run", nargs=2, metavar=("CASE", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run[0], int(args.run[1]))
        return
    print(f"{'html page':<12} {'M instructions/compare':>23}")
    for case in args.cases or list(html_cases()):
        per_call = (instructions(case, args.calls) - instructions(case, 0)) / args.calls
        print(f"{case:<12} {per_call / 1e6:>23.2f}", flush=True)


if __name__ == "__main__":
    main()
