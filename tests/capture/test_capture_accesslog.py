"""Tests for shadowdiff/capture/accesslog.py: common/combined and JSON logs as a capture."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowdiff.capture import detect_format, read_exchanges
from shadowdiff.capture.accesslog import read_access_log, sniff
from shadowdiff.errors import CaptureError

UA = "Mozilla/5.0 (X11; Linux x86_64)"
COMBINED = (f'203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /users/42?x=1 HTTP/1.1" 200 '
            f'2326 "http://shop.example.test/start" "{UA}"')
COMMON = '127.0.0.1 - - [10/Oct/2000:13:55:37 -0700] "HEAD /health HTTP/1.0" 200 0'
WHEN = datetime(2000, 10, 10, 13, 55, 36, tzinfo=timezone(timedelta(hours=-7))).timestamp()


def write_log(path: Path, lines: list[str], *, compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_combined_and_common_lines(tmp_path: Path) -> None:
    path = write_log(tmp_path / "access.log", [COMBINED, COMMON])
    assert detect_format(path) == "log"
    first, second = read_exchanges(path)
    assert (first.request.method, first.request.target) == ("GET", "/users/42?x=1")
    assert first.request.headers == (("User-Agent", UA), ("Referer", "http://shop.example.test/start"))
    assert first.seen_at == WHEN and first.recorded is None and first.request.body == b""
    assert (first.id, first.source) == ("log-1", "log:access.log#1")
    assert (second.request.method, second.request.target, second.request.headers) == ("HEAD", "/health", ())
    assert second.seen_at == WHEN + 1


def test_other_methods_are_skipped_and_counted(tmp_path: Path) -> None:
    post = COMBINED.replace('"GET /users/42?x=1', '"POST /orders')
    put = COMMON.replace("HEAD /health", "PUT /users/1")
    stats: dict[str, Any] = {}
    exs = list(read_access_log(write_log(tmp_path / "m.log", [post, COMBINED, post, put]), stats))
    assert [e.id for e in exs] == ["log-2"]
    assert stats["skipped"] == 3 and stats["skipped_methods"] == {"POST": 2, "PUT": 1}


def test_malformed_lines_are_counted_never_fatal(tmp_path: Path) -> None:
    lines = [COMBINED, "this is not a log line", "",
             '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "\\x16\\x03\\x01\\x02\\x00" 400 157',
             '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "-" 400 0',
             '127.0.0.1 - - [not a date] "GET / HTTP/1.1" 200 1', '{"msg": "json but no request"}',
             COMMON]
    stats: dict[str, Any] = {}
    exs = list(read_access_log(write_log(tmp_path / "bad.log", lines), stats))
    assert [e.id for e in exs] == ["log-1", f"log-{len(lines)}"]
    assert stats["malformed"] == 5 and stats["lines"] == len(lines) - 1
    assert stats["malformed_example"].startswith("line 2: ")


def test_escapes_and_absolute_form(tmp_path: Path) -> None:
    nginx = '::1 - - [10/Oct/2000:13:55:36 -0700] "GET /a\\x22b/caf\\xC3\\xA9 HTTP/1.1" 200 5 "-" "x"'
    apache = ('::1 - - [10/Oct/2000:13:55:36 -0700] "GET http://proxy.example.test:8080/p?q HTTP/1.1"'
              ' 200 5 "-" "say \\"hi\\""')
    a, b = read_access_log(write_log(tmp_path / "esc.log", [nginx, apache]))
    assert a.request.target == '/a"b/café' and a.request.headers == (("User-Agent", "x"),)
    assert b.request.target == "/p?q"
    assert b.request.headers == (("Host", "proxy.example.test:8080"), ("User-Agent", 'say "hi"'))


def test_json_logs(tmp_path: Path) -> None:
    nginx = {"time_iso8601": "2000-10-10T13:55:36-07:00", "request": "GET /users/1 HTTP/1.1",
             "http_host": "api.example.test", "http_user_agent": UA, "status": "200"}
    split = {"msec": str(WHEN + 0.5), "request_method": "head", "uri": "/items", "args": "page=2",
             "host": "api.example.test"}
    caddy = {"ts": WHEN, "request": {"method": "GET", "host": "c.example.test", "uri": "/c?z=1",
                                     "headers": {"User-Agent": ["caddy-ua"], "Referer": ["r"]}}}
    path = write_log(tmp_path / "json.log", [json.dumps(x) for x in (nginx, split, caddy)])
    assert detect_format(path) == "log"
    a, b, c = read_exchanges(path)
    assert (a.request.method, a.request.target, a.seen_at) == ("GET", "/users/1", WHEN)
    assert a.request.headers == (("Host", "api.example.test"), ("User-Agent", UA))
    assert (b.request.method, b.request.target, b.seen_at) == ("HEAD", "/items?page=2", WHEN + 0.5)
    assert (c.request.target, c.seen_at) == ("/c?z=1", WHEN)
    assert c.request.headers == (("Host", "c.example.test"), ("User-Agent", "caddy-ua"),
                                 ("Referer", "r"))


def test_gzipped_log(tmp_path: Path) -> None:
    path = write_log(tmp_path / "access.log.gz", [COMBINED, COMMON] * 3, compress=True)
    assert detect_format(path) == "log"
    assert len(list(read_exchanges(path))) == 6


def test_truncated_gzip_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_log(tmp_path / "cut.log.gz",
                     [COMBINED.replace("42", str(i)) for i in range(2000)], compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    got = 0
    with pytest.raises(CaptureError) as info:
        for _ in read_access_log(path):
            got += 1
    assert 0 < got < 2000
    assert info.value.source == str(path) and info.value.position is not None
    assert info.value.position.startswith("line ")


def test_sniff_rejects_other_formats() -> None:
    assert sniff(COMBINED.encode() + b"\n") and sniff(b'{"request": "GET / HTTP/1.1"}\n')
    assert not sniff(b'{"format": "shadowdiff-capture", "version": 1}\n')
    assert not sniff(b'{"log": {"entries": []}}')
    assert not sniff(b"hello world\n")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.log"
    path.write_bytes(data)
    stats: dict[str, Any] = {}
    try:
        exs = list(read_access_log(path, stats))
    except CaptureError:
        return
    assert stats["exchanges"] == len(exs)
    assert stats["lines"] == stats["exchanges"] + stats["skipped"] + stats["malformed"]


_pieces = st.sampled_from([COMBINED, COMMON, '"', "[", "]", " ", "\\x", "\\", "GET", "/", "{",
                           "}", '"request":', '"uri":', "-0700", "10/Oct/2000:13:55:36", "\n"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_pieces | st.text(max_size=5), max_size=20))
def test_fuzz_log_like_text_counts_everything(tmp_path: Path, parts: list[str]) -> None:
    path = tmp_path / "fuzz2.log"
    path.write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    stats: dict[str, Any] = {}
    exs = list(read_access_log(path, stats))
    assert stats["lines"] == stats["exchanges"] + stats["skipped"] + stats["malformed"]
    assert all(e.request.method in ("GET", "HEAD") for e in exs)
