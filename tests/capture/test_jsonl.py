"""The capture format: exact round trips, streaming, and errors that name the line."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, strategies as st

from factories import make_exchange, make_response
from shadowdiff.capture.jsonl import CaptureWriter, read_capture, read_header, write_capture
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange, Failure, Request


def test_round_trip_keeps_everything(tmp_path):
    binary = bytes(range(256))
    ex = Exchange(id="x1", request=Request("http", "POST", "/up?a=1", (("Host", "h"), ("X", "1"), ("x", "2")), binary),
                  recorded=make_response(201, b"\xff\xfe not utf-8"), source="test#1", seen_at=1.5,
                  count=4, observed=(("old", make_response()), ("new", Failure("timeout", "slow", 1.0))),
                  marks=("incomplete",))
    for name in ("c.jsonl", "c.jsonl.gz"):
        path = tmp_path / name
        assert write_capture(path, [ex], source="unit", stats={"packets": 3}) == 1
        (back,) = list(read_capture(path))
        assert back == ex
        header = read_header(path)
        assert header["stats"] == {"packets": 3} and header["exchanges"] == 1
    assert gzip.decompress((tmp_path / "c.jsonl.gz").read_bytes()).startswith(b'{"format"')


@given(st.binary(max_size=300), st.text(max_size=50))
def test_any_body_survives_exactly(tmp_path_factory, body, target):
    path = tmp_path_factory.mktemp("p") / "c.jsonl"
    ex = make_exchange(target="/" + target, body=body, id="p")
    write_capture(path, [ex])
    assert next(read_capture(path)) == ex


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "c.jsonl"
    with pytest.raises(RuntimeError):
        with CaptureWriter(path) as w:
            w.write(make_exchange())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("line,message", [
    (b"not json", "line 3: not valid JSON"),
    (b"[1, 2]", "line 3: an exchange line must be a JSON object"),
    (b'{"id": "a"}', "line 3: missing field 'request'"),
    (b'{"id": "a", "request": {"method": "GET", "target": "/", "headers": [[1, 2]]}}', "line 3: invalid exchange"),
    (b'{"id": "a", "request": {"method": "GET", "target": "/", "body": "!!", "body_encoding": "base64"}}', "line 3: invalid exchange"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    write_capture(path, [make_exchange()])
    path.write_bytes(path.read_bytes() + line + b"\n")
    with pytest.raises(CaptureError, match=f"c.jsonl:{message}"):
        list(read_capture(path))


def test_http_version_is_kept_and_the_default_not_written(tmp_path):
    from dataclasses import replace
    path = tmp_path / "v.jsonl"
    plain, h2, old = make_exchange(), make_exchange(), make_exchange()
    h2 = replace(h2, request=replace(h2.request, http_version="HTTP/2"))
    old = replace(old, request=replace(old.request, http_version="HTTP/1.0"))
    write_capture(path, [plain, h2, old])
    lines = path.read_text().splitlines()
    assert '"http_version"' not in lines[1] and '"http_version":"HTTP/2"' in lines[2]
    assert [e.request.http_version for e in read_capture(path)] == ["HTTP/1.1", "HTTP/2", "HTTP/1.0"]
    path.write_text(lines[0] + "\n" + lines[2].replace('"HTTP/2"', '"SPDY/3"') + "\n")
    with pytest.raises(CaptureError, match="http_version"):
        list(read_capture(path))


def test_header_checks(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"format": "shadowdiff-capture", "version": 99}\n')
    with pytest.raises(CaptureError, match="unsupported capture version 99"):
        list(read_capture(path))
    path.write_text('{"hello": 1}\n')
    with pytest.raises(CaptureError, match="line 1: not a shadowdiff capture"):
        list(read_capture(path))
