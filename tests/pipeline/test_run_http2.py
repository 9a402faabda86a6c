"""`shadowdiff run` on a HAR captured over HTTP/2, to two real nginx serving `shop.test` the
same files: old offers h2, new does not. The exchanges captured as HTTP/2 go to old over
HTTP/2 and to new over HTTP/1.1 (both access logs say so), the answers compare equal
whatever the version, and summary.json and both reports say per target what was spoken."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runs import run
from tls_servers import H2Servers, h2_and_http1_nginx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Servers]:
    """old: the nginx offering h2 (`h2`); new: the one that does not (`plain`)."""
    with h2_and_http1_nginx(tmp_path_factory.mktemp("h2run")) as servers:
        page = json.dumps({"items": list(range(50)), "name": "shop"}).encode()
        for which in ("h2", "plain"):   # the same bytes and mtime: the same ETag, Last-Modified
            path = servers.files(which) / "page.json"
            path.write_bytes(page)
            os.utime(path, (1_700_000_000, 1_700_000_000))
        yield servers


def _har(path: Path, port: int, versions: list[str]) -> Path:
    entries = [{"startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1,
                "request": {"method": "GET", "url": f"https://shop.test:{port}/files/page.json?i={i}",
                            "httpVersion": version, "headers": [], "cookies": [],
                            "queryString": [], "headersSize": -1, "bodySize": 0},
                "response": {"status": 200, "statusText": "", "httpVersion": version,
                             "headers": [], "cookies": [], "content": {"size": 0, "mimeType": ""},
                             "redirectURL": "", "headersSize": -1, "bodySize": 0},
                "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
               for i, version in enumerate(versions)]
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                                        "entries": entries}}))
    return path


def _targets(pair: H2Servers) -> list[str]:
    return ["--old", f"https://shop.test:{pair.h2}", "--old-address", f"127.0.0.1:{pair.h2}",
            "--new", f"https://shop.test:{pair.h2}", "--new-address", f"127.0.0.1:{pair.plain}",
            "--ca-bundle", str(pair.ca.pem)]


def test_http2_captures_replay_over_http2_where_offered_and_compare_equal(pair: H2Servers,
                                                                           tmp_path: Path) -> None:
    before = {w: len(pair.log(w)) for w in ("h2", "plain")}
    capture = _har(tmp_path / "c.har", pair.h2, ["HTTP/2"] * 3 + ["h2", "http/2.0", "HTTP/1.1"])
    result, summary = run(capture, tmp_path / "out", *_targets(pair))
    # h2 from old, HTTP/1.1 from new, the same content: no divergence at all
    assert summary["totals"]["identical"] == 6 and summary["signatures"] == [], result.output
    old, new = summary["tls"]["targets"]["old"], summary["tls"]["targets"]["new"]
    assert old["replayed_over"] == "HTTP/2 and HTTP/1.1" and old["http2"] == "used"
    assert old["replayed_over_counts"] == {"HTTP/2": 5, "HTTP/1.1": 1}
    assert new["replayed_over"] == "HTTP/1.1" and new["http2"] == "not_offered"
    assert new["replayed_over_counts"] == {"HTTP/2": 0, "HTTP/1.1": 6}
    old_log, new_log = pair.log("h2")[before["h2"]:], pair.log("plain")[before["plain"]:]
    assert sorted(line.split()[0] for line in old_log) == ["HTTP/1.1"] + ["HTTP/2.0"] * 5
    assert [line.split()[0] for line in new_log] == ["HTTP/1.1"] * 6
    md = (tmp_path / "out" / "report.md").read_text()
    assert "`HTTP/2 (5), HTTP/1.1 (1)`" in md
    assert "`HTTP/1.1 (6); the target does not offer h2 by ALPN`" in md
    html = (tmp_path / "out" / "report.html").read_text()
    assert "HTTP/2 (5), HTTP/1.1 (1)" in html


def test_http2_off_replays_everything_over_http11(pair: H2Servers, tmp_path: Path) -> None:
    before = len(pair.log("h2"))
    capture = _har(tmp_path / "c.har", pair.h2, ["HTTP/2"] * 4)
    _, summary = run(capture, tmp_path / "out", *_targets(pair), "--http2", "off")
    old = summary["tls"]["targets"]["old"]
    assert summary["totals"]["identical"] == 4
    assert old["replayed_over"] == "HTTP/1.1" and old["http2"] == "off"
    assert [line.split()[0] for line in pair.log("h2")[before:]] == ["HTTP/1.1"] * 4
    assert "HTTP/2 off (--http2 off)" in (tmp_path / "out" / "report.md").read_text()


def test_without_http2_captures_nothing_goes_over_http2(pair: H2Servers, tmp_path: Path) -> None:
    capture = _har(tmp_path / "c.har", pair.h2, ["HTTP/1.1"] * 2)
    _, summary = run(capture, tmp_path / "out", *_targets(pair))
    old = summary["tls"]["targets"]["old"]
    assert old["replayed_over"] == "HTTP/1.1" and old["http2"] == "not_captured"
    assert old["replayed_over_counts"] == {"HTTP/2": 0, "HTTP/1.1": 2}


def test_partitioned_runs_count_the_same(pair: H2Servers, tmp_path: Path) -> None:
    capture = _har(tmp_path / "c.har", pair.h2, ["HTTP/2", "HTTP/1.1"] * 3)
    _, summary = run(capture, tmp_path / "out", *_targets(pair), "--workers", "2")
    old = summary["tls"]["targets"]["old"]
    assert old["replayed_over_counts"] == {"HTTP/2": 3, "HTTP/1.1": 3}
    assert summary["totals"]["identical"] == 6
