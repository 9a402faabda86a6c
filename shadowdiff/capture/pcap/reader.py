"""Capture stage: pcap and pcapng files -> `Exchange`s (and the importer's counts).

The importer is five layers, each a module:

    frames.py  file records (pcap with struct; pcapng with scapy's RawPcapNgReader),
               timestamps, errors
    packet.py  link layer, IPv4/IPv6 and TCP headers unpacked with struct -> Segment
    tcp.py     per-connection, per-direction reassembly; gaps; idle flush
    http1.py   HTTP/1.x messages parsed with llhttp (httptools); request/response pairing
    order.py   exchanges numbered and released in order of request start
    reader.py  this module: the loop through the layers, and the importer's counts

Everything streams: a block of the file (1 MiB) is read at a time, its frames decoded and
pushed through one by one, and an exchange is yielded as soon as it (and every exchange
that started before it) is done. Every path that opens the file closes it, on errors and
when the consumer stops early.

>>> stats = {}
>>> for ex in read_pcap("prod.pcap", ports=[8080], stats=stats): ...  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from typing import Any

from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.capture.pcap.frames import frame_batches, sniff  # noqa: F401 - sniff: capture.FORMATS looks beside read_pcap
from shadowdiff.capture.pcap.order import Orderer, drain
from shadowdiff.capture.pcap.tcp import Counters, TcpTable
from shadowdiff.model import Exchange


def read_pcap(path: str | os.PathLike[str], *, ports: Collection[int] | None = None,
              stats: dict[str, Any] | None = None, idle_s: float = 300.0) -> Iterator[Exchange]:
    """Stream the HTTP/1.x exchanges and SMTP session steps of a pcap/pcapng file.

    Each TCP connection is HTTP or SMTP, told by its port and its first bytes
    (dispatch.py), so a capture holding both yields both. `ports` limits the import to
    connections with a server on one of those ports (and says which side is the server
    when a connection's start was not captured). `stats`, if given, receives the counts
    (packets, connections, requests, responses, incomplete, skipped_packets,
    non_http_connections, ..., and the `smtp_*` counts when SMTP was seen) when the
    iteration ends. Raises CaptureError when the file cannot be read as a capture.
    """
    from shadowdiff.capture.pcap.dispatch import connection_factory
    from shadowdiff.capture.pcap.smtp import SmtpImporter

    src = str(path)
    counters = Counters()
    orderer = Orderer(src, counters)
    smtp = SmtpImporter(f"pcap:{os.path.basename(src)}")
    table = TcpTable(connection_factory(orderer, counters, smtp), counters,
                     ports=ports, idle_s=idle_s)
    ready, mail = orderer.ready, smtp.ready
    segment = table.segment
    last_ts = 0.0
    # Closed explicitly, not left to garbage collection: compiled generators (setup.py)
    # do not run their `finally` when merely dropped, and the file must close either way.
    batches = frame_batches(src, counters)
    try:
        for decode, frames in batches:
            for data, ts in frames:
                seg = decode(data)
                if seg is None or not segment(seg, ts):
                    counters.skipped_packets += 1
                if ready:
                    yield from ready
                    ready.clear()
                if mail:
                    yield from drain(mail)
            last_ts = frames[-1][1]
        table.close_all(last_ts)
        orderer.flush()
        yield from ready
        ready.clear()
        yield from drain(mail)
    finally:
        batches.close()
        if stats is not None:
            stats.update(counters.as_dict())
            if any(smtp.stats.values()):
                stats.update(smtp.stats)


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

