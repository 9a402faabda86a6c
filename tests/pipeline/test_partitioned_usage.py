"""Log ingestion on the run's Dask engine: the access logs counted by LocalCluster worker
processes give the very UsageTable the threads of one process give, and a whole
`shadowdiff run --workers 2 --usage LOGS` ranks by the same usage as `--workers 1`.

Real files (a combined log with a malformed line, a gzipped one, JSON lines), real worker
processes, real servers on loopback.
"""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from dask.utils import key_split
from distributed import get_task_stream

from shadowdiff.cli.console import execute
from shadowdiff.config import Config, Targets
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline.partitioned import shared_engine
from shadowdiff.rank.usage import read_usage

from test_partitioned import capture, comparable, servers  # noqa: F401 - module fixtures

LINES = 6_000
BLOCK = 16 << 10  # ~40 blocks: many in flight on both workers, absorbed in order


def combined_lines(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        path = rng.choice(["/items/{}", "/gone/{}", "/", "/search?q={}"]).format(rng.randint(1, 900))
        day = 1 + k * 3 // n  # three UTC days: the by-day buckets are compared too
        status = rng.choice([200, 200, 200, 404, 500])
        out.append(f'10.0.0.{k % 250} - - [0{day}/Dec/2026:10:{k % 60:02d}:00 +0000] '
                   f'"GET {path} HTTP/1.1" {status} {rng.randint(10, 9000)} "-" "curl/8"')
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("logs")
    lines = combined_lines(1, LINES)
    lines.insert(4_321, "this line fits no format")  # its file and line must be named
    (root / "access.log").write_text("\n".join(lines) + "\n")
    with gzip.open(root / "access.log.1.gz", "wt") as fh:
        fh.write("\n".join(combined_lines(2, LINES)) + "\n")
    json_lines = [orjson.dumps({"method": "GET", "uri": f"/items/{i % 97}", "status": 200,
                                "time": f"2026-12-0{1 + i % 3}T10:00:00Z"}).decode()
                  for i in range(LINES)]
    (root / "app.json.log").write_text("\n".join(json_lines) + "\n")
    return [str(root / "access.log"), str(root / "access.log.1.gz"), str(root / "app.json.log")]


def test_logs_counted_on_dask_workers_equal_the_threads(logs: list[str]) -> None:
    threads = read_usage(logs[:2], block_size=BLOCK)
    json_threads = read_usage(logs[2:], fmt="json", block_size=BLOCK)
    with shared_engine(2, None) as engine, get_task_stream(engine.client) as stream:
        assert engine is not None and engine.size == 2
        workers = read_usage(logs[:2], block_size=BLOCK, executor=engine, workers=engine.size)
        json_workers = read_usage(logs[2:], fmt="json", block_size=BLOCK, executor=engine,
                                  workers=engine.size)
    ran = Counter(key_split(task["key"]) for task in stream.data)
    # counted by both worker processes, not in this one (~40 blocks per file): the plain
    # files as byte ranges the workers read themselves, the gzipped one as shipped blocks
    assert ran["count_range"] >= (LINES * 90 + LINES * 70) // BLOCK
    assert ran["count_text_block"] >= LINES * 90 // BLOCK
    assert len({task["worker"] for task in stream.data}) == 2
    assert threads.total == 2 * LINES and threads.malformed == 1
    assert threads.malformed_example.startswith(f"{logs[0]}:line 4322: ")
    assert len(threads.by_day) > 3
    for ours, theirs in ((workers, threads), (json_workers, json_threads)):
        assert ours.counts.equals(theirs.counts)
        assert (ours.total, ours.malformed, ours.malformed_example, ours.files) == \
               (theirs.total, theirs.malformed, theirs.malformed_example, theirs.files)
        assert (ours.first_seen, ours.last_seen, ours.by_day) == \
               (theirs.first_seen, theirs.last_seen, theirs.by_day)
    assert json_threads.total == LINES


def test_one_engine_counts_the_logs_and_judges_the_capture(capture: Path, servers,  # noqa: F811
                                                         logs: list[str], tmp_path: Path) -> None:
    old, new, replica = servers
    config = Config(targets=Targets(old=old, new=new, old_replica=replica),
                    history=HistoryConfig(enabled=False))
    summaries = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        code = execute((str(capture),), config, out_dir=out, usage_logs=logs[:2], quiet=True,
                       workers=workers)
        summaries[workers] = orjson.loads((out / "summary.json").read_bytes())
        assert code == summaries[workers]["exit_code"]
    one, two = summaries[1], summaries[2]
    assert one["usage"]["source"] == "access_log"
    assert one["usage"] == two["usage"]
    assert comparable(one) == comparable(two)
