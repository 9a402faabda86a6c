"""pcap importer, layer 1: the file's records -> (link-layer decoder, [(frame, epoch s)]).

pcap is read with struct, a block (1 MiB) at a time, re-read from the unfinished record
(no joins of blocks for plain files); pcapng goes through scapy's RawPcapNgReader. gzip
input is decompressed on the fly. Errors name the file and the byte offset.
`segments()` is the one-packet-at-a-time view for consumers other than `read_pcap`.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Generator, Iterator
from typing import IO, Any

from shadowdiff.capture.pcap.packet import Decoder, Segment, decoder_for
from shadowdiff.capture.pcap.tcp import Counters
from shadowdiff.errors import CaptureError


#: What the file layer yields: (decoder of the link type, [(frame bytes, epoch s), ...]).
Batches = Generator[tuple[Decoder, list[tuple[bytes, float]]], None, None]
PCAP_MAGICS = frozenset({b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1",   # microseconds, BE / LE
                         b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1"})  # nanoseconds, BE / LE


PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a")


_GZIP_MAGIC = b"\x1f\x8b"


# No link type carries a frame larger than this; a longer record means a corrupt file.
_MAX_FRAME = 262140


# Bytes read at a time: large enough that per-read costs vanish, small for memory.
_BLOCK = 1 << 20


def segments(path: str | os.PathLike[str],
             counters: Counters | None = None) -> Iterator[tuple[Segment | None, float]]:
    """Each packet of a capture as (TCP segment, or None when it is not TCP/IP; epoch s).

    For consumers of the TCP layer other than `read_pcap` (the SMTP-only importer, tools):
    one generator step per packet, which `read_pcap`'s own loop avoids for speed.
    """
    counters = Counters() if counters is None else counters
    batches = frame_batches(str(path), counters)
    try:
        for decode, frames in batches:
            for data, ts in frames:
                yield decode(data), ts
    finally:
        batches.close()  # explicitly: see read_pcap


def _open(src: str) -> tuple[IO[bytes], bytes, int | None]:
    """The open file (gunzipped if need be), its 4-byte magic, and its size if known."""
    try:
        f: IO[bytes] = open(src, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc}", source=src, position="byte 0") from exc
    try:
        size: int | None = os.fstat(f.fileno()).st_size
        if f.read(2) == _GZIP_MAGIC:
            f.close()
            f, size = gzip.open(src, "rb"), None  # type: ignore[assignment]
        f.seek(0)
        magic = f.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        f.close()
        raise CaptureError(f"cannot read: {exc}", source=src, position="byte 0") from exc
    except BaseException:
        f.close()  # whatever else goes wrong, the file must not outlive the call
        raise
    if not sniff(magic):
        f.close()
        raise CaptureError("not a pcap or pcapng file (unknown magic number)", source=src,
                           position="byte 0")
    return f, magic, size


def frame_batches(src: str,
                  counters: Counters) -> Batches:
    """Batches of (frame bytes, epoch seconds), with the decoder for their link type.

    Batches (one per block read) rather than single frames: a generator step per packet
    costs as much as decoding the packet.
    """
    f, magic, size = _open(src)
    try:
        if magic == PCAPNG_MAGIC:
            yield from _pcapng_frames(src, _pcapng_reader(src, f), size, counters)
        else:
            yield from _pcap_frames(src, f, magic, counters)
    finally:
        f.close()


def _unsupported(src: str, linktype: int, position: str) -> CaptureError:
    return CaptureError(f"unsupported link-layer type {linktype} (supported: Ethernet, Linux "
                        "cooked SLL/SLL2, BSD loopback, raw IP)", source=src, position=position)


def _read(src: str, f: IO[bytes], n: int, position: str) -> bytes:
    """Up to `n` bytes; b"" at the end, or where a compressed stream is cut short."""
    try:
        return f.read1(n)  # type: ignore[attr-defined]
    except EOFError:
        return b""  # a gzip stream cut short: what came before is kept, like a cut file
    except (OSError, zlib.error) as exc:
        raise CaptureError(f"unreadable data: {exc}", source=src, position=position) from exc


def _pcap_header(src: str, f: IO[bytes], magic: bytes) -> tuple[struct.Struct, float, int]:
    """The record-header layout, the timestamp unit and the link type of a pcap file."""
    endian = ">" if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") else "<"
    nano = magic in (b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
    head = _read(src, f, 20, "byte 4")
    while 0 < len(head) < 20:  # read1 may return less than asked
        more = _read(src, f, 20 - len(head), "byte 4")
        if not more:
            break
        head += more
    if len(head) < 20:
        raise CaptureError("bad file header: too short", source=src, position="byte 4")
    linktype = struct.unpack(endian + "I", head[16:20])[0] & 0xFFFF  # upper bits: FCS info
    return struct.Struct(endian + "IIII"), 1e-9 if nano else 1e-6, linktype


def _pcap_frames(src: str, f: IO[bytes], magic: bytes,
                 counters: Counters) -> Batches:
    record, scale, linktype = _pcap_header(src, f, magic)
    decode = decoder_for(linktype)
    if decode is None:
        raise _unsupported(src, linktype, "byte 20")
    # A plain file is read again from the first unfinished record, rather than that record's
    # start being joined to the next block: one 1 MiB allocation per block instead of two.
    seek = f.seek if isinstance(f, io.BufferedReader) and f.seekable() else None
    buf, off, pos, n = b"", 0, 24, 0  # pos: file offset of buf[0]; n: records before it
    while True:
        if seek is not None and off < len(buf):
            seek(pos + off)
            pos, buf, off = pos + off, b"", 0
        chunk = _read(src, f, _BLOCK, f"packet {n + 1}, byte {pos + off}")
        if not chunk:
            break
        pos += off
        buf = buf[off:] + chunk if off < len(buf) else chunk
        frames, off = _records(buf, record, scale)
        if off <= len(buf) - 16 and record.unpack_from(buf, off)[2] > _MAX_FRAME:
            raise CaptureError(f"packet record claims {record.unpack_from(buf, off)[2]} bytes, "
                               "more than any frame: the file is corrupt", source=src,
                               position=f"packet {n + len(frames) + 1}, byte {pos + off}")
        if frames:
            n += len(frames)
            counters.packets += len(frames)
            yield decode, frames
        elif seek is not None:
            break  # a block holds any whole record: this one is cut by the end of the file
    left = len(buf) - off
    if left >= 16:  # the file ends inside this record (capture cut short)
        counters.packets += 1
        counters.truncated_packets += 1
        counters.skipped_packets += 1
    counters.truncated_bytes += left


def _records(buf: bytes, record: struct.Struct,
             scale: float) -> tuple[list[tuple[bytes, float]], int]:
    """The whole records at the start of `buf` as (frame, epoch s); the offset after them.

    Stops at a record cut by the end of `buf`, or at one claiming more than any frame.
    """
    unpack = record.unpack_from
    frames: list[tuple[bytes, float]] = []
    append, last, off = frames.append, len(buf) - 16, 0
    while off <= last:  # the per-packet loop: keep it to the bare minimum
        sec, frac, caplen, _ = unpack(buf, off)
        nxt = off + 16 + caplen
        if nxt > last + 16 or caplen > _MAX_FRAME:
            break
        append((buf[off + 16:nxt], sec + frac * scale))
        off = nxt
    return frames, off


def _pcapng_reader(src: str, f: IO[bytes]) -> Any:
    """scapy's pcapng reader over the open file (pcapng is rarer: its speed matters less)."""
    try:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapNgReader
    except ImportError as exc:  # scapy is the `pcap` extra
        raise CaptureError("reading pcapng files needs scapy: pip install 'shadowdiff[pcap]'",
                           source=src) from exc
    try:
        # Built by hand: the reader's metaclass only opens files by name itself.
        reader = object.__new__(RawPcapNgReader)
        RawPcapNgReader.__init__(reader, src, f, PCAPNG_MAGIC)
        return reader
    except (Scapy_Exception, *_READ_ERRORS) as exc:  # type: ignore[misc]
        raise CaptureError(f"bad file header: {exc}", source=src, position="byte 0") from exc


def _pcapng_frames(src: str, reader: Any, size: int | None,
                   counters: Counters) -> Batches:
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
                               position=f"packet {n + 1}, byte {pos}") from exc
        if res is None:
            continue
        data, meta = res
        n += 1
        counters.packets += 1
        decode = decoders.get(meta.linktype)
        if decode is None:
            found = decoder_for(meta.linktype)
            if found is None:
                raise _unsupported(src, meta.linktype, f"packet {n}, byte {pos}")
            decode = decoders[meta.linktype] = found
        if meta.tshigh is not None:  # a simple packet block carries no timestamp
            ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
        yield decode, [(data, ts)]


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
