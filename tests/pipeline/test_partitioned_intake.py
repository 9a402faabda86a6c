"""Raw chunks (pipeline/intake.py): local workers parse, redact and select a shadowdiff
capture's lines themselves, and the run is still the one a single process makes: a damaged
line or a truncated file ends the intake at the same place, with the same error, and a
secret in the capture is hashed the same way and stored nowhere.

Real servers on loopback, real worker processes (Dask LocalCluster).
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from factories import make_exchange, make_response
from servers import serve_app
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.config import Config, Targets
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.pipeline import intake, partitioned
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.protocols.http import plugin as http_plugin
from shadowdiff.scrub import RedactConfig
from tests.pipeline.test_partitioned import comparable, shop

SECRET = "Sup3rS3cretT0ken"


@pytest.fixture(scope="module")
def servers():
    with serve_app(shop("old")) as old, serve_app(shop("new")) as new:
        yield old, new


def both(capture: Path, servers: tuple[str, str], tmp_path: Path) -> tuple[dict, dict]:
    """The summaries of one process and of 2 local workers (raw chunks) on `capture`."""
    old, new = servers
    config = Config(targets=Targets(old=old, new=new), history=HistoryConfig(enabled=False))
    assert intake.raw_allowed((str(capture),), http_plugin, local=True), "the workers parse"
    single = run((str(capture),), config, tmp_path / "one").summary
    local = run((str(capture),), config, tmp_path / "two", workers=2).summary
    return single, local


def exchanges(n: int) -> list[Any]:
    found = [make_exchange(target=f"/items/{i}", id=f"x{i:04d}",
                           headers=(("Host", "shop.test"), ("Authorization", f"Bearer {SECRET}")))
             for i in range(n)]
    return found + [make_exchange("POST", "/items/1", id=f"p{i}") for i in range(3)]  # skipped


def test_raw_chunks_are_taken_for_a_local_shadowdiff_capture(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    capture = tmp_path / "c.jsonl"
    write_capture(capture, exchanges(3))
    har = tmp_path / "c.har"
    har.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": []}}))
    assert intake.raw_allowed((str(capture),), http_plugin, local=True)
    assert not intake.raw_allowed((str(capture),), http_plugin, local=False)
    assert not intake.raw_allowed((str(capture), str(har)), http_plugin, local=True)
    # workers get the key file by its absolute path, whatever their directory
    monkeypatch.chdir(tmp_path)
    assert intake.worker_redact(RedactConfig(key_file="k")).key_file == str(tmp_path / "k")
    monkeypatch.setenv("SHADOWDIFF_REDACT_KEY_FILE", "env.key")
    assert intake.worker_redact(RedactConfig()).key_file == str(tmp_path / "env.key")


def test_a_damaged_line_ends_the_intake_where_one_process_ends_it(
        servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioned, "CHUNK", 50)  # the damage is in chunk 5 of 8
    capture = tmp_path / "damaged.jsonl"
    write_capture(capture, exchanges(400))
    lines = capture.read_bytes().splitlines(keepends=True)
    lines[271] = b'{"id": "broken", "request": {"method": \n'  # line 272
    capture.write_bytes(b"".join(lines))
    single, local = both(capture, servers, tmp_path)
    assert single["totals"]["replayed"] == 270
    assert any("line 272" in e and "not valid JSON" in e for e in single["run"]["errors"])
    assert comparable(local) == comparable(single)


def test_a_truncated_gzip_capture_ends_the_intake_where_one_process_ends_it(
        servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioned, "CHUNK", 50)
    plain = tmp_path / "full.jsonl"
    write_capture(plain, exchanges(400))
    packed = gzip.compress(plain.read_bytes())
    capture = tmp_path / "cut.jsonl.gz"
    capture.write_bytes(packed[: len(packed) * 2 // 3])
    single, local = both(capture, servers, tmp_path)
    assert 0 < single["totals"]["replayed"] < 400
    assert any("truncated or corrupt" in e for e in single["run"]["errors"])
    assert comparable(local) == comparable(single)


def recorder(seen: list[str]):
    """A target that answers alike for old and new and keeps each Authorization it gets."""
    def factory() -> web.Application:
        async def item(request: web.Request) -> web.Response:
            seen.append(request.headers.get("Authorization", ""))
            return web.json_response({"id": request.match_info["id"]})

        app = web.Application()
        app.router.add_get("/items/{id}", item)
        return app
    return factory


def test_workers_hash_a_captured_secret_as_one_process_does_and_store_it_nowhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioned, "CHUNK", 50)
    monkeypatch.setenv("SHADOWDIFF_REDACT_KEY_FILE", str(tmp_path / "new.key"))  # none yet
    capture = tmp_path / "secret.jsonl"
    write_capture(capture, exchanges(200))
    assert SECRET.encode() in capture.read_bytes(), "the capture holds it: the run must hash it"
    seen: list[str] = []
    sent, summaries = {}, {}
    with serve_app(recorder(seen)) as old, serve_app(recorder(seen)) as new:
        config = Config(targets=Targets(old=old, new=new), history=HistoryConfig(enabled=False))
        for name, workers in (("one", 1), ("two", 2)):
            summaries[name] = run((str(capture),), config, tmp_path / name, workers=workers).summary
            sent[name], seen[:] = list(seen), []
    assert summaries["two"]["totals"]["skipped"] == summaries["one"]["totals"]["skipped"] == 3
    assert comparable(summaries["two"]) == comparable(summaries["one"])
    assert len(sent["one"]) == 400 and sorted(sent["two"]) == sorted(sent["one"])
    assert len(set(sent["one"])) == 1 and sent["one"][0].startswith("Bearer redacted:")
    for name in sent:
        for path in (tmp_path / name).iterdir():
            data = path.read_bytes()
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            assert SECRET.encode() not in data, path


@pytest.mark.parametrize("lines", [
    [b'{"id": "a"}\n', b"\n", b'{"id": "c"}' * 500 + b"\n"],   # as capture_lines reads them
    [b'{"id": "a"}', b"", b'{"id": "c"}' * 500],                 # a last line with no newline
    [b"one"],
    [b"with\nnewline", b"x\r\n", b"\x0b\x1c"],               # separators of splitlines()
    [],
])
def test_a_chunk_travels_compressed_and_arrives_as_it_left(lines: list[bytes]) -> None:
    chunk = intake.Chunk(lines, "c.jsonl", list(range(2, 2 + len(lines))), None)
    wire = pickle.dumps(chunk, protocol=5)
    assert pickle.loads(wire) == chunk
    assert not any(line in wire for line in lines if len(line) > 100)  # not in the clear


def test_a_capture_s_own_lines_travel_compressed(tmp_path: Path) -> None:
    """The lines a raw chunk holds are read by capture_lines, newline and all: they must be
    compressed too (the first version compressed only lines without a newline, that is,
    never a capture's)."""
    capture = tmp_path / "c.jsonl.gz"
    body = b'{"n": 1, "pad": "' + b"x" * 900 + b'"}'
    write_capture(capture, (make_exchange(target=f"/doc/{i}", recorded=make_response(body=body))
                            for i in range(200)))
    chunk = next(intake.raw_chunks((str(capture),), 1000))
    raw = sum(map(len, chunk.lines))
    wire = pickle.dumps(chunk, protocol=5)
    assert len(chunk) == 200 and all(line.endswith(b"\n") for line in chunk.lines)
    assert len(wire) < raw / 10
    assert pickle.loads(wire) == chunk
