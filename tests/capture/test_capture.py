"""Tests for shadowdiff/capture/__init__.py (detection, dispatch) and capture/filters.py."""

from __future__ import annotations

from testpaths import DATA
import gzip
import importlib.util
import json
import re
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import factories
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowdiff.capture import FORMATS, detect_format, read_exchanges, sniff_shadowdiff
from shadowdiff.capture.filters import Filter, apply_filters, in_sample
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange

DATA = DATA
LOG_LINE = '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /users/1 HTTP/1.1" 200 12 "-" "curl"'
HAR = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [
    {"startedDateTime": "2024-01-01T00:00:00Z", "time": 1,
     "request": {"method": "GET", "url": "http://h.test/users/1", "headers": []},
     "response": {"status": 200, "headers": [], "content": {"size": 0, "text": ""}}}]}}


def make_exchange(i: int = 0, method: str = "GET", target: str = "/users/1", host: str = "h.test",
                  body: bytes = b"", seen_at: float = 1000.0, count: int = 1) -> Exchange:
    """factories.make_exchange with a chosen id, Host and seen_at, which the filters look at."""
    ex = factories.make_exchange(method, target, headers=(("Host", host),), body=body,
                                 count=count, id=f"t-{i}")
    return replace(ex, seen_at=seen_at)


def _write(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# -- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_detect_by_content_not_name(tmp_path: Path, compress: bool) -> None:
    capture = tmp_path / "a.bin"
    write_capture(capture, [make_exchange()], source="test")
    if compress:
        capture.write_bytes(gzip.compress(capture.read_bytes()))
    har = _write(tmp_path / "b.bin", json.dumps(HAR, indent=2).encode(), compress)
    log = _write(tmp_path / "c.bin", (LOG_LINE + "\n").encode() * 3, compress)
    jlog = _write(tmp_path / "d.bin", b'{"request": "GET / HTTP/1.1", "time": 1}\n', compress)
    flows = _write(tmp_path / "e.bin", (DATA / "mitm_flows.mitm").read_bytes(), compress)
    got = [detect_format(p) for p in (capture, har, log, jlog, flows)]
    assert got == ["shadowdiff", "har", "log", "log", "mitm"]


def test_detect_pcap_when_its_importer_is_there(tmp_path: Path) -> None:
    if importlib.util.find_spec("shadowdiff.capture.pcap.reader") is None:
        pytest.skip("shadowdiff.capture.pcap.reader is not written yet")
    path = tmp_path / "x.bin"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    assert detect_format(path) == "pcap"


@pytest.mark.parametrize("content", [b"", b"   \n", b"hello world\n", b"\x00\x01\x02garbage",
                                     b"[1, 2, 3]\n"])
def test_unknown_content_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mystery.dat"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        detect_format(path)
    assert "mystery.dat" in str(info.value)


def test_missing_file_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="nope.har"):
        read_exchanges(tmp_path / "nope.har")


def test_sniff_shadowdiff_needs_the_header() -> None:
    assert sniff_shadowdiff(b'{"format": "shadowdiff-capture", "version": 1}\n{"id": 1}')
    assert not sniff_shadowdiff(b'{"id": "x", "request": {}}\n')


# -- dispatch -----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_dispatch_reads_every_format(tmp_path: Path, compress: bool) -> None:
    capture = tmp_path / ("c.jsonl.gz" if compress else "c.jsonl")
    write_capture(capture, [make_exchange(i) for i in range(3)])
    har = _write(tmp_path / "x.har", json.dumps(HAR).encode(), compress)
    log = _write(tmp_path / "x.log", (LOG_LINE + "\n").encode() * 2, compress)
    counts = {}
    for path in (capture, har, log):
        stats: dict[str, Any] = {}
        exchanges = list(read_exchanges(path, stats=stats))
        assert stats["exchanges"] == len(exchanges)
        counts[detect_format(path)] = [e.request.target for e in exchanges]
    assert counts == {"shadowdiff": ["/users/1"] * 3, "har": ["/users/1"], "log": ["/users/1"] * 2}


def test_explicit_format_skips_detection(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.log", (LOG_LINE + "\n").encode(), False)
    with pytest.raises(CaptureError):
        list(read_exchanges(path, fmt="har"))
    with pytest.raises(CaptureError, match="unknown format"):
        read_exchanges(path, fmt="nope")
    assert set(FORMATS) == {"shadowdiff", "har", "mitm", "pcap", "maillog", "dnslog", "log"}


def test_capture_that_is_not_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    write_capture(path, [make_exchange(0), make_exchange(1)])
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([*lines[:2], b"{not json", lines[2]]) + b"\n")
    with pytest.raises(CaptureError) as info:
        list(read_exchanges(path))
    assert info.value.position == "line 3" and "bad.jsonl" in str(info.value)


def test_truncated_gzip_capture(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    write_capture(path, [make_exchange(i, target=f"/users/{i}") for i in range(3000)])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CaptureError) as info:
        list(read_exchanges(path))
    assert "cut.jsonl.gz" in str(info.value)
    assert info.value.position is not None and info.value.position.startswith("line ")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.builds(gzip.compress, st.binary(max_size=200)))
def test_fuzz_detect_and_read_only_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    try:
        for ex in read_exchanges(path):
            assert isinstance(ex, Exchange)
    except CaptureError:
        pass


# -- filters ------------------------------------------------------------------------------


def test_each_filter_drops_and_counts() -> None:
    exs = [make_exchange(0), make_exchange(1, method="POST"), make_exchange(2, host="other.test"),
           make_exchange(3, target="/health?users"), make_exchange(4, seen_at=10.0),
           make_exchange(5, host="H.test:8080")]
    f = Filter.build(methods=["get"], hosts=["h.test"], path_regex=r"^/users/", since=500.0,
                     until=2000.0)
    stats: dict[str, Any] = {}
    kept = list(apply_filters(exs, f, stats))
    assert [e.id for e in kept] == ["t-0", "t-5"]
    assert (stats["dropped_method"], stats["dropped_host"], stats["dropped_path"],
            stats["dropped_time"]) == (1, 1, 1, 1)


def test_time_window_is_half_open() -> None:
    exs = [make_exchange(i, seen_at=float(t)) for i, t in enumerate((9, 10, 19, 20))]
    kept = apply_filters(exs, Filter(since=10.0, until=20.0))
    assert [e.seen_at for e in kept] == [10.0, 19.0]


def test_sample_is_deterministic_and_near_the_fraction() -> None:
    exs = [make_exchange(i, target=f"/users/{i}") for i in range(4000)]
    f = Filter(sample=0.25)
    first = [e.id for e in apply_filters(exs, f)]
    again = [e.id for e in apply_filters(list(reversed(exs)), f)]
    assert sorted(first) == sorted(again)
    assert abs(len(first) / len(exs) - 0.25) < 0.03
    assert list(apply_filters(exs, Filter(sample=0.0))) == []
    assert len(list(apply_filters(exs, Filter(sample=1.0)))) == len(exs)
    # identical request lines are all in or all out, so de-duplicated counts stay honest
    twins = [make_exchange(i, target="/same") for i in range(5)]
    assert len({in_sample(e, 0.5) for e in twins}) == 1


def test_dedupe_keeps_first_and_sums_counts() -> None:
    exs = [make_exchange(0), make_exchange(1, body=b"x"), make_exchange(2, count=3),
           make_exchange(3, host="other.test"), make_exchange(4, body=b"x"), make_exchange(5)]
    stats: dict[str, Any] = {}
    kept = list(apply_filters(exs, Filter(dedupe=True), stats))
    assert [(e.id, e.count) for e in kept] == [("t-0", 5), ("t-1", 2), ("t-3", 1)]
    assert stats["merged_duplicates"] == 3
    assert sum(e.count for e in kept) == sum(e.count for e in exs)


def test_filter_validation() -> None:
    with pytest.raises(ValueError, match="sample"):
        Filter(sample=1.5)
    with pytest.raises(ValueError, match="regex"):
        Filter.build(path_regex="(")
    with pytest.raises(ValueError, match="since"):
        Filter(since=5.0, until=1.0)
    assert not Filter().active and Filter(path_regex=re.compile("x")).active


_exchanges = st.lists(st.builds(
    make_exchange, i=st.integers(0, 5), method=st.sampled_from(["GET", "POST", "HEAD"]),
    target=st.sampled_from(["/users/1", "/users/2?x", "/health", "/"]),
    host=st.sampled_from(["h.test", "h.test:81", "x.test"]), body=st.sampled_from([b"", b"a"]),
    seen_at=st.floats(0, 100), count=st.integers(1, 3)), max_size=30)


@given(_exchanges, st.booleans(), st.floats(0, 1))
def test_filters_account_for_every_exchange(exs: list[Exchange], dedupe: bool, frac: float) -> None:
    f = Filter.build(methods=["GET", "HEAD"], hosts=["h.test"], path_regex="^/users",
                     since=10.0, until=90.0, sample=frac, dedupe=dedupe)
    stats: dict[str, Any] = {}
    kept = list(apply_filters(exs, f, stats))
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    assert len(kept) + dropped + stats["merged_duplicates"] == len(exs)
    survivors = list(apply_filters(exs, replace(f, dedupe=False)))
    assert sum(e.count for e in kept) == sum(e.count for e in survivors)
