"""Opening the files every reader takes: plain or gzip (by content, not by name), and the
one error for a line-oriented file that cannot be read past a line.

Shared by the capture importers, the usage readers and the protocols' log readers.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import IO, cast

from shadowdiff.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping by content."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))  # owns its file: closing closes all
    return open(path, "rb")


#: What reading a damaged plain or gzip file raises.
READ_ERRORS = (OSError, EOFError, zlib.error)


def truncated(exc: BaseException, src: str, lineno: int) -> CaptureError:
    """The error for a line-oriented file that cannot be read at `lineno` (damaged or cut)."""
    return CaptureError(f"cannot read past this line ({exc.__class__.__name__}: {exc}); "
                        "the file is truncated or corrupt", source=src, position=f"line {lineno}")
