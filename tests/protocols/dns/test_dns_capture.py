"""DNS capture: query logs (every format) and pcaps (UDP, TCP in small and disordered segments)."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from shadowdiff.capture import detect_format, read_exchanges
from shadowdiff.cli.console import load_usage
from shadowdiff.protocols.dns.plugin import PROTOCOL
from shadowdiff.protocols.dns.logs import parse_line
from pcapflow import Flow, write

LOG_LINES = {
    "bind": "02-Dec-2026 12:00:00.123 queries: info: client @0x7f3a2c001234 192.0.2.1#53211 "
            "(www.example.com): query: www.example.com IN A +E(0)K (192.0.2.53)",
    "bind_tcp_do": "client @0x7f 192.0.2.1#53212 (example.com): query: example.com IN MX -ET(0)DK (192.0.2.53)",
    "unbound": "[1764676800] unbound[99:0] info: 192.0.2.1 api.example.com. AAAA IN",
    "dnsmasq": "Dec  2 12:00:02 host dnsmasq[812]: query[AAAA] mail.example.com from 192.0.2.1",
    "kresd": "[plan] plan 'sip.example.com.' type 'A' uid [33242.00]",
    "knot": "2026-12-02T12:00:00+0000 info: [example.com.] query, remote 192.0.2.1@53211, qname www.example.com., qtype A",
    "list": "www.example.com A",
    "list_class": "nope.example.com. IN TXT",
}


def test_every_log_format_gives_its_query() -> None:
    got = {name: parse_line(line) for name, line in LOG_LINES.items()}
    assert {n: (q.name.rstrip("."), q.qtype) for n, q in got.items() if q} == {
        "bind": ("www.example.com", "A"), "bind_tcp_do": ("example.com", "MX"),
        "unbound": ("api.example.com", "AAAA"), "dnsmasq": ("mail.example.com", "AAAA"),
        "kresd": ("sip.example.com", "A"), "knot": ("www.example.com", "A"),
        "list": ("www.example.com", "A"), "list_class": ("nope.example.com", "TXT")}
    assert got["bind"].rd and not got["bind_tcp_do"].rd
    assert got["bind_tcp_do"].tcp and got["bind_tcp_do"].dnssec
    assert got["bind"].seen_at == pytest.approx(1796212800.0)
    assert parse_line("GET /index.html HTTP/1.1") is None and parse_line("www.example.com NOTATYPE") is None


def test_capture_dnslog_rebuilds_queries_and_counts_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "queries.log"
    log.write_text("\n".join([*LOG_LINES.values(), "garbage line", "x" * 300 + " A"]) + "\n")
    assert detect_format(log) == "dnslog"
    stats: dict = {}
    exchanges = list(read_exchanges(log, stats=stats))
    assert len(exchanges) == 8 and stats["skipped_lines"] == 2
    mx = exchanges[1].request
    query = dns.message.from_wire(mx.body)
    assert mx.header("transport") == "tcp" and query.ednsflags & dns.flags.DO and query.edns == 0
    assert PROTOCOL.endpoint_key(exchanges[0].request) == "A {host}.example.com"
    usage, _ = load_usage([str(log)])
    assert usage.source == "query_log" and usage.counts["A {host}.example.com"] == 4
    assert usage.malformed == 2


def _answer(query: dns.message.Message, *records: str) -> bytes:
    r = dns.message.make_response(query)
    for text in records:
        r.answer.append(dns.rrset.from_text(*text.split(" ", 4)))
    return r.to_wire()


def _udp(src: str, sport: int, dst: str, dport: int, wire: bytes, t: float) -> object:
    pkt = IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(wire)
    pkt.time = t
    return pkt


def _framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def test_pcap_udp_and_tcp_with_every_oddity(tmp_path: Path) -> None:
    q1 = dns.message.make_query("www.example.com", "A")
    q2 = dns.message.make_query("unanswered.example.com", "A")
    q3 = dns.message.make_query("odd-port.example.com", "A")
    pkts = [
        _udp("10.0.0.1", 40001, "10.0.0.2", 53, q1.to_wire(), 1.0),
        _udp("10.0.0.2", 53, "10.0.0.1", 40001, _answer(q1, "www.example.com. 300 IN A 192.0.2.1"), 1.01),
        _udp("10.0.0.1", 40002, "10.0.0.2", 53, q2.to_wire(), 1.1),
        _udp("10.0.0.1", 40003, "10.0.0.2", 53, b"\x00\x01\x00\x00\x00", 1.2),  # truncated
        _udp("10.0.0.1", 40004, "10.0.0.2", 5300, q3.to_wire(), 1.3),  # found by content
        _udp("10.0.0.2", 5300, "10.0.0.1", 40004, _answer(q3, "odd-port.example.com. 60 IN A 192.0.2.3"), 1.31),
        _udp("10.0.0.1", 40005, "10.0.0.2", 443, b"\x17" * 40, 1.4),  # other UDP traffic: ignored
    ]
    # TCP: two queries on one connection, the answers cut into 7-byte segments, one
    # segment swapped with the next and one sent twice.
    t1 = dns.message.make_query("big.example.com", "TXT")
    t2 = dns.message.make_query("mail.example.com", "MX")
    flow = Flow(sport=53, t0=2.0).handshake()
    flow.send(True, _framed(t1.to_wire(), t2.to_wire()), mss=9)
    segs = flow.send(False, _framed(_answer(t1, 'big.example.com. 300 IN TXT "a" "b"'),
                                    _answer(t2, "mail.example.com. 300 IN MX 10 mx.example.com.")), mss=7)
    segs[2].time, segs[3].time = segs[3].time, segs[2].time
    again = segs[1].copy()
    again.time = segs[4].time + 0.0001
    flow.pkts.append(again)
    flow.close()
    # A second connection whose answer is cut mid-message.
    t3 = dns.message.make_query("cut.example.com", "A")
    cut = Flow(cport=40100, sport=53, t0=3.0).handshake()
    cut.send(True, _framed(t3.to_wire()))
    cut.send(False, _framed(_answer(t3, "cut.example.com. 300 IN A 192.0.2.9"))[:20])
    cut.close()
    path = write(tmp_path / "dns.pcap", sorted(pkts + flow.pkts + cut.pkts, key=lambda p: float(p.time)))
    stats: dict = {}
    exchanges = list(read_exchanges(path, stats=stats))
    by_name = {ex.request.target: ex for ex in exchanges}
    assert set(by_name) == {"www.example.com.", "unanswered.example.com.", "odd-port.example.com.",
                            "big.example.com.", "mail.example.com.", "cut.example.com."}
    assert by_name["unanswered.example.com."].recorded is None
    assert by_name["cut.example.com."].recorded is None
    txt = PROTOCOL.lift(by_name["big.example.com."].recorded)["body"]["answer"]
    assert txt == {"big.example.com. TXT": {"ttl": 300, "records": {'"a" "b"': True}}}
    assert by_name["mail.example.com."].request.header("transport") == "tcp"
    assert by_name["odd-port.example.com."].recorded is not None
    assert stats["dns_queries"] == 6 and stats["dns_answers"] == 4
    assert stats["dns_skip_reasons"] == {"udp query truncated header": 1, "tcp stream cut mid-answer": 1}


def test_pcap_zone_transfer_over_many_messages(tmp_path: Path) -> None:
    q = dns.message.make_query("example.com", "AXFR")
    soa = "example.com. 300 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5"
    parts = [_answer(q, soa, "www.example.com. 300 IN A 192.0.2.1"),
             _answer(q, "mail.example.com. 300 IN A 192.0.2.2", soa)]
    flow = Flow(sport=53, t0=5.0).handshake()
    flow.send(True, _framed(q.to_wire()))
    flow.send(False, _framed(*parts), mss=50)
    flow.close()
    (ex,) = list(read_exchanges(write(tmp_path / "axfr.pcap", flow.pkts)))
    assert ex.request.method == "AXFR"
    answer = PROTOCOL.lift(ex.recorded)["body"]["answer"]
    assert set(answer) == {"example.com. SOA", "www.example.com. A", "mail.example.com. A"}


def test_pcap_garbage_payloads_never_raise(tmp_path: Path) -> None:
    import random
    rng = random.Random(13)
    pkts = [_udp("10.0.0.1", 40000 + i, "10.0.0.2", 53, rng.randbytes(rng.randrange(0, 80)), i)
            for i in range(200)]
    stats: dict = {}
    assert list(read_exchanges(write(tmp_path / "junk.pcap", pkts), stats=stats)) == []
    assert stats["dns_skipped"] >= 190


def test_pcap_tcp_on_any_port_by_content(tmp_path: Path) -> None:
    q = dns.message.make_query("www.example.com", "A")
    flow = Flow(sport=5300, t0=7.0).handshake()
    flow.send(True, _framed(q.to_wire()))
    flow.send(False, _framed(_answer(q, "www.example.com. 300 IN A 192.0.2.1")), mss=11)
    flow.close()
    other = Flow(cport=40200, sport=8443, t0=8.0).handshake()  # not DNS: left alone
    other.send(True, b"\x16\x03\x01" + bytes(60))
    other.close()
    stats: dict = {}
    exchanges = [ex for ex in read_exchanges(write(tmp_path / "p.pcap", flow.pkts + other.pkts), stats=stats)
                 if ex.request.protocol == "dns"]
    assert [(ex.request.target, ex.request.header("transport")) for ex in exchanges] == [
        ("www.example.com.", "tcp")]
    assert PROTOCOL.lift(exchanges[0].recorded)["body"]["answer"]["www.example.com. A"]["records"] == {
        "192.0.2.1": True}
    assert "dns_skipped" not in stats
