"""Building pcaps for the pcap importer's tests: TCP conversations made with scapy.

Shared by tests/capture/pcap/test_capture_pcap.py (file, link and TCP layers) and
tests/capture/pcap/test_capture_http1.py (HTTP messages and pairing). Real captures: tests/data/curl_lo.pcap
and curl_any.pcapng were written by tcpdump while curl talked to an aiohttp server
(tests/data/make_pcaps.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether, Loopback
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from shadowdiff.capture.pcap.reader import read_pcap
from shadowdiff.model import Exchange

DATA = Path(__file__).parent / "data"
FIXTURES = [DATA / "curl_lo.pcap", DATA / "curl_any.pcapng"]


def recipe() -> Any:
    """tests/data/make_pcaps.py, which recorded the fixtures, for what it sent."""
    spec = importlib.util.spec_from_file_location("make_pcaps", DATA / "make_pcaps.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_all(path: Path, **kw: Any) -> tuple[list[Exchange], dict[str, Any]]:
    stats: dict[str, Any] = {}
    return list(read_pcap(path, stats=stats, **kw)), stats


# -- building conversations with scapy ----------------------------------------------------


class Flow:
    """One TCP connection, packet by packet, with sequence numbers kept for you."""

    def __init__(self, *, v6: bool = False, cport: int = 40000, sport: int = 8080,
                 t0: float = 1_700_000_000.0, cseq: int = 1000, sseq: int = 70000) -> None:
        self.v6 = v6
        self.caddr, self.saddr = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = cseq, sseq
        self.t = t0
        self.pkts: list[Packet] = []

    def packet(self, client: bool, flags: str, data: bytes = b"", *, seq: int | None = None,
               ack: int | None = None, keep: bool = True) -> Packet:
        src, dst = (self.caddr, self.saddr) if client else (self.saddr, self.caddr)
        sp, dp = (self.cport, self.sport) if client else (self.sport, self.cport)
        ip = IPv6(src=src, dst=dst) if self.v6 else IP(src=src, dst=dst)
        own, other = (self.cseq, self.sseq) if client else (self.sseq, self.cseq)
        pkt = ip / TCP(sport=sp, dport=dp, flags=flags, seq=own if seq is None else seq,
                       ack=(other if ack is None else ack) if "A" in flags else 0)
        if data:
            pkt = pkt / Raw(data)
        self.t += 0.001
        pkt.time = self.t
        if keep:
            self.pkts.append(pkt)
        return pkt

    def handshake(self) -> Flow:
        self.packet(True, "S")
        self.cseq += 1
        self.packet(False, "SA")
        self.sseq += 1
        self.packet(True, "A")
        return self

    def send(self, client: bool, data: bytes, *, mss: int = 65000, ack: bool = True) -> list[Packet]:
        """Send `data` in segments of at most `mss`; the peer ACKs if asked."""
        out = []
        for i in range(0, len(data), mss):
            out.append(self.packet(client, "PA", data[i:i + mss]))
            if client:
                self.cseq += len(data[i:i + mss])
            else:
                self.sseq += len(data[i:i + mss])
        if ack:
            self.packet(not client, "A")
        return out

    def close(self) -> Flow:
        self.packet(True, "FA")
        self.cseq += 1
        self.packet(False, "FA")
        self.sseq += 1
        self.packet(True, "A")
        return self


MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def ether(pkts: list[Packet]) -> list[Packet]:
    out = []
    for p in pkts:
        e = Ether(src=MAC1, dst=MAC2) / p
        e.time = p.time
        out.append(e)
    return out


def write(path: Path, pkts: list[Packet], link: str = "ether") -> Path:
    """Write IP packets with a given link layer, in pcap (or pcapng for `*ng`)."""
    wrap: dict[str, Callable[[Packet], Packet]] = {
        # Explicit MACs: otherwise scapy tries neighbour discovery for IPv6 (seconds).
        "ether": lambda p: Ether(src=MAC1, dst=MAC2) / p,
        "vlan": lambda p: Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=7) / p,
        "sll": lambda p: CookedLinux(proto=0x86DD if p.version == 6 else 0x0800) / p,
        "sll2": lambda p: CookedLinuxV2(proto=0x86DD if p.version == 6 else 0x0800) / p,
        "null": lambda p: Loopback(type=24 if p.version == 6 else 2) / p,
        "raw": lambda p: p,
    }
    framed = []
    for p in pkts:
        f = wrap[link.removesuffix("ng")](p)
        f.time = p.time
        framed.append(f)
    if link.endswith("ng"):
        wrpcapng(str(path), framed)
    else:
        wrpcap(str(path), framed, linktype=101 if link == "raw" else None)
    return path


REQ1 = b"GET /users/1?full=1 HTTP/1.1\r\nHost: api.test\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n"
RESP1 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\": 1}\r\n"
REQ2 = b"POST /orders HTTP/1.1\r\nHost: api.test\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
RESP2 = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"


def simple(flow: Flow) -> Flow:
    flow.handshake()
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    flow.send(True, REQ2)
    flow.send(False, RESP2)
    return flow.close()


def assert_simple(exchanges: list[Exchange]) -> None:
    assert [(e.request.method, e.request.target) for e in exchanges] == [
        ("GET", "/users/1?full=1"), ("POST", "/orders")]
    first, second = exchanges
    assert first.request.headers == (("Host", "api.test"), ("X-Dup", "a"), ("X-Dup", "b"))
    assert first.recorded is not None and first.recorded.status == 200
    assert first.recorded.body == RESP1.split(b"\r\n\r\n", 1)[1]
    assert second.request.body == REQ2.split(b"\r\n\r\n", 1)[1]
    assert second.recorded is not None and (second.recorded.status, second.recorded.body) == (201, b"ok")
    assert all(not e.marks for e in exchanges)

