"""Tests for shadowdiff.rank.usage: access logs -> production requests per endpoint.

Expected counts come from what a test wrote (each request's `http_endpoint`, computed one
line at a time) or, for the committed sample, from a plain per-line Python reading; the
fast Arrow path must agree with both.
"""

from __future__ import annotations

from testpaths import DATA
import gzip
import random
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from conftest import require_tool
from shadowdiff.protocols.http.endpoints import http_endpoint
from shadowdiff.errors import CaptureError
from shadowdiff.rank.usage import (COLUMNS, parse_log_format, read_usage, render_usage_table)
from shadowdiff.rank.usage.formats import COMBINED as COMBINED_FORMAT
from shadowdiff.rank.usage.sources import expand_paths, split_lines
from shadowdiff.rank.usage.tally import reduce_targets, status_class

DATA = DATA
SAMPLE = DATA / "access-combined.log"
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
Req = tuple[str, str, int, datetime]  # method, target, status, time

# -- making logs ---------------------------------------------------------------------------

_TEMPLATES = ["/users/{n}", "/users/{n}/orders", "/api/v1/items/{n}?page={p}", "/",
              "/orders/{uuid}", "/search?q=a+b&n={n}", "/static/app.js", "/u/{n}/{n}/{n}"]


def make_requests(n: int, seed: int = 1) -> list[Req]:
    """`n` requests with a skewed endpoint mix, ids in paths, queries, mixed statuses."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tpl = rng.choices(_TEMPLATES, weights=[30, 10, 10, 8, 5, 5, 5, 2])[0]
        target = tpl.format(n=rng.randint(0, 5000), p=rng.randint(1, 9),
                            uuid=f"{rng.getrandbits(32):08x}-0000-4000-8000-{i:012x}")
        method = rng.choices(["GET", "POST", "HEAD", "DELETE"], weights=[80, 10, 5, 5])[0]
        status = rng.choice([200, 200, 200, 201, 301, 304, 404, 499, 500, 503])
        out.append((method, target, status, T0 + timedelta(seconds=i * 7)))
    return out


def expected(reqs: list[Req]) -> Counter[str]:
    return Counter(http_endpoint(m, t) for m, t, _, _ in reqs)


def combined(req: Req, *, common: bool = False, ip: str = "10.1.2.3") -> str:
    m, t, s, when = req
    line = (f'{ip} - - [{when.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{m} {t} HTTP/1.1" {s} '
            f"{len(t) * 10}")
    return line if common else line + ' "https://ref.example/?a=1" "Mozilla/5.0 (X11; Linux)"'


def write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def counts_of(table: object) -> Counter[str]:
    return Counter(table.requests_by_endpoint())  # type: ignore[attr-defined]


def assert_table_consistent(table: object, reqs: list[Req]) -> None:
    """Counts, total, shares and status mix all agree with the requests written."""
    frame = table.counts  # type: ignore[attr-defined]
    assert list(frame.columns) == list(COLUMNS)
    assert counts_of(table) == expected(reqs)
    assert table.total == len(reqs)  # type: ignore[attr-defined]
    assert frame["share"].sum() == pytest.approx(1.0)
    assert frame["requests"].is_monotonic_decreasing
    mix: Counter[tuple[str, str]] = Counter()
    for m, t, s, _ in reqs:
        mix[(http_endpoint(m, t), status_class(str(s).encode()))] += 1
    for row in frame.to_dict("records"):
        for klass in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"):
            assert row[klass] == mix[(row["endpoint"], klass)]
    assert table.by_day == expected_days(reqs)  # type: ignore[attr-defined]


def utc_day(when: datetime) -> float:
    """The UTC day start of a time, in epoch seconds: the reader's day bucket key."""
    return float(int(when.timestamp()) // 86_400 * 86_400)


def expected_days(reqs: list[Req]) -> Counter[tuple[str, float]]:
    return Counter((http_endpoint(m, t), utc_day(when)) for m, t, _, when in reqs)


# -- combined, common, the committed sample ------------------------------------------------


@pytest.mark.parametrize("common", [False, True], ids=["combined", "common"])
@pytest.mark.parametrize("fmt", ["auto", "combined", "common"])
def test_combined_and_common_counts_match_what_was_written(tmp_path: Path, fmt: str,
                                                           common: bool) -> None:
    reqs = make_requests(3000)
    path = write(tmp_path / "access.log", [combined(r, common=common) for r in reqs])
    table = read_usage([str(path)], fmt=fmt)
    assert_table_consistent(table, reqs)
    assert table.malformed == 0 and table.malformed_example is None
    assert table.first_seen == min(r[3] for r in reqs).timestamp()
    assert table.last_seen == max(r[3] for r in reqs).timestamp()


def test_small_blocks_give_the_same_counts_and_exact_line_numbers(tmp_path: Path) -> None:
    reqs = make_requests(2000, seed=5)
    lines = [combined(r) for r in reqs]
    bad_at = 1234  # 1-based line number of the only malformed line
    lines.insert(bad_at - 1, "this is not a log line")
    path = write(tmp_path / "access.log", lines)
    table = read_usage([str(path)], block_size=4096)  # ~20 lines per block, many workers' worth
    assert counts_of(table) == expected(reqs)
    assert table.malformed == 1
    assert table.malformed_example == f"{path}:line {bad_at}: 'this is not a log line'"


def _reference_read(path: Path) -> tuple[Counter[str], int, int]:
    """A plain per-line reading of a combined log: (endpoint counts, no-request, malformed)."""
    line_re = re.compile(r'\S+ \S+ \S+ \[[^\]]+\] "((?:[^"\\]|\\.)*)" (\d{3}) ')
    counts: Counter[str] = Counter()
    no_request = malformed = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = line_re.match(line)
        if m is None:
            malformed += 1
            continue
        parts = m.group(1).split()
        if len(parts) < 2:
            no_request += 1
            continue
        counts[http_endpoint(parts[0], parts[1])] += 1
    return counts, no_request, malformed


def test_committed_sample_agrees_with_a_plain_line_by_line_reading() -> None:
    counts, no_request, malformed = _reference_read(SAMPLE)
    table = read_usage([str(SAMPLE)])
    assert counts_of(table) == counts
    assert (table.no_request, table.malformed) == (no_request, malformed)
    assert no_request and malformed  # the sample exercises both
    assert table.lines == len(SAMPLE.read_text().splitlines())
    assert table.malformed_example is not None and str(SAMPLE) in table.malformed_example
    assert table.formats == ("combined",)


# -- JSON lines ----------------------------------------------------------------------------


def nginx_json(req: Req, *, status_as_text: bool = False) -> str:
    m, t, s, when = req
    status = f'"{s}"' if status_as_text else str(s)
    return (f'{{"time":"{when.isoformat()}","remote_addr":"10.0.0.1","method":"{m}",'
            f'"uri":"{t}","status":{status},"ua":"curl/8"}}')


@pytest.mark.parametrize("junk", [False, True], ids=["clean", "with-junk"])
def test_json_lines_with_default_field_names(tmp_path: Path, junk: bool) -> None:
    # clean blocks go through Arrow's JSON reader, a block with junk through orjson
    reqs = make_requests(1500, seed=2)
    lines = [nginx_json(r, status_as_text=junk and i % 2 == 0) for i, r in enumerate(reqs)]
    if junk:
        lines[10:10] = ["not json at all", "[1, 2]", '{"method": "GET"}']
    table = read_usage([str(write(tmp_path / "access.json", lines))], block_size=32 << 10)
    assert table.formats == ("json",)
    assert_table_consistent(table, reqs)
    assert table.malformed == (3 if junk else 0)
    if junk:
        assert str(table.malformed_example).endswith("line 11: 'not json at all'")
    assert (table.first_seen, table.last_seen) == (reqs[0][3].timestamp(),
                                                   reqs[-1][3].timestamp())


def test_json_lines_with_a_field_mapping_and_nested_keys(tmp_path: Path) -> None:
    reqs = make_requests(500, seed=3)
    lines = [f'{{"ts": {r[3].timestamp()}, "http": {{"verb": "{r[0]}", "path": "{r[1]}"}}, '
             f'"code": {r[2]}}}' for r in reqs]
    path = write(tmp_path / "caddy.log", lines)
    table = read_usage([str(path)], fmt="json",
                       json_fields={"method": "http.verb", "target": "http.path",
                                    "status": "code", "time": "ts"})
    assert_table_consistent(table, reqs)
    assert table.last_seen == pytest.approx(reqs[-1][3].timestamp())


def test_json_request_line_field_and_missing_request(tmp_path: Path) -> None:
    reqs = make_requests(200, seed=4)
    lines = [f'{{"request": "{m} {t} HTTP/1.1", "status": {s}}}' for m, t, s, _ in reqs]
    lines.append('{"request": "-", "status": 400}')
    table = read_usage([str(write(tmp_path / "a.log", lines))], fmt="json")
    assert counts_of(table) == expected(reqs)
    assert table.no_request == 1


# -- per-day buckets -----------------------------------------------------------------------

_ZONES = [timezone.utc, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]


def across_midnights(n: int, seed: int) -> list[Req]:
    """Requests every 7 minutes (so over several UTC days), logged in mixed time zones:
    the local date often differs from the UTC day they must be counted in."""
    reqs = make_requests(n, seed=seed)
    return [(m, t, s, (T0 + timedelta(minutes=7 * i)).astimezone(_ZONES[i % 3]))
            for i, (m, t, s, _) in enumerate(reqs)]


def test_day_buckets_follow_utc_days_across_midnight_and_zones(tmp_path: Path) -> None:
    reqs = across_midnights(1200, seed=20)  # 5.8 days
    lines = [combined(r) for r in reqs]
    lines[5:5] = ["garbage between requests"]  # small blocks and a rejected line
    table = read_usage([str(write(tmp_path / "access.log", lines))], block_size=4096)
    assert_table_consistent(table, reqs)
    assert len({day for _, day in table.by_day}) == 7 and table.undated == 0
    late = datetime(2024, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-7)))  # 06:30Z on the 2nd
    one = read_usage([str(write(tmp_path / "one.log", [combined(("GET", "/a", 200, late))]))])
    assert one.by_day == {("GET /a", utc_day(late)): 1}
    assert utc_day(late) == datetime(2024, 3, 2, tzinfo=timezone.utc).timestamp()


def test_lines_without_a_parsable_time_count_in_totals_but_in_no_day(tmp_path: Path) -> None:
    good = ("GET", "/users/1", 200, T0)
    lines = [combined(good), combined(good).replace("01/Mar/2024:12:00:00", "99/Foo/2024:25:61:00")]
    table = read_usage([str(write(tmp_path / "odd.log", lines))])
    assert (table.total, table.undated) == (2, 1)
    assert table.by_day == {("GET /users/{id}", utc_day(T0)): 1}
    # a format without any time: every request counted, none in a day
    fmt = '$remote_addr "$request" $status'
    reqs = make_requests(50, seed=21)
    path = write(tmp_path / "notime.log", [render_nginx(fmt, r) for r in reqs])
    untimed = read_usage([str(path)], fmt="nginx:" + fmt)
    assert counts_of(untimed) == expected(reqs)
    assert untimed.by_day == {} and untimed.undated == len(reqs) == untimed.total


@pytest.mark.parametrize("junk", [False, True], ids=["arrow", "orjson"])
def test_json_day_buckets_on_both_paths(tmp_path: Path, junk: bool) -> None:
    reqs = across_midnights(900, seed=22)
    lines = [nginx_json(r) for r in reqs]
    lines.append('{"time":"yesterday","method":"GET","uri":"/late","status":200}')
    if junk:
        lines[3:3] = ["not json"]  # that block goes line by line through orjson
    table = read_usage([str(write(tmp_path / "a.json", lines))], block_size=16 << 10)
    assert table.undated == 1 and counts_of(table)["GET /late"] == 1
    assert table.by_day == expected_days(reqs)
    epochs = [r[3].timestamp() for r in reqs]
    assert (table.first_seen, table.last_seen) == (min(epochs), max(epochs))


# -- files: gzip, rotation, globs ----------------------------------------------------------


def test_gzip_rotated_files_and_globs(tmp_path: Path) -> None:
    reqs = make_requests(3000, seed=6)
    parts = [reqs[:1000], reqs[1000:2000], reqs[2000:]]
    write(tmp_path / "access.log.2.gz", [combined(r) for r in parts[0]], gz=True)
    write(tmp_path / "access.log.1", [combined(r) for r in parts[1]])
    write(tmp_path / "access.log", [combined(r) for r in parts[2]])
    (tmp_path / "error.log").write_text("not an access log\n")
    table = read_usage([str(tmp_path / "access.log*"), str(tmp_path / "access.log")])
    assert [Path(f).name for f in table.files] == ["access.log.2.gz", "access.log.1",
                                                   "access.log"]
    assert_table_consistent(table, reqs)


def test_concatenated_gzip_members_are_all_read(tmp_path: Path) -> None:
    reqs = make_requests(600, seed=7)
    path = tmp_path / "cat.log.gz"
    path.write_bytes(gzip.compress(("\n".join(combined(r) for r in reqs[:300]) + "\n").encode())
                     + gzip.compress(("\n".join(combined(r) for r in reqs[300:]) + "\n").encode()))
    assert counts_of(read_usage([str(path)])) == expected(reqs)


def test_half_written_gzip_counts_what_came_before_and_says_so(tmp_path: Path) -> None:
    reqs = make_requests(20000, seed=8)
    whole = gzip.compress(("\n".join(combined(r) for r in reqs) + "\n").encode())
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(whole[: len(whole) // 2])
    table = read_usage([str(path)], block_size=64 << 10)
    assert 0 < table.total < len(reqs)
    assert table.malformed <= 1  # at most the line cut in half
    assert len(table.problems) == 1
    assert str(path) in table.problems[0] and "ends early" in table.problems[0]
    # what was read matches the first lines exactly
    assert counts_of(table) - expected(reqs[: table.total]) == Counter()


def test_empty_and_compressed_files(tmp_path: Path) -> None:
    import bz2
    import lzma

    reqs = make_requests(900, seed=16)
    data = ("\n".join(nginx_json(r) for r in reqs[:300]) + "\n").encode()
    (tmp_path / "a.json.bz2").write_bytes(bz2.compress(data))
    (tmp_path / "b.log.xz").write_bytes(lzma.compress(("\n".join(combined(r) for r in reqs[300:])
                                                       + "\n").encode()))
    (tmp_path / "c.log").write_bytes(b"")  # freshly rotated
    table = read_usage([str(tmp_path / "*")])
    assert table.formats == ("json", "combined", "combined")
    assert_table_consistent(table, reqs)
    empty = read_usage([str(tmp_path / "c.log")])
    assert (empty.total, empty.lines, list(empty.counts.columns)) == (0, 0, list(COLUMNS))
    Console(record=True).print(render_usage_table(empty))


def test_missing_files_and_empty_globs_name_the_path(tmp_path: Path) -> None:
    for given_path in (tmp_path / "nope.log", tmp_path / "*.nothing"):
        with pytest.raises(CaptureError) as err:
            read_usage([str(given_path)])
        assert str(given_path) in str(err.value)
    with pytest.raises(CaptureError, match="directory"):
        read_usage([str(tmp_path)])


def test_rotation_order_puts_oldest_first(tmp_path: Path) -> None:
    names = ["access.log", "access.log.1", "access.log.10.gz", "access.log.2.gz",
             "site.log-20240102", "site.log-20240101.gz"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    got = [Path(p).name for p in expand_paths([str(tmp_path / "*")])]
    assert got == ["access.log.10.gz", "access.log.2.gz", "access.log.1", "access.log",
                   "site.log-20240101.gz", "site.log-20240102"]


# -- custom formats: nginx log_format and Apache LogFormat round trips ---------------------

NGINX_FORMATS = [
    # a typical "main" with timing fields after the request
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time"',
    # method and URI as separate fields, ISO time, pipes as separators
    '$time_iso8601|$host|$request_method|$request_uri|$status|$request_time',
    # path and args apart, epoch milliseconds, the status last
    '$msec $remote_addr "$request_method $uri?$args" $status',
]


def render_nginx(fmt: str, req: Req) -> str:
    m, t, s, when = req
    path, _, args = t.partition("?")
    values = {"remote_addr": "192.0.2.7", "remote_user": "-", "host": "shop.example",
              "time_local": when.strftime("%d/%b/%Y:%H:%M:%S %z"),
              "time_iso8601": when.isoformat(), "msec": f"{when.timestamp():.3f}",
              "request": f"{m} {t} HTTP/1.1", "request_method": m, "request_uri": t,
              "uri": path, "args": args, "status": str(s), "body_bytes_sent": "512",
              "http_referer": "-", "http_user_agent": "Mozilla/5.0 (X11)",
              "request_time": "0.004", "upstream_connect_time": "0.001"}
    return re.sub(r"\$(\w+)", lambda mm: values[mm.group(1)], fmt)


@pytest.mark.parametrize("fmt", NGINX_FORMATS, ids=["main", "pipes", "uri-args"])
def test_nginx_log_format_round_trip(tmp_path: Path, fmt: str) -> None:
    reqs = make_requests(800, seed=9)
    path = write(tmp_path / "custom.log", [render_nginx(fmt, r) for r in reqs])
    table = read_usage([str(path)], fmt="nginx:" + fmt)
    assert_table_consistent(table, reqs)
    assert table.malformed == 0
    assert table.first_seen == pytest.approx(reqs[0][3].timestamp())
    # the same format pasted as a whole directive, split over quoted parts
    half = len(fmt) // 2
    directive = f"log_format main escape=default '{fmt[:half]}'\n    '{fmt[half:]}';"
    assert counts_of(read_usage([str(path)], log_format=directive)) == expected(reqs)


def test_nginx_custom_endpoint_sees_the_query_from_separate_args(tmp_path: Path) -> None:
    fmt = NGINX_FORMATS[2]
    reqs = make_requests(300, seed=10)
    path = write(tmp_path / "custom.log", [render_nginx(fmt, r) for r in reqs])
    table = read_usage([str(path)], fmt="nginx:" + fmt, endpoint=lambda m, t: f"{m} {t}")
    assert counts_of(table) == Counter(f"{m} {t}" for m, t, _, _ in reqs)


APACHE_FORMATS = [
    r'%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D',
    '%v:%p %h %{sec}t "%m %U%q %H" %>s %O',
]


def render_apache(fmt: str, req: Req) -> str:
    m, t, s, when = req
    path, _, args = t.partition("?")
    values = {"h": "198.51.100.4", "l": "-", "u": "alice",
              "t": when.strftime("[%d/%b/%Y:%H:%M:%S %z]"), "{sec}t": str(int(when.timestamp())),
              "r": f"{m} {t} HTTP/1.1", "m": m, "U": path, "q": f"?{args}" if args else "",
              "H": "HTTP/1.1", ">s": str(s), "b": "-", "O": "900", "D": "1234",
              "{Referer}i": "-", "{User-agent}i": "curl/8.5", "v": "shop", "p": "443"}
    text = fmt.replace('\\"', '"')
    return re.sub(r"%(\{[^}]*\}[a-z]|>s|[a-zA-Z])", lambda mm: values[mm.group(1)], text)


@pytest.mark.parametrize("fmt", APACHE_FORMATS, ids=["combined-D", "vhost-sec"])
def test_apache_log_format_round_trip(tmp_path: Path, fmt: str) -> None:
    reqs = make_requests(800, seed=11)
    path = write(tmp_path / "apache.log", [render_apache(fmt, r) for r in reqs])
    table = read_usage([str(path)], fmt="apache:" + fmt)
    assert_table_consistent(table, reqs)
    assert table.first_seen == pytest.approx(reqs[0][3].timestamp())
    escaped = re.sub(r'(?<!\\)"', r'\\"', fmt)  # as written inside a config's quotes
    directive = f'LogFormat "{escaped}" mine'
    assert counts_of(read_usage([str(path)], log_format=directive)) == expected(reqs)


_TARGET = st.from_regex(r"/[A-Za-z0-9._~%/-]{0,40}(\?[A-Za-z0-9=&%]{0,20})?", fullmatch=True)


@given(method=st.sampled_from(["GET", "POST", "PATCH", "OPTIONS"]), target=_TARGET,
       status=st.integers(100, 599), fmt=st.sampled_from(NGINX_FORMATS))
def test_parse_line_round_trips_any_target(method: str, target: str, status: int,
                                           fmt: str) -> None:
    line = render_nginx(fmt, (method, target, status, T0))
    got = parse_log_format(fmt).parse_line(line)
    assert got is not None
    assert (got["method"], got["target"], got["status"]) == (
        method, target.split("?")[0], str(status))


def test_formats_without_a_request_are_refused() -> None:
    with pytest.raises(ValueError, match="no request line"):
        parse_log_format("$remote_addr $status $body_bytes_sent")
    with pytest.raises(ValueError, match="unknown log format"):
        read_usage([str(SAMPLE)], fmt="clf-ish")
    with pytest.raises(ValueError, match="not both"):
        read_usage([str(SAMPLE)], fmt="json", log_format=COMBINED_FORMAT)


# -- bad input -----------------------------------------------------------------------------


def test_wrong_format_says_what_the_file_looks_like(tmp_path: Path) -> None:
    reqs = make_requests(50)
    json_log = write(tmp_path / "a.json", [nginx_json(r) for r in reqs])
    with pytest.raises(CaptureError) as err:
        read_usage([str(json_log)], fmt="combined")
    assert str(json_log) in str(err.value) and "fmt='json'" in str(err.value)
    text_log = write(tmp_path / "a.log", [combined(r) for r in reqs])
    with pytest.raises(CaptureError, match="fmt='combined'"):
        read_usage([str(text_log)], fmt="json")


def test_binary_garbage_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(random.Random(3).randbytes(200_000))
    for fmt in ("auto", "combined", "json"):
        with pytest.raises(CaptureError) as err:
            read_usage([str(path)], fmt=fmt)
        assert str(path) in str(err.value)


def test_unknown_text_is_refused_when_sniffing(tmp_path: Path) -> None:
    path = write(tmp_path / "syslog", ["Mar  1 12:00:00 host sshd[1]: Accepted key"] * 5)
    with pytest.raises(CaptureError, match="cannot tell the log format"):
        read_usage([str(path)])


def test_garbage_lines_inside_a_good_log_are_counted(tmp_path: Path) -> None:
    reqs = make_requests(500, seed=12)
    lines = [combined(r) for r in reqs]
    junk = ["", "\x00\x01\x02 binary", "GET / HTTP/1.1", '1.2.3.4 - - [bad] "GET / HTTP/1.1" x']
    for i, j in enumerate(junk):
        lines.insert(100 * (i + 1), j)
    lines.append(combined(reqs[0])[:30])  # a last line cut off mid-write, no newline
    path = tmp_path / "access.log"
    path.write_bytes("\n".join(lines).encode() + b"\xff\xfe\n" + b"tail without newline")
    table = read_usage([str(path)])
    assert counts_of(table) == expected(reqs)
    assert table.malformed == len(junk) + 2
    assert table.malformed_example == f"{path}:line 101: ''"


@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_table_or_a_capture_error(tmp_path_factory: pytest.TempPathFactory,
                                                         data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.log"
    for blob in (data, gzip.compress(data)[: max(1, len(data) // 2)]):
        path.write_bytes(blob)
        try:
            table = read_usage([str(path)])
        except CaptureError as exc:
            assert str(path) in str(exc)
        else:
            assert table.lines >= table.total >= 0


# -- the endpoint function -----------------------------------------------------------------


_SEGMENT = st.one_of(st.from_regex(r"[0-9]{1,5}|[a-z0-9]{1,6}|[0-9a-fA-F-]{8,40}"
                                    r"|[a-z]{1,3}_?[0-9]{2,4}", fullmatch=True),
                     st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper()),
                     st.from_regex(r"[a-fA-F]{6,18}|[0-9]{1,3}[a-f]{8,16}", fullmatch=True),
                     st.sampled_from(["", "0", "users", "v1", "2024-01-02", "a@b.io", "deadbeef"]))


@given(segments=st.lists(_SEGMENT, max_size=6), absolute=st.booleans(),
       query=st.sampled_from(["", "?a=1", "?id=42/7"]), method=st.sampled_from(["GET", "PUT"]))
def test_folding_ids_never_changes_http_endpoint(segments: list[str], absolute: bool, query: str,
                                                 method: str) -> None:
    path = ("http://h.example" if absolute else "") + "/" + "/".join(segments)
    folded = reduce_targets(pa.array([path.encode()], pa.binary()))[0].as_py().decode()
    assert http_endpoint(method, folded) == http_endpoint(method, path + query)


def test_endpoint_function_runs_once_per_distinct_target(tmp_path: Path) -> None:
    reqs = make_requests(4000, seed=13)
    path = write(tmp_path / "access.log", [combined(r) for r in reqs])
    calls: Counter[tuple[str, str]] = Counter()

    def endpoint(method: str, target: str) -> str:
        calls[(method, target)] += 1
        return http_endpoint(method, target)

    table = read_usage([str(path)], endpoint=endpoint, block_size=16 << 10)
    assert counts_of(table) == expected(reqs)
    assert set(calls) == {(m, t) for m, t, _, _ in reqs}  # it sees the query
    assert max(calls.values()) == 1


def test_split_lines_keeps_every_line() -> None:
    block = b"a\n\nb c\n\xff\n"
    assert split_lines(block).to_pylist() == [b"a\n", b"\n", b"b c\n", b"\xff\n"]


def test_expand_paths_dedupes_and_keeps_order(tmp_path: Path) -> None:
    for name in ("x.log", "y.log"):
        (tmp_path / name).write_text("")
    got = expand_paths([str(tmp_path / "y.log"), str(tmp_path / "*.log")])
    assert [Path(p).name for p in got] == ["y.log", "x.log"]


# -- rendering -----------------------------------------------------------------------------


def test_render_usage_table_shows_the_busiest_endpoints(tmp_path: Path) -> None:
    reqs = make_requests(1000, seed=14)
    lines = [combined(r) for r in reqs] + ["junk line"]
    table = read_usage([str(write(tmp_path / "access.log", lines))])
    console = Console(record=True, width=160)
    console.print(render_usage_table(table, top=3))
    text = console.export_text()
    top3 = [e for e, _ in expected(reqs).most_common(3)]
    assert all(e in text for e in top3)
    fourth = expected(reqs).most_common(4)[3][0]
    assert fourth not in text.split("more endpoints")[0]
    assert f"{len(reqs):,} requests" in text and "1 malformed" in text


# -- a real nginx --------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    log_format jsonlog escape=json '{{"time":"$time_iso8601","remote_addr":"$remote_addr",'
        '"method":"$request_method","uri":"$request_uri","status":$status,'
        '"ua":"$http_user_agent"}}';
    log_format timing '$remote_addr [$time_local] "$request" $status rt=$request_time';
    access_log {prefix}/access.log combined;
    access_log {prefix}/access.json jsonlog;
    access_log {prefix}/timing.log timing;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
        location /missing {{ return 404; }}
        location /boom {{ return 503; }}
    }}
}}
"""
NGINX_TIMING = '$remote_addr [$time_local] "$request" $status rt=$request_time'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], prefix: Path) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {(prefix / 'error.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not start listening within 5 s")


def _nginx(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = require_tool("nginx")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = _free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, prefix)
        yield port, prefix
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: logs are complete when it exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _send(port: int, method: str, target: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{target}", method=method,
                                 data=b"x=1" if method == "POST" else None)
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except urllib.error.HTTPError as exc:
        exc.read()


def _send_raw(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass


@pytest.mark.integration
def test_real_nginx_logs_read_back_with_the_right_counts(tmp_path: Path) -> None:
    rng = random.Random(15)
    sent: list[tuple[str, str]] = []
    for i in range(120):
        target = rng.choice(["/users/{n}", "/users/{n}/orders?x={n}", "/missing/{n}",
                             "/boom", "/search?q=a%20b", "/"]).format(n=rng.randint(1, 999))
        sent.append((rng.choice(["GET", "GET", "POST", "HEAD", "DELETE"]), target))
    gen = _nginx(tmp_path)
    port, prefix = next(gen)
    try:
        for method, target in sent:
            _send(port, method, target)
        _send_raw(port, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # TLS to an HTTP port
    finally:
        gen.close()
    want = Counter(http_endpoint(m, t) for m, t in sent)
    # the config answers /missing with 404, /boom with 503, anything else with 200
    klass = {"missing": "4xx", "boom": "5xx"}
    want_mix = Counter((http_endpoint(m, t), klass.get(t[1:].split("/")[0].split("?")[0], "2xx"))
                       for m, t in sent)
    for path, kwargs in ((prefix / "access.log", {}), (prefix / "access.json", {}),
                         (prefix / "timing.log", {"fmt": "nginx:" + NGINX_TIMING})):
        table = read_usage([str(path)], **kwargs)
        assert counts_of(table) == want, path.name
        assert table.malformed == 0, table.malformed_example
        assert table.no_request == 1  # the TLS hello: "\x16\x03..." or empty JSON fields
        mix = Counter({(row["endpoint"], k): row[k] for row in table.counts.to_dict("records")
                       for k in ("2xx", "4xx", "5xx") if row[k]})
        assert mix == want_mix, path.name
        assert table.first_seen is not None and table.last_seen >= table.first_seen
