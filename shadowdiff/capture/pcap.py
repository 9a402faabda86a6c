"""Capture stage: pcap and pcapng files -> `Exchange`s (and the importer's counts).

The importer is four layers, each a module:

    pcap.py    file records (scapy's RawPcapReader / RawPcapNgReader), timestamps, errors
    packet.py  link layer, IPv4/IPv6 and TCP headers unpacked with struct -> Segment
    tcp.py     per-connection, per-direction reassembly; gaps; idle flush
    http1.py   h11 message parsing and request/response pairing
    order.py   exchanges numbered and released in order of request start

Everything streams: one frame is read, decoded and pushed through at a time, and an
exchange is yielded as soon as it (and every exchange that started before it) is done.

>>> stats = {}
>>> for ex in read_pcap("prod.pcap", ports=[8080], stats=stats): ...  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Collection, Iterator
from typing import IO, Any

from shadowdiff.capture.http1 import HttpSession
from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.capture.order import Orderer
from shadowdiff.capture.packet import Decoder, decoder_for
from shadowdiff.capture.tcp import Counters, TcpTable
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange

PCAP_MAGICS = frozenset({b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1",   # microseconds, BE / LE
                         b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1"})  # nanoseconds, BE / LE
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a")
_GZIP_MAGIC = b"\x1f\x8b"
# No link type carries a frame larger than this; a longer record means a corrupt file.
_MAX_FRAME = 262140
# What scapy's readers raise on a malformed file, besides EOFError at the end.
_READ_ERRORS: tuple[type[BaseException], ...] = (struct.error, OSError, ValueError, IndexError,
                                                 KeyError, MemoryError, OverflowError,
                                                 zlib.error, EOFError)


def sniff(head: bytes) -> bool:
    """Whether the first bytes of a file are a pcap or pcapng header (either byte order).

    >>> sniff(open("x.pcap", "rb").read(16))  # doctest: +SKIP
    True
    """
    if head[:4] in PCAP_MAGICS:
        return True
    if head[:4] == PCAPNG_MAGIC:
        return len(head) < 12 or head[8:12] in _PCAPNG_BOM
    return False


def read_pcap(path: str | os.PathLike[str], *, ports: Collection[int] | None = None,
              stats: dict[str, Any] | None = None, idle_s: float = 300.0) -> Iterator[Exchange]:
    """Stream the HTTP/1.x exchanges of a pcap/pcapng file (optionally gzip-compressed).

    `ports` limits the import to connections with a server on one of those ports (and
    says which side is the server when a connection's start was not captured). `stats`,
    if given, receives the counts (packets, connections, requests, responses, incomplete,
    skipped_packets, non_http_connections, ...) when the iteration ends.
    Raises CaptureError when the file cannot be read as a capture.
    """
    src = str(path)
    counters = Counters()
    orderer = Orderer(src, counters)
    table = TcpTable(lambda mid_stream: HttpSession(orderer, counters, mid_stream), counters,
                     ports=ports, idle_s=idle_s)
    ready = orderer.ready
    segment = table.segment
    last_ts = 0.0
    try:
        for data, ts, decode in _frames(src, counters):
            seg = decode(data)
            if seg is None or not segment(seg, ts):
                counters.skipped_packets += 1
            if ready:
                yield from ready
                ready.clear()
            last_ts = ts
        table.close_all(last_ts)
        orderer.flush()
        yield from ready
        ready.clear()
    finally:
        if stats is not None:
            stats.update(counters.as_dict())


def import_pcap(path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                ports: Collection[int] | None = None) -> dict[str, Any]:
    """Write a pcap's exchanges as a capture file (docs/capture-format.md); returns the counts.

    >>> import_pcap("prod.pcap", "captures/prod.jsonl.gz", ports=[8080])  # doctest: +SKIP
    {'packets': 1200, 'connections': 40, 'requests': 300, ...}
    """
    stats: dict[str, Any] = {}
    with CaptureWriter(out, source=f"pcap:{os.path.basename(str(path))}") as writer:
        writer.write_all(read_pcap(path, ports=ports, stats=stats))
        writer.stats.update(stats)
    return stats


# -- the file layer -----------------------------------------------------------------------


def _open(src: str) -> tuple[IO[bytes], bytes, int | None]:
    """The open file (gunzipped if need be), its 4-byte magic, and its size if known."""
    try:
        f: IO[bytes] = open(src, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc}", source=src, position="byte offset 0") from exc
    try:
        size: int | None = os.fstat(f.fileno()).st_size
        if f.read(2) == _GZIP_MAGIC:
            f.close()
            f, size = gzip.open(src, "rb"), None  # type: ignore[assignment]
        f.seek(0)
        magic = f.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        f.close()
        raise CaptureError(f"cannot read: {exc}", source=src, position="byte offset 0") from exc
    if not sniff(magic):
        f.close()
        raise CaptureError("not a pcap or pcapng file (unknown magic number)", source=src,
                           position="byte offset 0")
    return f, magic, size


def _open_reader(src: str) -> tuple[Any, int | None]:
    try:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapNgReader, RawPcapReader
    except ImportError as exc:  # scapy is the `pcap` extra
        raise CaptureError("reading pcap files needs scapy: pip install 'shadowdiff[pcap]'",
                           source=src) from exc
    f, magic, size = _open(src)
    cls = RawPcapNgReader if magic == PCAPNG_MAGIC else RawPcapReader
    try:
        # Built by hand: the readers' metaclass only opens files by name itself.
        reader = object.__new__(cls)
        reader.__init__(src, f, magic)
        return reader, size
    except (Scapy_Exception, *_READ_ERRORS) as exc:
        f.close()
        raise CaptureError(f"bad file header: {exc}", source=src,
                           position="byte offset 0") from exc


def _frames(src: str, counters: Counters) -> Iterator[tuple[bytes, float, Decoder]]:
    """(frame bytes, epoch seconds, decoder) for every packet record of the file."""
    reader, size = _open_reader(src)
    try:
        if hasattr(reader, "interfaces"):
            yield from _pcapng_frames(src, reader, size, counters)
        else:
            yield from _pcap_frames(src, reader, size, counters)
    finally:
        reader.f.close()


def _unsupported(src: str, linktype: int, position: str) -> CaptureError:
    return CaptureError(f"unsupported link-layer type {linktype} (supported: Ethernet, Linux "
                        "cooked SLL/SLL2, BSD loopback, raw IP)", source=src, position=position)


def _pcap_frames(src: str, reader: Any, size: int | None,
                 counters: Counters) -> Iterator[tuple[bytes, float, Decoder]]:
    decode = decoder_for(reader.linktype)
    if decode is None:
        raise _unsupported(src, reader.linktype, "byte offset 20")
    scale = 1e-9 if reader.nano else 1e-6
    # scapy's public iterator cuts frames at 65535 bytes, shorter than a loopback frame.
    read = reader._read_packet
    n, offset = 0, 24
    while True:
        try:
            data, meta = read(_MAX_FRAME)
        except EOFError:
            break
        except _READ_ERRORS as exc:
            raise CaptureError(f"unreadable packet record: {exc}", source=src,
                               position=f"packet {n + 1}, byte offset {offset}") from exc
        n += 1
        caplen = meta.caplen
        if caplen > _MAX_FRAME:
            raise CaptureError(f"packet record claims {caplen} bytes, more than any frame: "
                               "the file is corrupt", source=src,
                               position=f"packet {n}, byte offset {offset}")
        counters.packets += 1
        if len(data) < caplen:  # the file ends inside this record (capture cut short)
            counters.truncated_packets += 1
            counters.skipped_packets += 1
            counters.truncated_bytes += 16 + len(data)
            return
        offset += 16 + caplen
        yield data, meta.sec + meta.usec * scale, decode
    if size is not None and offset < size:  # a partial record header at the end
        counters.truncated_bytes += size - offset


def _pcapng_frames(src: str, reader: Any, size: int | None,
                   counters: Counters) -> Iterator[tuple[bytes, float, Decoder]]:
    decoders: dict[int, Decoder] = {}
    read_block = reader._read_block  # one block at a time, so a bad one can be located
    tell = reader.f.tell
    n, ts = 0, 0.0
    while True:
        pos = tell() if size is not None else 0
        try:
            res = read_block(_MAX_FRAME)
        except EOFError:
            if size is not None and pos < size:  # a cut or corrupt block: the rest is lost
                counters.truncated_bytes += size - pos
            return
        except _READ_ERRORS as exc:
            raise CaptureError(f"unreadable block: {exc}", source=src,
                               position=f"packet {n + 1}, byte offset {pos}") from exc
        if res is None:
            continue
        data, meta = res
        n += 1
        counters.packets += 1
        decode = decoders.get(meta.linktype)
        if decode is None:
            found = decoder_for(meta.linktype)
            if found is None:
                raise _unsupported(src, meta.linktype, f"packet {n}, byte offset {pos}")
            decode = decoders[meta.linktype] = found
        if meta.tshigh is not None:  # a simple packet block carries no timestamp
            ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
        yield data, ts, decode
