"""Replay benchmark: pairs/s replayed and diffed by `shadowdiff run`, beside wrk on the same servers.

Two nginx instances (from Debian) on loopback serve a ~2 KB JSON document: identical on
both for /same/N, differing in two fields for /diff/N. In one run this script measures
  1. wrk against old, same document (the raw request rate this machine allows);
  2. shadowdiff run on 1 exchange, per worker count: the fixed cost of a run (start-up,
     a LocalCluster's start, reports, history);
  3. shadowdiff run on 10k and 100k identical exchanges, and on 2k and 10k differing ones
     (pairs/s end to end, the marginal rate of the larger beside the smaller, CPU per pair,
     peak RSS), for each of --workers (1 and 2);
and prints each rate as a ratio to wrk's (requests/s; a pair is two requests). The targets
share this machine's cores with shadowdiff, so it also estimates, from each process's
marginal CPU seconds, the rate the same cores would allow with the targets elsewhere
("free cores"), and from that how N workers compare with one process.

With `--replica` it starts a third nginx (old's replica, serving old's documents) and
measures what noise measurement costs, on identical exchanges, on exchanges whose only
difference is a random `X-Trace` header (nginx's $request_id: noise on every answer), and
on differing exchanges:
  a. old + new                          (no replica)
  b. old + new + replica, not judged    (the extra requests alone: the replica's answers
                                         are dropped before the judge, in the child)
  c. old + new + replica                (the noise machinery: old-vs-replica diff, masks,
                                         per-signature counts, rule audit)
and prints the machinery's overhead, (c - b) / b, which must stay under 30%.

    .venv/bin/python benchmarks/replay.py [--small N] [--large N] [--diff N] [--repeat K]
    .venv/bin/python benchmarks/replay.py --replica [--small N] [--diff N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shadowdiff.capture.jsonl import CaptureWriter  # noqa: E402
from shadowdiff.model import Exchange, Request  # noqa: E402


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def document(variant: str) -> bytes:
    items = [{"id": i, "sku": f"SKU-{i:05d}", "name": f"Product number {i}", "price": 10.5 + i,
              "stock": i * 3, "tags": ["a", "b"]} for i in range(14)]
    doc = {"items": items, "meta": {"page": 1, "total": 14, "currency": "EUR"}}
    if variant == "new":
        doc["items"][3]["price"] = 99.0
        doc["meta"]["currency"] = "USD"
    return json.dumps(doc).encode()


NGINX_CONF = """
daemon off; worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; default_type application/json; keepalive_requests 1000000;
  client_body_temp_path {prefix}/cb; proxy_temp_path {prefix}/px; fastcgi_temp_path {prefix}/fc;
  uwsgi_temp_path {prefix}/uw; scgi_temp_path {prefix}/sc;
  server {{ listen 127.0.0.1:{port}; root {root};
    location /same/ {{ try_files /same.json =404; }}
    location /diff/ {{ try_files /diff.json =404; }}
    location /noisy/ {{ add_header X-Trace $request_id always; try_files /same.json =404; }} }}
}}
"""


def start_nginx(work: Path, role: str) -> tuple[subprocess.Popen[bytes], str]:
    prefix = work / f"nginx-{role}"
    root = prefix / "www"
    root.mkdir(parents=True)
    (root / "same.json").write_bytes(document("old"))
    (root / "diff.json").write_bytes(document(role))
    for name in ("same.json", "diff.json"):  # equal ETag and Last-Modified on every instance
        os.utime(root / name, (1_700_000_000, 1_700_000_000))
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, root=root))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nginx did not start on port {port}: see {prefix}/error.log")


@contextmanager
def nginx_servers(roles: tuple[str, ...], prefix: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """(a work folder, role -> URL) of an nginx per role; all stopped and the folder gone after."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the files
    procs = []
    try:
        urls = {}
        for role in roles:
            proc, urls[role] = start_nginx(work, role)
            procs.append(proc)
        yield work, urls
    finally:
        for p in procs:
            p.send_signal(signal.SIGQUIT)
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def make_capture(path: Path, n: int, kind: str) -> None:
    with CaptureWriter(path, source="benchmark") as w:
        for i in range(n):
            req = Request("http", "GET", f"/{kind}/{i}", (("Host", "bench.example"),
                                                         ("Accept", "application/json")))
            w.write(Exchange(id=f"b-{i}", request=req, source="bench", seen_at=0.0))


def wrk_rate(url: str, seconds: int = 5) -> float | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", url + "/same/1"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


# Runs the CLI in a child and prints, when it exits, its own peak RSS and the CPU seconds of
# it and every process below it: Dask's workers are forked by a forkserver that nobody waits
# for, so RUSAGE_CHILDREN would miss them; a thread samples them every 0.1 s instead.
_RSS_WRAPPER = (
    "import atexit, resource, sys, threading, time, psutil\n"
    "_cpu = {}\n"
    "def _sample():\n"
    "    me = psutil.Process()\n"
    "    while True:\n"
    "        for p in me.children(recursive=True):\n"
    "            try:\n"
    "                t = p.cpu_times(); _cpu[p.pid] = (p.ppid() == me.pid, t.user + t.system)\n"
    "            except psutil.Error:\n"
    "                pass\n"
    "        time.sleep(0.1)\n"
    "threading.Thread(target=_sample, daemon=True).start()\n"
    "def _report():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    me = r.ru_utime + r.ru_stime\n"
    "    sys.stderr.write(f'\\nRSS {r.ru_maxrss}\\nCPU {me + sum(c for _, c in _cpu.values())}\\n')\n"
    # the driver, its direct children (the forkserver) and the processes below (the workers)
    "    workers = ' '.join(str(c) for child, c in _cpu.values() if not child)\n"
    "    sys.stderr.write(f'ROLES {me} {sum(c for child, c in _cpu.values() if child)} {workers}\\n')\n"
    "atexit.register(_report)\n"
    "import os\n"
    "if os.environ.get('SHADOWDIFF_BENCH_NO_NOISE'):\n"  # mode b: send, but judge old/new only
    "    import dataclasses, shadowdiff.pipeline.judging as p\n"
    "    _judge = p.judge\n"
    "    def _old_new(trial, *a, **k):\n"
    "        kept = {r: o for r, o in trial.outcomes.items() if r != 'old_replica'}\n"
    "        return _judge(dataclasses.replace(trial, outcomes=kept), *a, **k)\n"
    "    p.judge = _old_new\n"
    "from shadowdiff.cli.main import entry\n"
    "sys.argv = ['shadowdiff', *sys.argv[1:]]\n"
    "entry()\n"
)


@dataclass
class Run:
    """One `shadowdiff run` as measured."""

    wall: float
    cpu: float
    roles: list[float]  # CPU seconds: the driver, the forkserver, then each worker
    rate: float  # pairs/s
    rss: float  # peak RSS of the driver, MB
    summary: dict


def shadowdiff_run(capture: Path, old: str | None, new: str | None, out: Path,
                   replica: str | None = None,
                   judge_replica: bool = True, workers: int = 1) -> Run:
    """One `shadowdiff run` in a child process, as measured.

    Each run gets a history store of its own (a first run: no trend chart), so earlier
    benchmark runs neither slow it down nor land in the working tree's reports/. No `old`
    and `new`: a mirrored capture, judged on the answers it holds."""
    targets = [] if old is None or new is None else ["--old", old, "--new", new]
    cmd = [sys.executable, "-c", _RSS_WRAPPER, "run", str(capture), *targets,
           "--out", str(out), "--quiet", "--concurrency", "64", "--workers", str(workers),
           "--history", str(out.parent / f"{out.name}-history.sqlite")]
    if replica:
        cmd += ["--old-replica", replica]
    env = dict(os.environ)
    if not judge_replica:
        env["SHADOWDIFF_BENCH_NO_NOISE"] = "1"
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    # exit 1 is a run that found divergences, and also Python's for an uncaught exception:
    # only the summary tells them apart
    if proc.returncode not in (0, 1) or not (out / "summary.json").exists():
        raise SystemExit(f"shadowdiff run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = re.findall(r"^CPU ([\d.]+)$", proc.stderr, re.M)
    roles = re.findall(r"^ROLES (.*)$", proc.stderr, re.M)
    rss_kb = int(re.findall(r"^RSS (\d+)$", proc.stderr, re.M)[-1])
    summary = json.loads((out / "summary.json").read_text())
    return Run(elapsed, float(cpu[-1]) if cpu else float("nan"),
               [float(x) for x in roles[-1].split()] if roles else [],
               summary["totals"]["replayed"] / elapsed, rss_kb / 1024.0, summary)


def check(summary: dict, n: int, kind: str) -> None:
    """A benchmark that measured the wrong thing is worse than none: check the verdicts."""
    totals = summary["totals"]
    assert totals["replayed"] == n, totals
    if kind == "noisy":  # a random X-Trace on every answer: noise, once a replica measures it
        found = {(s["location"], s["affected"]) for s in summary["signatures"]}
        assert found == (set() if summary["noise"]["measured"] else {("header.x-trace", n)}), found
    elif kind == "same":
        assert totals["identical"] == n and not summary["signatures"], totals
    else:
        found = {(s["location"], s["kind"], s["affected"]) for s in summary["signatures"]}
        assert found == {("body.items[*].price", "value_changed", n),
                         ("body.meta.currency", "value_changed", n)}, found


def replica_mode(work: Path, old: str, new: str, replica: str, args: argparse.Namespace) -> None:
    """Noise machinery overhead: old+new, +replica requests unjudged, +replica judged."""
    modes = (("old+new", None, True), ("+replica, unjudged", replica, False),
             ("+replica, judged", replica, True))
    print(f"{'exchanges':>10} {'mode':>20} {'pairs/s':>10} {'peak RSS':>9}   (best of {args.repeat})")
    for kind, n in (("same", args.small), ("noisy", args.small), ("diff", args.diff)):
        cap = work / f"{kind}-{n}.jsonl"
        make_capture(cap, n, kind)
        best: dict[str, float] = {}
        for label, target, judged in modes:
            for attempt in range(args.repeat):
                run = shadowdiff_run(cap, old, new, work / f"r-{kind}-{label}-{attempt}",
                                     target, judged)
                check(run.summary, n, kind)
                if judged and target:
                    assert run.summary["noise"]["exchanges"] == n, run.summary["noise"]
                best[label] = max(best.get(label, 0.0), run.rate)
            print(f"{kind + ' ' + format(n, ','):>10} {label:>20} {best[label]:>10,.0f} {run.rss:>7.0f} MB")
        unjudged, judged = 1 / best["+replica, unjudged"], 1 / best["+replica, judged"]
        print(f"{'':>10} {'noise machinery':>20} {100 * (judged - unjudged) / unjudged:>+9.1f}% time "
              "(beyond the extra requests; budget +30%)")


def fixed_costs(work: Path, old: str, new: str, workers: list[int], repeat: int) -> dict[int, Run]:
    """A 1-exchange run per worker count: start-up (imports, a LocalCluster), the certificate
    probe, reports, history; what a run costs besides its pairs."""
    cap = work / "one.jsonl"
    make_capture(cap, 1, "same")
    return best_runs(cap, old, new, work / "one", workers, repeat)


def best_runs(cap: Path, old: str, new: str, out: Path, workers: list[int],
              repeat: int) -> dict[int, Run]:
    """The fastest of `repeat` runs of `cap` per worker count. The counts take turns (1, 2,
    1, 2, ...), so a machine that drifts during the benchmark drifts under both alike."""
    best: dict[int, Run] = {}
    for attempt in range(repeat):
        for w in workers:
            run = shadowdiff_run(cap, old, new, out.with_name(f"{out.name}-{w}-{attempt}"),
                                 workers=w)
            if w not in best or run.wall < best[w].wall:
                best[w] = run
    return best


def free_core_rate(large: list[float], small: list[float], extra: int) -> float | None:
    """Pairs/s the processes' marginal CPU seconds allow on this machine's cores, with the
    targets on other cores: every process may run on a core of its own, but no more cores
    than there are. `large` and `small` are the roles (Run.roles) of two runs of the same kind and workers;
    workers are alike, so they are matched by rank."""
    if len(large) != len(small) or len(large) < 2 or extra <= 0:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = [a - b for a, b in zip(sorted(large[2:]), sorted(small[2:]))]
    per_pair = [max(0.0, x) / extra for x in (large[0] - small[0], large[1] - small[1], *workers)]
    if not sum(per_pair):
        return None
    return min(cores / sum(per_pair), 1 / max(per_pair))


@dataclass
class Row:
    """One line of the table: the fastest run of `n` exchanges of a kind on `workers`."""

    label: str
    n: int
    workers: int
    run: Run
    marginal: float | None  # pairs/s beside the smaller run of the same kind and workers
    cpu_us: float           # CPU per pair, less a 1-exchange run's
    free: float | None      # the free-core estimate (free_core_rate)


def make_row(label: str, n: int, workers: int, run: Run, smaller: tuple[int, Run] | None,
             one: Run) -> Row:
    """`run` beside `smaller` (n and run of the smaller capture of its kind, if measured)."""
    marginal = free = None
    if smaller is not None:
        m, before = smaller
        # None when the larger run was not slower: its start-up's variance swamped the
        # difference (sizes too small to tell)
        if m < n and run.wall > before.wall:
            marginal = (n - m) / (run.wall - before.wall)
        free = free_core_rate(run.roles, before.roles, n - m)
    return Row(label, n, workers, run, marginal, 1e6 * (run.cpu - one.cpu) / n, free)


def print_speedups(rows: list[Row]) -> None:
    """Each worker count's free-core estimate against one process's, per kind of pair."""
    best = {(row.label, row.workers): row.free for row in rows if row.free}
    for (label, workers), free in sorted(best.items()):
        one = best.get((label, 1))
        if workers > 1 and one:
            print(f"free cores, {label}: {workers} workers {free / one:.2f}x one process "
                  f"({free:,.0f} vs {one:,.0f} pairs/s, estimated from CPU seconds)")


def standard_mode(work: Path, old: str, new: str, ref: float | None,
                  args: argparse.Namespace) -> None:
    """Pairs/s end to end, and marginal (the larger run's extra pairs over its extra seconds
    beside the smaller run of the same kind: what start-up, reports and a LocalCluster's
    start cost is taken off without assuming they add up), CPU per pair."""
    counts = [int(w) for w in args.workers.split(",")]
    repeat = args.repeat or 1
    fixed = fixed_costs(work, old, new, counts, repeat)
    rows: list[Row] = []
    seen: dict[tuple[str, int], tuple[int, Run]] = {}
    for label, n, kind in (("identical", args.small, "same"), ("identical", args.large, "same"),
                           ("differing", max(1, args.diff // 5), "diff"),
                           ("differing", args.diff, "diff")):
        cap = work / f"{kind}-{n}.jsonl"
        make_capture(cap, n, kind)
        for workers, run in best_runs(cap, old, new, work / f"out-{kind}-{n}", counts,
                                      repeat).items():
            check(run.summary, n, kind)
            rows.append(make_row(label, n, workers, run, seen.get((kind, workers)), fixed[workers]))
            seen[(kind, workers)] = (n, run)
    if repeat > 1:
        print(f"each figure below: the fastest of {repeat} runs, the worker counts taking turns")
    for w, one in fixed.items():
        print(f"fixed cost, {w} worker(s): {one.wall:.2f} s wall, {one.cpu:.2f} s CPU (a 1-exchange run)")
    print_table(rows, ref)
    print_speedups(rows)


def print_table(rows: list[Row], ref: float | None) -> None:
    """The rows, each rate also as a ratio to wrk's requests/s (`ref`)."""
    print(f"{'pairs':>10} {'exchanges':>10} {'workers':>8} {'pairs/s':>10} {'vs wrk':>7} "
          f"{'marginal':>9} {'vs wrk':>7} {'CPU/pair':>9} {'peak RSS':>9} {'free cores':>10}")
    ratio = lambda r: f"{2 * r / ref:.2f}" if ref and r else "n/a"  # noqa: E731
    for row in rows:
        marginal = row.marginal
        shown = f"{marginal:>9,.0f}" if marginal else f"{'':>9}"
        print(f"{row.label:>10} {row.n:>10,} {row.workers:>8} {row.run.rate:>10,.0f} "
              f"{ratio(row.run.rate):>7} {shown} {ratio(marginal) if marginal else '':>7} "
              f"{row.cpu_us:>7.0f}µs {row.run.rss:>7.0f} MB {f'{row.free:,.0f}' if row.free else '':>10}")
    print("(a pair is one request to old and one to new, judged; 'vs wrk' compares requests/s;\n"
          " pairs/s is end to end; marginal is (n - n_smaller) / (t - t_smaller) beside the row\n"
          " above of the same kind and workers; CPU/pair is user+system of shadowdiff's processes\n"
          " less a 1-exchange run's, nginx not included; RSS is the driver's: each worker is a\n"
          " process of its own; free cores is the pairs/s this machine's cores would allow if\n"
          " the targets ran elsewhere: from each process's marginal CPU seconds (driver,\n"
          " forkserver, each worker), min(cores / their sum, 1 / the busiest's): an estimate\n"
          " from measured CPU time, not a measured rate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--diff", type=int, default=10_000)
    parser.add_argument("--replica", action="store_true",
                        help="measure the noise machinery's overhead with a third nginx (old's replica)")
    parser.add_argument("--repeat", type=int,
                        help="runs per measurement, the fastest kept [1; --replica: 3]")
    parser.add_argument("--workers", default="1,2",
                        help="worker counts to measure, comma-separated (1 = one process) [1,2]")
    args = parser.parse_args()
    if not shutil.which("nginx"):
        raise SystemExit("benchmarks/replay.py needs nginx (apt-get install nginx-light)")
    roles = ("old", "new", "replica") if args.replica else ("old", "new")
    with nginx_servers(roles, "shadowdiff-bench-") as (work, urls):
        old, new = urls["old"], urls["new"]
        if args.replica:
            args.repeat = args.repeat or 3
            replica_mode(work, old, new, urls["replica"], args)
            return
        ref = wrk_rate(old)
        print(f"wrk -t1 -c32 on old nginx: {ref:,.0f} requests/s" if ref else "wrk: not installed")
        standard_mode(work, old, new, ref, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
