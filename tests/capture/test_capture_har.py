"""Tests for shadowdiff/capture/har.py: a real mitmdump HAR, HAR features, bad input, fuzz."""

from __future__ import annotations

from testpaths import DATA
import base64
import gzip
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowdiff.capture import detect_format, read_exchanges
from shadowdiff.capture.har import read_har, sniff
from shadowdiff.errors import CaptureError

DATA = DATA


def _recipe() -> Any:
    """tests/data/make_mitm_flows.py, which recorded the fixture, for what it sent."""
    spec = importlib.util.spec_from_file_location("make_mitm_flows", DATA / "make_mitm_flows.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_har(path: Path, entries: list[Any], *, compress: bool = False) -> Path:
    data = json.dumps({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, indent=1).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def entry(method: str = "GET", url: str = "https://api.example.test/users/1?x=1",
          **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "startedDateTime": "2024-03-01T12:00:00.250Z", "time": 12.5,
        "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": []},
        "response": {"status": 200, "statusText": "OK", "headers": [],
                     "content": {"size": 2, "mimeType": "application/json", "text": "{}"}},
    }
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and key in out else value
    return out


def test_real_mitmdump_har_fixture() -> None:
    recipe = _recipe()
    path = DATA / "mitm_flows.har"
    assert detect_format(path) == "har"
    stats: dict[str, Any] = {}
    exchanges = list(read_exchanges(path, stats=stats))
    assert [(e.request.method, e.request.target) for e in exchanges] == [
        ("GET", "/users/42?expand=1"), ("POST", "/orders"), ("GET", "/items"),
        ("GET", "/broken"), ("GET", "/users/7")]
    assert [e.id for e in exchanges] == [f"har-{i}" for i in range(5)]
    assert exchanges[0].request.header("host") == "api.example.test"
    assert exchanges[1].request.body == recipe.POST_BODY
    items = exchanges[2].recorded
    assert items is not None and items.body == recipe.GZIP_BODY  # HAR stores it decoded
    assert items.header("content-encoding") is None and "content_decoded" in exchanges[2].marks
    assert exchanges[3].recorded is None and "no_response" in exchanges[3].marks
    assert any(m.startswith("error:") for m in exchanges[3].marks)
    assert stats["entries"] == 5 and stats["no_response"] == 1
    assert all(e.seen_at > 0 for e in exchanges)


def test_fields_map_to_the_exchange(tmp_path: Path) -> None:
    body = bytes(range(256))
    e = entry("post", "https://shop.example.test:8443/a/b?q=1#frag",
              request={"headers": [{"name": "Accept", "value": "*/*"}],
                       "postData": {"mimeType": "application/octet-stream",
                                    "text": base64.b64encode(body).decode(), "encoding": "base64"}},
              response={"status": 201, "headers": [{"name": "X-A", "value": "1"},
                                                    {"name": "X-A", "value": "2"}],
                        "content": {"size": 256, "text": base64.b64encode(body).decode(),
                                    "encoding": "base64"}})
    [ex] = read_har(write_har(tmp_path / "a.har", [e]))
    assert ex.request.method == "POST"
    assert ex.request.target == "/a/b?q=1"
    assert ex.request.headers == (("Host", "shop.example.test:8443"), ("Accept", "*/*"))
    assert ex.request.body == body
    assert ex.recorded is not None
    assert ex.recorded.status == 201 and ex.recorded.body == body
    assert ex.recorded.headers == (("X-A", "1"), ("X-A", "2"))
    assert ex.recorded.elapsed_s == pytest.approx(e["time"] / 1000)
    assert ex.seen_at == datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc).timestamp()
    assert ex.source == "har:a.har#0"


def test_http2_pseudo_headers_dropped_authority_becomes_host(tmp_path: Path) -> None:
    e = entry(request={"headers": [{"name": ":method", "value": "GET"},
                                   {"name": ":authority", "value": "h2.example.test"},
                                   {"name": ":path", "value": "/users/1?x=1"},
                                   {"name": "accept", "value": "*/*"}]},
              response={"headers": [{"name": ":status", "value": "200"},
                                    {"name": "content-type", "value": "application/json"}]})
    [ex] = read_har(write_har(tmp_path / "h2.har", [e]))
    assert ex.request.headers == (("Host", "h2.example.test"), ("accept", "*/*"))
    assert ex.recorded is not None
    assert ex.recorded.headers == (("content-type", "application/json"),)


@pytest.mark.parametrize("version, recorded", [
    ("HTTP/2", "HTTP/2"), ("h2", "HTTP/2"), ("HTTP/2.0", "HTTP/2"), ("http/2.0", "HTTP/2"),
    ("HTTP/1.1", "HTTP/1.1"), ("HTTP/1.0", "HTTP/1.0"), ("", "HTTP/1.1"), ("h3", "HTTP/1.1"),
    (None, "HTTP/1.1"), (2, "HTTP/1.1")])
def test_http_version_is_recorded_normalised(tmp_path: Path, version: Any, recorded: str) -> None:
    request = {"method": "GET", "url": "https://api.example.test/", "headers": []}
    if version is not None:
        request["httpVersion"] = version
    [ex] = read_har(write_har(tmp_path / "v.har", [entry(request=request)]))
    assert ex.request.http_version == recorded


def test_existing_host_header_is_kept(tmp_path: Path) -> None:
    e = entry(url="http://10.0.0.1/x", request={"headers": [{"name": "Host", "value": "orig"}]})
    [ex] = read_har(write_har(tmp_path / "h.har", [e]))
    assert ex.request.headers == (("Host", "orig"),)


def test_missing_bodies_are_marked_not_guessed(tmp_path: Path) -> None:
    no_text = entry(response={"content": {"size": 512, "mimeType": "image/png"}})
    empty = entry(response={"status": 204, "content": {"size": 0}})
    lost_post = entry("POST", request={"bodySize": 10})
    form = entry("POST", request={"postData": {"mimeType": "application/x-www-form-urlencoded",
                                               "params": [{"name": "a b", "value": "1&2"}]}})
    exs = list(read_har(write_har(tmp_path / "b.har", [no_text, empty, lost_post, form])))
    assert exs[0].recorded is not None and exs[0].recorded.body == b""
    assert "body_missing" in exs[0].marks
    assert "body_missing" not in exs[1].marks
    assert "request_body_missing" in exs[2].marks
    assert exs[3].request.body == b"a+b=1%262" and not exs[3].marks


def test_status_zero_is_no_response(tmp_path: Path) -> None:
    e = entry(response={"status": 0, "content": {}, "_error": "net::ERR_CONNECTION_REFUSED"})
    stats: dict[str, Any] = {}
    [ex] = read_har(write_har(tmp_path / "z.har", [e]), stats=stats)
    assert ex.recorded is None
    assert ex.marks == ("no_response", "error:net::ERR_CONNECTION_REFUSED")
    assert stats["no_response"] == 1


def test_gzipped_har(tmp_path: Path) -> None:
    path = write_har(tmp_path / "g.har.gz", [entry(), entry(url="http://x.test/two")], compress=True)
    assert detect_format(path) == "har"
    assert [e.request.target for e in read_exchanges(path)] == ["/users/1?x=1", "/two"]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e["request"].pop("method"), "log.entries[1].request.method"),
    (lambda e: e["request"].pop("url"), "log.entries[1].request.url"),
    (lambda e: e.pop("request"), "log.entries[1].request"),
    (lambda e: e["response"].pop("status"), "log.entries[1].response.status"),
    (lambda e: e["response"].update(status="200"), "log.entries[1].response.status"),
    (lambda e: e["request"]["headers"].append({"value": "x"}),
     "log.entries[1].request.headers[0].name"),
    (lambda e: e.update(startedDateTime="yesterday"), "log.entries[1].startedDateTime"),
])
def test_missing_or_bad_fields_name_file_entry_and_field(tmp_path: Path, mutate: Any,
                                                         field: str) -> None:
    bad = entry()
    mutate(bad)
    path = write_har(tmp_path / "broken.har", [entry(), bad])
    with pytest.raises(CaptureError) as info:
        list(read_har(path))
    assert info.value.source == str(path) and info.value.position == "entry 1"
    assert field in str(info.value) and "broken.har" in str(info.value)


def test_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.har"
    path.write_text('{"log": {"entries": [\n  {"request": ,}\n]}}')
    with pytest.raises(CaptureError) as info:
        list(read_har(path))
    assert info.value.position == "line 2"


def test_not_a_har(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"entries": []}')
    with pytest.raises(CaptureError, match="log"):
        list(read_har(path))
    assert not sniff(path.read_bytes())
    assert not sniff(b'{"log": "127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] ...", "stream": "stdout"}')


def test_truncated_gzip_har(tmp_path: Path) -> None:
    path = write_har(tmp_path / "t.har.gz", [entry() for _ in range(50)], compress=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CaptureError) as info:
        list(read_exchanges(path, fmt="har"))
    assert "t.har.gz" in str(info.value)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.har"
    path.write_bytes(data)
    try:
        list(read_har(path))
    except CaptureError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["request", "response", "method", "url", "headers", "name", "value",
                         "status", "content", "text", "encoding", "postData", "params",
                         "startedDateTime", "time", "size", "bodySize", "_error"]), kids, max_size=5),
    max_leaves=20)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_json, max_size=3))
def test_fuzz_entry_shapes_only_capture_error(tmp_path: Path, entries: list[Any]) -> None:
    path = write_har(tmp_path / "shapes.har", entries)
    try:
        for ex in read_har(path):
            assert ex.request.target.startswith("/")
    except CaptureError as exc:
        assert exc.position is None or exc.position.startswith("entry ")


@pytest.mark.parametrize(("text", "field", "line"), [
    ('\n\n{"log": {"version": "1.2",\n "ntries": []}}', "log.entries", 3),
    ('\n{"lg": {"entries": []}}', "field log", 2),
])
def test_a_har_missing_its_structure_names_the_line(tmp_path: Path, text: str, field: str,
                                                    line: int) -> None:
    # Found by test_capture_hostile's mutations: "entries" renamed gave an error with no
    # position. The line is where the object lacking the field begins.
    path = tmp_path / "broken.har"
    path.write_text(text)
    with pytest.raises(CaptureError) as err:
        list(read_har(path))
    assert str(err.value).startswith(str(path)) and field in str(err.value)
    assert f"line {line}" in str(err.value)
