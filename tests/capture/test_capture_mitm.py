"""Tests for shadowdiff/capture/mitm.py: flows written by a real mitmdump, marks, damage, fuzz."""

from __future__ import annotations

from testpaths import DATA
import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_tool

from shadowdiff.capture import detect_format, read_exchanges
from shadowdiff.capture.mitm import read_mitm, sniff
from shadowdiff.errors import CaptureError

pytest.importorskip("mitmproxy", reason="needs the mitm extra (pip install shadowdiff[mitm])")

from mitmproxy import http, io  # noqa: E402
from mitmproxy.test import tflow, tutils  # noqa: E402

DATA = DATA
FIXTURE = DATA / "mitm_flows.mitm"


def _recipe() -> Any:
    """tests/data/make_mitm_flows.py: what the recording sent, and how to record again."""
    spec = importlib.util.spec_from_file_location("make_mitm_flows", DATA / "make_mitm_flows.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_recording(path: Path) -> None:
    recipe = _recipe()
    stats: dict[str, Any] = {}
    exs = list(read_exchanges(path, stats=stats))
    assert [(e.request.method, e.request.target) for e in exs] == [
        ("GET", "/users/42?expand=1"), ("POST", "/orders"), ("GET", "/items"),
        ("GET", "/broken"), ("GET", "/users/7")]
    assert [e.id for e in exs] == [f"mitm-{i}" for i in range(5)]
    assert exs[0].request.header("Host") == "api.example.test"  # keep_host_header
    assert exs[1].request.body == recipe.POST_BODY
    assert exs[1].request.header("content-type") == "application/json"
    items = exs[2].recorded
    assert items is not None and items.header("content-encoding") == "gzip"
    assert gzip.decompress(items.body) == recipe.GZIP_BODY  # the wire bytes, still encoded
    assert exs[3].recorded is None
    assert "no_response" in exs[3].marks and any(m.startswith("error:") for m in exs[3].marks)
    for ex in (exs[0], exs[1], exs[4]):
        assert ex.recorded is not None and 0 < ex.recorded.elapsed_s < 10 and not ex.marks
        assert (ex.recorded.header("content-type") or "").startswith("application/json")
    assert stats["flows"] == 5 and stats["no_response"] == 1 and stats["errors"] == 1
    assert all(e.seen_at > 0 for e in exs)


def test_fixture_recorded_by_mitmdump() -> None:
    assert detect_format(FIXTURE) == "mitm"
    _check_recording(FIXTURE)


@pytest.mark.integration
def test_fresh_recording_with_real_mitmdump(tmp_path: Path) -> None:
    require_tool("curl")
    out = tmp_path / "fresh.mitm"
    _recipe().record(out)
    _check_recording(out)


def _write_flows(path: Path, flows: list[Any]) -> Path:
    with open(path, "wb") as f:
        writer = io.FlowWriter(f)
        for flow in flows:
            writer.add(flow)
    return path


def test_non_http_flows_are_counted_as_skipped(tmp_path: Path) -> None:
    path = _write_flows(tmp_path / "mixed.mitm",
                        [tflow.ttcpflow(), tflow.tflow(resp=True), tflow.tdnsflow()])
    stats: dict[str, Any] = {}
    exs = list(read_mitm(path, stats=stats))
    assert [e.id for e in exs] == ["mitm-1"]  # ids count every flow, so they stay stable
    assert stats["skipped"] == 2 and stats["exchanges"] == 1


def test_http2_authority_becomes_host(tmp_path: Path) -> None:
    req = tutils.treq(http_version=b"HTTP/2.0", authority=b"h2.example.test",
                      headers=http.Headers(((b"accept", b"*/*"),)), content=b"")
    path = _write_flows(tmp_path / "h2.mitm", [tflow.tflow(req=req, resp=True)])
    [ex] = read_mitm(path)
    assert ex.request.headers == (("Host", "h2.example.test"), ("accept", "*/*"))
    assert ex.request.http_version == "HTTP/2"   # replayed over HTTP/2 where offered


def test_http_version_is_recorded_normalised(tmp_path: Path) -> None:
    flows = [tflow.tflow(req=tutils.treq(http_version=v), resp=True)
             for v in (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/3")]
    path = _write_flows(tmp_path / "v.mitm", flows)
    assert [ex.request.http_version for ex in read_mitm(path)] == [
        "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1"]   # HTTP/3 replays as 1.1: no QUIC sender


def test_gzipped_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "flows.mitm.gz"
    path.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert detect_format(path) == "mitm"
    assert len(list(read_exchanges(path))) == 5


def _flow_offsets(data: bytes) -> list[int]:
    """Start offsets of each top-level tnetstring, from their length prefixes."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        colon = data.index(b":", pos)
        pos = colon + 1 + int(data[pos:colon]) + 1
    return offsets


def test_truncated_flow_file_names_the_byte_offset(tmp_path: Path) -> None:
    data = FIXTURE.read_bytes()
    offsets = _flow_offsets(data)
    path = tmp_path / "cut.mitm"
    path.write_bytes(data[: offsets[3] + 40])
    got = []
    with pytest.raises(CaptureError) as info:
        for ex in read_mitm(path):
            got.append(ex.id)
    assert got == ["mitm-0", "mitm-1", "mitm-2"]
    assert info.value.position == f"byte {offsets[3]}" and "cut.mitm" in str(info.value)


def test_not_a_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "x.mitm"
    path.write_text('{"log": {"entries": []}}')
    with pytest.raises(CaptureError) as info:
        list(read_mitm(path))
    assert info.value.position == "byte 0"


def test_sniff_tells_ipv6_logs_from_flows() -> None:
    assert sniff(FIXTURE.read_bytes()[:64])
    assert not sniff(b'2001:4860:4860::8888 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1"')


def test_missing_mitmproxy_raises_plugin_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['mitmproxy'] = None\n"
            "from shadowdiff.capture.mitm import read_mitm\n"
            "from shadowdiff.errors import PluginError\n"
            f"try:\n    list(read_mitm({str(FIXTURE)!r}))\n"
            "except PluginError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install shadowdiff[mitm]" in out.stdout, out.stderr


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.mitm"
    path.write_bytes(data)
    try:
        list(read_mitm(path))
    except CaptureError:
        pass


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 9452), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_damaged_real_flows_only_capture_error(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(FIXTURE.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path / "damaged.mitm"
    path.write_bytes(bytes(data))
    try:
        for ex in read_mitm(path):
            assert ex.id.startswith("mitm-")
    except CaptureError as exc:
        assert exc.position is not None and exc.position.startswith("byte ")
