"""Hostile input (issue 15.4): every importer, fed real files (tests/data) mutated by
hypothesis, raises nothing but a CaptureError naming the file and a position, and what was
read before the damage is kept: the partial capture written from it is valid and whole."""

from __future__ import annotations

import re
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from shadowdiff.capture import read_exchanges
from shadowdiff.capture.jsonl import CaptureWriter, read_capture, write_capture
from shadowdiff.errors import CaptureError
from shadowdiff.model import Response
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.scrub import KEEP_SECRETS, Redactor
from tests.testpaths import DATA

# a small budget each: nine importers and lift must stay well inside the suite's 30 s
BUDGET = settings(max_examples=min(settings().max_examples, 25), deadline=None)
FILES = {
    "har": "mitm_flows.har", "mitm": "mitm_flows.mitm", "pcap": "curl_lo.pcap",
    "pcapng": "curl_any.pcapng", "postfix": "postfix-maillog.log", "exim": "exim-mainlog.log",
    "log": "access-combined.log",
}
FORMAT = {"pcapng": "pcap", "postfix": "maillog", "exim": "maillog"}
POSITION = re.compile(r"(line|byte|entry|packet) \d+")


def _capture_file() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "c.jsonl"
        write_capture(out, read_exchanges(DATA / "mitm_flows.har", secrets=KEEP_SECRETS))
        return out.read_bytes()


ORIGINALS = {name: (DATA / f).read_bytes() for name, f in FILES.items()}
ORIGINALS["shadowdiff"] = _capture_file()


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    data = bytearray(ORIGINALS[name])
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif action == "delete":
            del data[pos:pos + draw(st.integers(1, 512))]
        else:
            del data[pos:]
    return bytes(data)


def _import(name: str, data: bytes, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (f"in.{name}" + (".gz" if gz else ""))
        path.write_bytes(zlib.compress(data, wbits=31) if gz else data)
        out = Path(tmp) / "out.jsonl"
        writer = CaptureWriter(out, source=name, redactor=Redactor())
        try:
            for ex in read_exchanges(path, fmt=FORMAT.get(name, name), secrets=KEEP_SECRETS):
                writer.write(ex)
        except CaptureError as exc:
            assert str(exc).startswith(str(path)), exc  # names the file ...
            assert POSITION.search(str(exc)) or "empty file" in str(exc), exc  # ... and where
        finally:
            writer.close()
        # nothing written is lost: the partial capture reads back whole
        assert sum(1 for _ in read_capture(out)) == writer.written


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_a_mutated_real_file_gives_a_clear_error_or_exchanges(name: str) -> None:
    @BUDGET
    @given(data=mutated(name), gz=st.booleans())
    def check(data: bytes, gz: bool) -> None:
        _import(name, data, gz)
    check()


@BUDGET
@given(body=st.binary(max_size=2048),
       coding=st.sampled_from(["gzip", "deflate", "br", "gzip, br", "identity", "zstd"]),
       ctype=st.sampled_from(["application/json", "text/html", "text/plain", "", "image/png"]))
def test_lift_takes_any_body(body: bytes, coding: str, ctype: str) -> None:
    headers = (("Content-Type", ctype), ("Content-Encoding", coding))
    tree = PROTOCOL.lift(Response(200, headers, body))
    assert tree["status"] == 200 and "body" in tree


@BUDGET
@given(data=mutated("har"))
def test_lift_takes_mutated_compressed_real_bodies(data: bytes) -> None:
    for coding, packed in (("gzip", zlib.compress(data, wbits=31)), ("deflate", zlib.compress(data))):
        cut = packed[: len(packed) * 2 // 3]
        for body in (packed, cut):
            PROTOCOL.lift(Response(200, (("Content-Encoding", coding),), body))

