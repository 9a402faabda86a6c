"""Hostile targets and bombs (issue 15.4): a real asyncio server on loopback that floods
headers, sends a 1 MB header line, an endless chunked body or drips bytes (slowloris); both
senders stop each at a bound. And decompression bombs stop at the decode limit in lift."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import zlib

import brotlicffi
import pytest

from shadowdiff.model import Failure, Request, Response
from shadowdiff.protocols.http.message import BodyTooLarge, decode_content
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.replay.options import ReplayConfig

GIB = 1 << 30
MIB = 1 << 20


async def _hostile(behaviour: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    deadline = time.monotonic() + 8  # every loop below is bounded in time and count
    try:
        if behaviour == "flood":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(20_000):
                writer.write(b"X-Flood-%d: y\r\n" % i)
                if i % 500 == 0:
                    await writer.drain()
        elif behaviour == "longline":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
            for _ in range(16):  # 1 MB, never ended
                writer.write(b"a" * 65536)
                await writer.drain()
        elif behaviour == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(20_000):
                writer.write(b"400\r\n" + b"z" * 1024 + b"\r\n")
                await writer.drain()
                if time.monotonic() > deadline:
                    break
        elif behaviour == "slowloris":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
                if time.monotonic() > deadline:
                    break
        await asyncio.sleep(5)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _send_to(behaviour: str, client: str) -> tuple[Failure | Response, float]:
    server = await asyncio.start_server(lambda r, w: _hostile(behaviour, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = ReplayConfig(timeout_s=2.0, max_body_bytes=MIB, client=client, concurrency=1)
    sender = PROTOCOL.open_sender(f"http://127.0.0.1:{port}", options)
    start = time.monotonic()
    try:
        outcome = await sender.send(Request("http", "GET", "/", (("Host", "t"),)))
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    return outcome, time.monotonic() - start


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
@pytest.mark.parametrize("behaviour, kinds", [
    ("flood", {"fast": "too_large", "aiohttp": "invalid"}),
    ("longline", {"fast": "too_large", "aiohttp": "invalid"}),
    ("endless", {"fast": "too_large", "aiohttp": "too_large"}),
    ("slowloris", {"fast": "timeout", "aiohttp": "timeout"}),
])
def test_a_hostile_target_stops_at_a_bound(behaviour, kinds, client) -> None:
    outcome, took = asyncio.run(_send_to(behaviour, client))
    assert isinstance(outcome, Failure), outcome
    assert outcome.kind == kinds[client], outcome
    assert took < 4.0  # the 2 s timeout at the latest


# -- decompression bombs ----------------------------------------------------------------


def _deflate_bomb(wbits: int) -> bytes:
    """1 GiB of zeros compressed to about 1 MB, built from one flushed block repeated (each
    full flush resets the window, so the blocks are byte-identical) instead of compressing
    a gigabyte here."""
    zeros = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    c.compress(zeros)
    c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    body = block * (GIB // MIB) + c.flush()
    if wbits == 31:
        crc = 0
        for _ in range(GIB // MIB):
            crc = zlib.crc32(zeros, crc)
        return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body
                + crc.to_bytes(4, "little") + (GIB % 2**32).to_bytes(4, "little"))
    adler = 1
    for _ in range(GIB // MIB):
        adler = zlib.adler32(zeros, adler)
    return b"\x78\xda" + body + adler.to_bytes(4, "big")


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    br = brotlicffi.Compressor(quality=1)
    zeros = bytes(MIB)
    brotli_bomb = b"".join(br.process(zeros) for _ in range(GIB // MIB)) + br.finish()
    return {"gzip": _deflate_bomb(31), "deflate": _deflate_bomb(15), "br": brotli_bomb}


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_decompression_bomb_stops_at_the_limit_without_materializing(bombs, coding) -> None:
    bomb = bombs[coding]
    assert len(bomb) < 2 * MIB
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            decode_content(bomb, coding, 10 * MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * MIB  # the limit and a step, never the gigabyte


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_lift_records_a_bomb_as_too_large_at_the_runs_limit(bombs, coding) -> None:
    plugin, _ = PROTOCOL.configure(ReplayConfig(max_body_bytes=4 * MIB))
    tree = plugin.lift(Response(200, (("Content-Type", "application/json"),
                                      ("Content-Encoding", coding)), bombs[coding]))
    assert tree["body"]["$too_large"] == 4 * MIB and tree["body"]["$binary"]["length"] == len(bombs[coding])


def test_bodies_under_the_limit_decode_as_before() -> None:
    text = b'{"a": 1}' * 1000
    for coding, data in [("gzip", zlib.compress(text, wbits=31)), ("deflate", zlib.compress(text)),
                         ("deflate", zlib.compress(text, wbits=-15)),
                         ("br", brotlicffi.compress(text)), ("gzip, br", brotlicffi.compress(zlib.compress(text, wbits=31)))]:
        assert decode_content(data, coding) == text
    with pytest.raises(zlib.error):  # lift shows these as {"$undecodable": ...}
        decode_content(zlib.compress(text, wbits=31)[:-20], "gzip")
    with pytest.raises((ValueError, brotlicffi.error)):
        decode_content(brotlicffi.compress(text)[:-5], "br")
