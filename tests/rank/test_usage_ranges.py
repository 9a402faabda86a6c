"""Byte ranges of a plain log (what a Dask worker reads itself): every line exactly once,
whatever the range size, and counted as the block reader counts it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowdiff.rank.usage import read_usage
from shadowdiff.rank.usage.ranges import byte_ranges, read_range

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(LINE, max_size=30), last_newline=st.booleans(),
       block=st.integers(min_value=1, max_value=90))
def test_ranges_cover_every_line_once(tmp_path_factory, lines: list[bytes], last_newline: bool,
                                      block: int) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    path = tmp_path_factory.mktemp("r") / "log"
    path.write_bytes(data)
    got = b"".join(read_range(str(path), s, e) for s, e in byte_ranges(len(data), block))
    assert got == (data if not data or data.endswith(b"\n") else data + b"\n")


class Ranged:
    """An executor that, like a Dask engine whose workers see the file, is sent ranges."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def submit(self, fn, /, *args):
        from concurrent.futures import Future
        self.calls.append(fn.__name__)
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def sees(self, path: str) -> bool:
        return True


def test_ranges_count_as_the_blocks_do(tmp_path: Path) -> None:
    lines = [f'10.0.0.1 - - [01/Dec/2026:10:00:{k % 60:02d} +0000] "GET /items/{k} HTTP/1.1" '
             f'{200 + k % 3 * 100} 5 "-" "curl"' for k in range(3_000)]
    lines[1_777] = "garbage that fits no format"
    log = tmp_path / "access.log"
    log.write_text("\r\n".join(lines))  # CRLF and no final newline
    blocks = read_usage([str(log)], block_size=4_000)
    ranged = Ranged()
    ranges = read_usage([str(log)], block_size=4_000, executor=ranged, workers=2)
    assert set(ranged.calls) == {"count_range"} and len(ranged.calls) > 50
    assert ranges.counts.equals(blocks.counts)
    assert (ranges.total, ranges.malformed, ranges.malformed_example) == \
           (blocks.total, blocks.malformed, blocks.malformed_example) == \
           (2_999, 1, ranges.malformed_example)  # total: the well-formed lines
    assert ranges.malformed_example.startswith(f"{log}:line 1778: ")
