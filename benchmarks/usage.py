"""Benchmark for shadowdiff.rank.usage (issue 4): how fast production logs become endpoint counts.

    python benchmarks/usage.py                  # 2M lines: ours (threads, Dask), pyarrow, goaccess, awk
    python benchmarks/usage.py --lines 200000   # a quick look
    python benchmarks/usage.py --scale 10       # also ours over 10x the log (RSS must stay flat)

One run, one generated combined log (skewed endpoint mix, ids, UUIDs and queries in the
targets, ~150 bytes a line), each contender in its own child process so its peak RSS
(`ru_maxrss`) is its own:
- `ours`: `shadowdiff.rank.usage.read_usage`, endpoint counts with status mix and time range.
- `ours/dask2`: the same count on a 2-process LocalCluster (the engine of `run --workers 2`):
  each worker reads and counts its byte ranges of the log; the cluster's start is not timed.
- `pyarrow`: the plain approach the issue measured: pyarrow's CSV reader with a delimiter
  that never occurs, one `extract_regex` per batch, group-by (method, target): raw
  targets, no endpoint templates (like awk).
- `pyarrow+tpl`: the same, then `http_endpoint` on the distinct (method, target) pairs:
  the same output as ours, done plainly (the check that both agree is printed).
- `goaccess` (Debian): its full analysis to a JSON report (it does more than count endpoints;
  it is the tool an admin would reach for).
- `awk`: `awk '{print $6, $7}' | sort | uniq -c`, raw targets, no templates.
The log is cached under --workdir; the page cache is warmed before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# numpy and pyarrow are imported inside the functions that need them: the driver must
# stay small, because a child started by fork+exec inherits its parent's peak RSS in
# ru_maxrss (Linux keeps the high-water mark across exec), which would flatter no one.

# (method, prefix, id kind, suffix, weight): a skewed mix like a real API
_ENDPOINTS = [
    ("GET", "/api/v1/users/", "n", "", 30), ("GET", "/api/v1/users/", "n", "/orders", 12),
    ("GET", "/api/v1/items/", "n", "", 10), ("POST", "/api/v1/orders", "", "", 5),
    ("GET", "/", "", "", 8), ("GET", "/static/app.3f9a1c.js", "", "", 6),
    ("GET", "/search?q=shoes&page=", "n", "", 5), ("GET", "/api/v1/orders/", "uuid", "", 4),
    ("PUT", "/api/v1/users/", "n", "/address", 2),
    ("DELETE", "/api/v1/sessions/", "hex", "", 1), ("GET", "/healthz", "", "", 6),
    ("GET", "/api/v1/items/", "n", "/reviews?page=2", 3), ("HEAD", "/healthz", "", "", 1),
]
_STATUS = (["200"] * 88) + ["201", "204", "301", "304", "304", "404", "404", "404",
                           "500", "502", "503", "499"]
_AGENTS = ['"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
           'Chrome/124.0 Safari/537.36"', '"curl/8.5.0"', '"kube-probe/1.29"',
           '"python-requests/2.31.0"']
_T0 = 1_709_280_000  # 2024-03-01
_CHUNK = 500_000


# -- generating the log ----------------------------------------------------------------------


def generate(path: Path, lines: int, seed: int = 4) -> None:
    """Write a `lines`-line combined log, in vectorised chunks (a few seconds for 2M)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        for start in range(0, lines, _CHUNK):
            f.write(_chunk(rng, start, min(_CHUNK, lines - start)))
    tmp.rename(path)


def _ids(rng: np.random.Generator, m: int) -> np.ndarray:
    import numpy as np

    # heavy-tailed: a few hot ids, a long tail of ids seen once or twice
    hot = np.minimum(rng.zipf(1.3, m), 10_000_000)
    tail = rng.integers(1, 300_000, m)
    return np.where(rng.random(m) < 0.6, hot, tail)


def _target_column(rng: np.random.Generator, which: np.ndarray, m: int) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    ids = _ids(rng, m)
    out = np.empty(m, dtype=object)
    for k, (_, prefix, kind, suffix, _) in enumerate(_ENDPOINTS):
        rows = np.flatnonzero(which == k)
        if kind == "uuid":
            mid = np.char.mod("%08x-4e2a-4b1c-9d3e-", ids[rows] * 2654435761 % (1 << 32))
            mid = np.char.add(mid, np.char.mod("%012x", ids[rows]))
        elif kind == "hex":
            mid = np.char.mod("%016x", ids[rows] * 2654435761 % (1 << 40) + (1 << 60))
            mid = np.char.add(mid, np.char.mod("%016x", ids[rows]))
        elif kind == "n":
            mid = ids[rows].astype(str)
        else:
            mid = np.full(len(rows), "")
        out[rows] = np.char.add(np.char.add(prefix, mid), suffix)
    return pa.array(out, pa.string())


def _chunk(rng: np.random.Generator, start: int, m: int) -> bytes:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    weights = np.array([e[4] for e in _ENDPOINTS], float)
    which = rng.choice(len(_ENDPOINTS), size=m, p=weights / weights.sum())
    seconds = _T0 + (np.arange(start, start + m) // 25)  # 25 requests a second
    uniq, inv = np.unique(seconds, return_inverse=True)
    stamps = [datetime.fromtimestamp(int(s), timezone.utc).strftime("[%d/%b/%Y:%H:%M:%S +0000]")
              for s in uniq]

    def ints(a: np.ndarray) -> pa.Array:
        return pa.array(a).cast(pa.string())

    cols = [ints(rng.integers(1, 255, m)), pa.array([".0.4."] * m), ints(rng.integers(1, 255, m)),
            pa.array([" - - "] * m), pa.array(stamps).take(pa.array(inv)), pa.array([' "'] * m),
            pa.array([e[0] for e in _ENDPOINTS]).take(pa.array(which)), pa.array([" "] * m),
            _target_column(rng, which, m), pa.array([' HTTP/1.1" '] * m),
            pa.array(_STATUS).take(pa.array(rng.integers(0, len(_STATUS), m))),
            pa.array([" "] * m), ints(rng.integers(0, 90_000, m)),
            pa.array([' "https://shop.example/" '] * m),
            pa.array(_AGENTS).take(pa.array(rng.integers(0, len(_AGENTS), m))),
            pa.array(["\n"] * m)]
    joined = pc.binary_join_element_wise(*cols, "")
    offsets = np.frombuffer(joined.buffers()[1], np.int32, len(joined) + 1)
    return joined.buffers()[2].to_pybytes()[offsets[0]: offsets[-1]]


# -- contenders (each runs in a child process) ----------------------------------------------


def run_ours(logs: list[str]) -> dict[str, Any]:
    from shadowdiff.rank.usage import read_usage

    t = time.perf_counter()
    table = read_usage(logs)
    seconds = time.perf_counter() - t
    return {"lines": table.lines, "seconds": seconds, "endpoints": table.requests_by_endpoint()}


def run_ours_dask(logs: list[str]) -> dict[str, Any]:
    """The same count on a 2-process LocalCluster, as `run --workers 2 --usage` does it:
    the workers read and count byte ranges of the log (cluster start excluded)."""
    from shadowdiff.pipeline.partitioned import shared_engine
    from shadowdiff.rank.usage import read_usage

    with shared_engine(2, None) as engine:
        assert engine is not None
        t = time.perf_counter()
        table = read_usage(logs, executor=engine, workers=engine.size)
        seconds = time.perf_counter() - t
    return {"lines": table.lines, "seconds": seconds, "endpoints": table.requests_by_endpoint()}


def run_pyarrow(logs: list[str], *, templates: bool = False) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from shadowdiff.protocols.http.endpoints import http_endpoint

    regex = r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>\S+) (?P<target>\S+)[^"]*" (?P<status>\d{3}) '
    t = time.perf_counter()
    parts, lines = [], 0
    for log in logs:
        reader = pcsv.open_csv(log, read_options=pcsv.ReadOptions(column_names=["line"]),
                               parse_options=pcsv.ParseOptions(delimiter="\x1f", quote_char=False))
        for batch in reader:
            lines += batch.num_rows
            s = pc.extract_regex(batch.column(0), regex)
            table = pa.table({"method": s.field("method"), "target": s.field("target")})
            parts.append(table.group_by(["method", "target"]).aggregate([([], "count_all")]))
    pairs = pa.concat_tables(parts).group_by(["method", "target"]).aggregate(
        [("count_all", "sum")])
    if not templates:
        return {"lines": lines, "seconds": time.perf_counter() - t, "distinct": pairs.num_rows}
    counts: Counter[str] = Counter()
    for m, tg, n in zip(*(pairs[c].to_pylist() for c in ("method", "target", "count_all_sum"))):
        counts[http_endpoint(m, tg)] += n
    return {"lines": lines, "seconds": time.perf_counter() - t, "endpoints": dict(counts)}


def run_pyarrow_templates(logs: list[str]) -> dict[str, Any]:
    return run_pyarrow(logs, templates=True)


def run_goaccess(logs: list[str]) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp()) / "report.json"
    t = time.perf_counter()
    subprocess.run(["goaccess", *logs, "--log-format=COMBINED", "--no-progress",
                    "--no-global-config", "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    total = json.loads(out.read_text())["general"]["total_requests"]
    shutil.rmtree(out.parent)
    return {"lines": total, "seconds": seconds}


def run_awk(logs: list[str]) -> dict[str, Any]:
    t = time.perf_counter()
    out = subprocess.run(f"awk '{{print $6, $7}}' {' '.join(logs)} | sort | uniq -c | wc -l",
                         shell=True, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    lines = sum(1 for log in logs for _ in open(log, "rb"))
    return {"lines": lines, "seconds": seconds, "distinct": int(out.stdout)}


CONTENDERS = {"ours": run_ours, "ours/dask2": run_ours_dask, "pyarrow": run_pyarrow,
              "pyarrow+tpl": run_pyarrow_templates,
              "goaccess": run_goaccess, "awk": run_awk}


def child(name: str, logs: list[str]) -> None:
    if name == "generate":
        return generate(Path(logs[0]), int(logs[1]))
    result = CONTENDERS[name](logs)
    if name in ("goaccess", "awk"):
        # the largest of the tool's processes (ru_maxrss of waited-for children, in KiB)
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    else:
        result["rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def _peak_rss_mb() -> float:
    # VmHWM is this process's own high-water mark (unlike ru_maxrss, not inherited)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, logs: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", name, *logs],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the report -----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--scale", type=int, default=0,
                    help="also read the log this many times over (hard links), ours only")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "shadowdiff-bench"))
    ap.add_argument("--skip", action="append", default=[], choices=list(CONTENDERS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("logs", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.logs)
    log = _log(Path(args.workdir), args.lines)
    print(f"log: {log} ({args.lines:,} lines, {log.stat().st_size / 1e6:,.0f} MB); "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    results = {}
    for name in CONTENDERS:
        if name in args.skip or (name == "goaccess" and not shutil.which("goaccess")):
            print(f"{name:11} skipped" + (" (not installed: apt-get install goaccess)"
                                         if name == "goaccess" else ""))
            continue
        results[name] = measure(name, [str(log)])
        _print(name, results[name], results.get("ours") if name != "ours" else None)
    if "ours" in results and "ours/dask2" in results:
        same = results["ours"]["endpoints"] == results["ours/dask2"]["endpoints"]
        print(f"ours (threads) and ours/dask2 agree on every endpoint count: {same}")
    if "ours" in results and "pyarrow+tpl" in results:
        same = results["ours"]["endpoints"] == results["pyarrow+tpl"]["endpoints"]
        print(f"ours and pyarrow+tpl agree on every endpoint count: {same}")
    if args.scale > 1:
        logs = _links(log, args.scale)
        scaled = measure("ours", logs)
        _print(f"ours x{args.scale}", scaled, None)
        for link in logs[1:]:
            os.unlink(link)


def _print(name: str, r: dict[str, Any], ours: dict[str, Any] | None) -> None:
    rate = r["lines"] / r["seconds"]
    ratio = ""
    if ours is not None:
        ratio = f"  ours is {ours['lines'] / ours['seconds'] / rate:.1f}x faster"
    print(f"{name:11} {r['lines']:>11,} lines {r['seconds']:7.2f} s {rate:>12,.0f} lines/s "
          f"peak RSS {r['rss_mb']:6.0f} MB{ratio}", flush=True)


def _log(workdir: Path, lines: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"combined-{lines}.log"
    if not log.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", "generate", str(log), str(lines)],
                       check=True)
        print(f"generated {log} in {time.perf_counter() - t:.1f} s")
    with open(log, "rb") as f:  # warm the page cache so every contender starts alike
        while f.read(16 << 20):
            pass
    return log


def _links(log: Path, n: int) -> list[str]:
    # hard links: distinct paths (read_usage reads each), no extra disk
    out = [str(log)]
    for i in range(1, n):
        link = log.with_name(f"{log.name}.x{i}")
        if not link.exists():
            os.link(log, link)
        out.append(str(link))
    return out


if __name__ == "__main__":
    main()
