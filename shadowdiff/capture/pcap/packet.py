"""Capture stage, pcap importer, layer 1: one captured frame -> one TCP segment.

`pcap.py` reads frames from the file; this module peels the link layer (Ethernet with
802.1Q/802.1ad tags, Linux cooked SLL and SLL2, BSD loopback/NULL, raw IP), IPv4 or IPv6
(extension headers skipped) and the TCP header with `struct`, and hands a `Segment` to
`tcp.py`. Full scapy dissection runs at ~6.5 MB/s; these unpackers are what lets the
importer run at hundreds of MB/s, so they avoid objects and keep to slices and ints.

Anything that is not a whole TCP header inside IP (ARP, UDP, fragments, a frame cut
short) decodes to None and the caller counts it as a skipped packet.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple


class Segment(NamedTuple):
    """One TCP segment, addresses as raw bytes (4 or 16 long), ports as ints."""

    src: bytes
    sport: int
    dst: bytes
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    """The captured payload; shorter than `wire_len` when the frame was cut (snaplen)."""
    wire_len: int
    """Payload length on the wire, from the IP length field."""


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

Decoder = Callable[[bytes], "Segment | None"]

# NamedTuple's own constructor is a Python function; building the tuple directly is ~3x
# cheaper, and the decoders run once per packet.
_seg = tuple.__new__
_TCP = struct.Struct(">HHIIH")
# Ethernet + IPv4 without options + TCP, the common frame, in one unpack: total length,
# fragment field, protocol, addresses, then ports, seq, ack, data offset and flags.
_ETH_IPV4_TCP = struct.Struct(">2xH2xHxB2x4s4sHHIIH")
_U16 = struct.Struct(">H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct(">I")

_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
# IPv6 extension headers we step over: hop-by-hop, routing, destination options, mobility.
_IPV6_SKIPPABLE = (0, 43, 60, 135)
_IPV6_FRAGMENT, _IPV6_AH = 44, 51
# BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 differs per OS.
_AF_INET6 = (10, 24, 28, 30)


def _tcp(data: bytes, off: int, end: int, src: bytes, dst: bytes) -> Segment | None:
    if end - off < 20 or len(data) < off + 20:
        return None
    sport, dport, seq, ack, offflags = _TCP.unpack_from(data, off)
    doff = (offflags >> 12) * 4
    if doff < 20 or off + doff > end:
        return None
    start = off + doff
    return _seg(Segment, (src, sport, dst, dport, seq, ack, offflags & 0x3F, data[start:end],
                          end - start))


def _ipv4(data: bytes, off: int) -> Segment | None:
    if len(data) < off + 20:
        return None
    ihl = (data[off] & 0x0F) * 4
    if ihl < 20 or data[off + 9] != 6:
        return None
    # A fragment (offset != 0 or more-fragments set) cannot be read as TCP on its own.
    if _U16.unpack_from(data, off + 6)[0] & 0x3FFF:
        return None
    total = _U16.unpack_from(data, off + 2)[0]
    # 0 appears on captures taken before segmentation offload; trust the frame then.
    # Otherwise the IP length is what trims Ethernet padding off short frames.
    end = off + total if total else len(data)
    if total and total < ihl:
        return None
    return _tcp(data, off + ihl, end, data[off + 12:off + 16], data[off + 16:off + 20])


def _ipv6(data: bytes, off: int) -> Segment | None:
    if len(data) < off + 40:
        return None
    plen = _U16.unpack_from(data, off + 4)[0]
    nxt = data[off + 6]
    src, dst = data[off + 8:off + 24], data[off + 24:off + 40]
    end = off + 40 + plen if plen else len(data)  # 0: jumbogram, trust the frame
    pos = off + 40
    for _ in range(8):  # a bounded walk: a crafted chain cannot loop us
        if nxt == 6:
            return _tcp(data, pos, end, src, dst)
        if len(data) < pos + 8:
            return None
        if nxt in _IPV6_SKIPPABLE:
            nxt, pos = data[pos], pos + (data[pos + 1] + 1) * 8
        elif nxt == _IPV6_FRAGMENT:
            if _U16.unpack_from(data, pos + 2)[0] & 0xFFF9:  # offset or M flag
                return None
            nxt, pos = data[pos], pos + 8
        elif nxt == _IPV6_AH:
            nxt, pos = data[pos], pos + (data[pos + 1] + 2) * 4
        else:
            return None  # ESP, no-next-header, UDP, ICMPv6, ...
    return None


def _by_ethertype(data: bytes, off: int, etype: int) -> Segment | None:
    if etype == _ETH_IPV4:
        return _ipv4(data, off)
    if etype == _ETH_IPV6:
        return _ipv6(data, off)
    return None


def _by_version(data: bytes, off: int) -> Segment | None:
    if len(data) <= off:
        return None
    version = data[off] >> 4
    if version == 4:
        return _ipv4(data, off)
    if version == 6:
        return _ipv6(data, off)
    return None


def decode_ethernet(data: bytes) -> Segment | None:
    """DLT_EN10MB, with any number (up to 4) of VLAN tags.

    Untagged IPv4 without options (nearly every frame) takes one unpack, here.
    """
    if len(data) < 54 or data[14] != 0x45 or data[12] != 8 or data[13] != 0:
        return _ethernet(data)
    total, frag, proto, src, dst, sport, dport, seq, ack, offflags = _ETH_IPV4_TCP.unpack_from(data, 14)
    if proto != 6 or frag & 0x3FFF:  # not TCP, or a fragment
        return None
    end = 14 + total if total else len(data)
    doff = (offflags >> 12) * 4
    if (total and total < 40) or doff < 20 or 34 + doff > end:
        return _ipv4(data, 14)  # odd lengths: let the careful path decide
    start = 34 + doff
    return _seg(Segment, (src, sport, dst, dport, seq, ack, offflags & 0x3F, data[start:end],
                          end - start))


def _ethernet(data: bytes) -> Segment | None:
    if len(data) < 14:
        return None
    etype, off = (data[12] << 8) | data[13], 14
    for _ in range(4):
        if etype not in _VLAN_TAGS:
            break
        if len(data) < off + 4:
            return None
        etype, off = (data[off + 2] << 8) | data[off + 3], off + 4
    return _by_ethertype(data, off, etype)


def decode_sll(data: bytes) -> Segment | None:
    """LINKTYPE_LINUX_SLL (tcpdump -i any before libpcap 1.10)."""
    if len(data) < 16:
        return None
    return _by_ethertype(data, 16, (data[14] << 8) | data[15])


def decode_sll2(data: bytes) -> Segment | None:
    """LINKTYPE_LINUX_SLL2 (tcpdump -i any since libpcap 1.10)."""
    if len(data) < 20:
        return None
    return _by_ethertype(data, 20, (data[0] << 8) | data[1])


def decode_null(data: bytes) -> Segment | None:
    """DLT_NULL / DLT_LOOP: a 4-byte address family, in the capturing host's byte order."""
    if len(data) < 4:
        return None
    le, be = _U32_LE.unpack_from(data)[0], _U32_BE.unpack_from(data)[0]
    if 2 in (le, be):
        return _ipv4(data, 4)
    if le in _AF_INET6 or be in _AF_INET6:
        return _ipv6(data, 4)
    return None


def decode_raw(data: bytes) -> Segment | None:
    """LINKTYPE_RAW and friends: the frame starts with the IP header."""
    return _by_version(data, 0)


#: Link-layer header type (pcap LINKTYPE_*) -> decoder.
DECODERS: dict[int, Decoder] = {
    0: decode_null,          # NULL (BSD loopback)
    1: decode_ethernet,      # EN10MB
    12: decode_raw,          # RAW on most BSDs
    14: decode_raw,          # RAW on OpenBSD
    101: decode_raw,         # RAW
    108: decode_null,        # LOOP (OpenBSD loopback)
    113: decode_sll,         # LINUX_SLL
    228: decode_raw,         # IPV4
    229: decode_raw,         # IPV6
    276: decode_sll2,        # LINUX_SLL2
}


def decoder_for(linktype: int) -> Decoder | None:
    """The segment decoder for a link type, or None when the type is not supported."""
    return DECODERS.get(linktype)
