"""Rank stage, log sources: paths and globs -> files -> batches of raw lines (Arrow arrays).

    "logs/access.log*" ──> expand_paths() ──> [access.log.3.gz, access.log.2.gz,
                                               access.log.1, access.log]
    one file ──> LineReader ──> blocks of whole lines ──> split_lines() ──> Arrow array

Files stream in fixed blocks cut at the last newline, so memory stays flat whatever the
file size; a block becomes an Arrow binary array of lines by finding the newlines with
numpy and handing Arrow the offsets, with no copy (measured here: ~0.08 s for a 2M-line,
300 MB log, where pyarrow's CSV reader, told to use a delimiter that never occurs, took
0.6 s with threads and 1.5 s serial). Compressed files (gzip, bzip2, xz) are found by
their magic bytes, not by name, and decompressed in a tolerant stream: a half-written `.gz` (logrotate still
compressing it) yields the lines before the break and a problem note, not an error.
"""

from __future__ import annotations

import bz2
import glob
import io
import lzma
import os
import re
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np
import pyarrow as pa

from shadowdiff.errors import CaptureError

#: Bytes per block: ~25k combined lines. Bigger blocks read a little faster but every
#: block in flight costs memory.
BLOCK_SIZE = 4 << 20
_CHUNK = 1 << 20
#: A "line" longer than this (no newline in sight: binary junk) is cut and counted as
#: malformed rather than buffered without end.
_LONGEST_LINE = 64 << 20


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


_MAGIC: list[tuple[bytes, str, Callable[[], _Decompressor]]] = [
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(31)),  # type: ignore[list-item,return-value]
    (b"BZh", "bzip2", bz2.BZ2Decompressor),  # type: ignore[list-item]
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),  # type: ignore[list-item]
]
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# -- which files ---------------------------------------------------------------------------


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Files to read, in time order: globs expanded, rotated files oldest first, no repeats.

    `access.log.2.gz` is older than `access.log.1`, which is older than `access.log`
    (logrotate's numbering). A path or glob that names no file is an error.

    >>> expand_paths([])
    []
    """
    out: list[str] = []
    seen: set[str] = set()
    for given in paths:
        matches = sorted(glob.glob(given)) if glob.has_magic(given) else [given]
        if not matches:
            raise CaptureError("no file matches this pattern", source=given)
        for path in sorted(matches, key=_rotation_key):
            if os.path.isdir(path):
                raise CaptureError("is a directory; give the log files (a glob works: "
                                   f"{os.path.join(path, 'access.log*')})", source=path)
            if not os.path.exists(path):
                raise CaptureError("no such file", source=path)
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                out.append(path)
    return out


_ROTATED = re.compile(r"^(?P<base>.*?)(?:[.-](?P<n>\d+))?(?P<ext>\.(?:gz|bz2|xz|zst))?$")


def _rotation_key(path: str) -> tuple[str, int, int]:
    # same base name together, oldest first, the live file last: logrotate's numbers
    # count up with age (access.log.2.gz is older than .1); dateext suffixes
    # (access.log-20240101) count up with time
    m = _ROTATED.match(path)
    assert m is not None  # the pattern matches any string
    n = m.group("n")
    if n is None:
        return (m.group("base"), 1, 0)
    return (m.group("base"), 0, int(n) if len(n) >= 6 else -int(n))


# -- opening -------------------------------------------------------------------------------


class _DecompressingReader(io.RawIOBase):
    """A read-only stream that decompresses, and ends quietly where the data breaks."""

    def __init__(self, path: str, kind: str, factory: Callable[[], _Decompressor]) -> None:
        super().__init__()
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._kind, self._factory = kind, factory
        self._d = factory()
        self._buf = bytearray()
        self._done = False
        self._fed = False
        self.problem: str | None = None
        """Why the stream ended early, when it did."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while not self._done and (size is None or size < 0 or len(self._buf) < size):
            self._fill()
        n = len(self._buf) if size is None or size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def _fill(self) -> None:
        chunk = self._raw.read(_CHUNK)
        if not chunk:
            if self._fed and not self._d.eof:
                self.problem = (f"{self._kind} data ends early (a half-written file, e.g. "
                                "logrotate still compressing it?); read what came before")
            self._done = True
            return
        try:
            self._decompress(chunk)
        except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
            self.problem = f"corrupt {self._kind} data ({exc}); read what came before"
            self._done = True

    def _decompress(self, data: bytes) -> None:
        while data:
            if self._d.eof:
                # concatenated members (`cat a.gz b.gz`), as gzip(1) reads them
                self._d = self._factory()
            self._fed = True
            self._buf += self._d.decompress(data)
            data = self._d.unused_data if self._d.eof else b""

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_log(path: str) -> tuple[Any, str]:
    """A binary stream of the file's text (decompressed), and its compression (`""` if none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        for magic, kind, factory in _MAGIC:
            if head.startswith(magic):
                return _DecompressingReader(path, kind, factory), kind
        if head.startswith(_ZSTD_MAGIC):
            raise CaptureError("zstd-compressed; decompress it first (zstd -d) or pipe it",
                               source=path)
        return open(path, "rb", buffering=0), ""  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise CaptureError(f"cannot open: {exc.strerror or exc}", source=path) from exc


def read_head(path: str, size: int = 64 << 10) -> bytes:
    """The first `size` bytes of the file's text (decompressed), for sniffing."""
    stream, _ = open_log(path)
    try:
        return bytes(stream.read(size))
    finally:
        stream.close()


# -- lines ---------------------------------------------------------------------------------


@dataclass
class LineReader:
    """Iterate one file as blocks of whole lines (bytes, each line ending in `\\n`).

    The reading thread only cuts blocks at the last newline; `split_lines` (in the
    workers) turns a block into an Arrow array, so line numbers are simply counted.
    """

    path: str
    block_size: int = BLOCK_SIZE
    problem: str | None = None
    """Why the file ended early (a broken compressed stream), when it did."""

    def __iter__(self) -> Generator[bytes, None, None]:
        stream, _ = open_log(self.path)
        try:
            yield from self._blocks(stream)
        except OSError as exc:
            raise CaptureError(f"cannot read: {exc.strerror or exc}", source=self.path) from exc
        finally:
            self.problem = getattr(stream, "problem", None)
            stream.close()

    def _blocks(self, stream: Any) -> Iterator[bytes]:
        carry = b""
        while True:
            chunk = bytes(stream.read(self.block_size))
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0 and len(data) < _LONGEST_LINE:
                carry = data
                continue
            cut = len(data) - 1 if cut < 0 else cut  # a runaway "line": let it be malformed
            carry = data[cut + 1:]
            yield data[: cut + 1]
        if carry:
            yield carry + b"\n"  # the last line had no newline (or was cut off)


def split_lines(block: bytes) -> pa.Array:
    """A binary Arrow array of the lines in `block` (newline kept), without copying them.

    >>> split_lines(b"a\\nbc\\n").to_pylist()
    [b'a\\n', b'bc\\n']
    """
    data = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(data == 10) + 1
    offsets = np.zeros(len(ends) + 1, np.int32)
    offsets[1:] = ends
    return pa.Array.from_buffers(pa.binary(), len(ends),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(block)])
