"""Tests for shadowdiff/capture/pcap.py and the layers under HTTP (packet.py, tcp.py, order.py).

Real captures: tests/data/curl_lo.pcap and curl_any.pcapng were written by tcpdump while
curl talked to an aiohttp server (tests/data/make_pcaps.py); an integration test makes a
fresh one the same way and checks the request count against tshark. Corner cases are
built with scapy (tests/pcapflow.py), one TCP conversation at a time, with explicit sequence
numbers. HTTP parsing and pairing: tests/capture/pcap/test_capture_http1.py.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapflow import (
    DATA,
    FIXTURES,
    REQ1,
    REQ2,
    RESP1,
    RESP2,
    Flow,
    assert_simple,
    ether,
    read_all,
    recipe,
    simple,
    write,
)
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.packet import Raw
from scapy.utils import wrpcap

from shadowdiff.capture import read_exchanges
from shadowdiff.capture.jsonl import read_capture, read_header
from shadowdiff.capture.pcap.frames import sniff
from shadowdiff.capture.pcap.reader import import_pcap, read_pcap
from shadowdiff.errors import CaptureError
from shadowdiff.model import Exchange


# -- real captures ------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_tcpdump_fixture_matches_what_the_recipe_sent(path: Path) -> None:
    exchanges, stats = read_all(path)
    sent = recipe().expected_requests()
    assert [(e.request.method, e.request.target) for e in exchanges] == sent
    assert [e.id for e in exchanges] == [f"pcap-{i}" for i in range(len(sent))]
    assert all(e.recorded is not None and e.recorded.status == 200 and not e.marks
               for e in exchanges)
    by_target = {(e.request.method, e.request.target): e for e in exchanges}
    assert by_target[("GET", "/stream")].recorded.body == b"part 0\npart 1\npart 2\n"  # type: ignore[union-attr]
    assert by_target[("HEAD", "/items/9")].recorded.body == b""  # type: ignore[union-attr]
    uploads = [e for e in exchanges if e.request.method == "POST"]
    assert [len(e.request.body) for e in uploads] == [15, len(recipe().UPLOAD), len(recipe().UPLOAD)]
    assert all(e.seen_at > 1.6e9 and 0 < e.recorded.elapsed_s < 5  # type: ignore[union-attr]
               for e in exchanges)
    assert stats["requests"] == stats["responses"] == len(sent)
    assert stats["connections"] == len(recipe().curl_runs("", "")) + 1
    assert stats["skipped_packets"] == stats["incomplete"] == stats["skipped_bytes"] == 0



def _tshark_uris(tshark: str, path: Path, port: int) -> list[str]:
    out = subprocess.run([tshark, "-r", str(path), "-d", f"tcp.port=={port},http", "-Y",
                          "http.request", "-T", "fields", "-e", "http.request.uri"],
                         capture_output=True, timeout=60, check=True).stdout.decode()
    # One line per frame; several pipelined requests in one frame are comma-joined.
    return [uri for line in out.splitlines() if line for uri in line.split(",")]


@pytest.mark.integration
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_request_count_matches_tshark(path: Path) -> None:
    from conftest import require_tool
    tshark = require_tool("tshark")
    port = int(path.with_suffix(".port").read_text())
    exchanges, _ = read_all(path)
    assert [e.request.target for e in exchanges] == _tshark_uris(tshark, path, port)


@pytest.mark.integration
def test_fresh_tcpdump_capture_of_curl_matches_tshark(tmp_path: Path) -> None:
    from conftest import require_tool
    for tool in ("tcpdump", "curl"):
        require_tool(tool)
    tshark = require_tool("tshark")
    if os.geteuid() != 0:
        if os.environ.get("SHADOWDIFF_REQUIRE_INTEGRATION") == "1":
            pytest.fail("SHADOWDIFF_REQUIRE_INTEGRATION=1 but capturing on lo needs root")
        pytest.skip("capturing on lo needs root")
    out = tmp_path / "fresh.pcap"
    port = recipe().record(out)
    exchanges, stats = read_all(out, ports=[port])
    uris = _tshark_uris(tshark, out, port)
    assert len(exchanges) == len(uris) == len(recipe().expected_requests())
    assert [e.request.target for e in exchanges] == uris
    assert stats["responses"] == len(exchanges) and stats["incomplete"] == 0



# -- link layers and IP versions ----------------------------------------------------------


@pytest.mark.parametrize("link", ["ether", "vlan", "sll", "sll2", "null", "raw", "etherng",
                                  "sll2ng"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_link_layers_and_ip_versions(tmp_path: Path, link: str, v6: bool) -> None:
    path = write(tmp_path / "c.pcap", simple(Flow(v6=v6)).pkts, link)
    exchanges, stats = read_all(path)
    assert_simple(exchanges)
    assert stats["packets"] == len(simple(Flow(v6=v6)).pkts) and stats["skipped_packets"] == 0


def test_ipv6_extension_headers_are_skipped(tmp_path: Path) -> None:
    flow = simple(Flow(v6=True))
    pkts = []
    for p in flow.pkts:
        q = IPv6(src=p.src, dst=p.dst) / IPv6ExtHdrHopByHop() / p[TCP]
        q.time = p.time
        pkts.append(q)
    assert_simple(read_all(write(tmp_path / "c.pcap", pkts))[0])


def test_seen_at_is_the_request_first_packet_and_elapsed_runs_to_response_end(tmp_path: Path) -> None:
    flow = Flow().handshake()
    first = flow.send(True, REQ1, mss=20)[0]
    last = flow.send(False, RESP1, mss=10)[-1]
    flow.close()
    (ex,), _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.seen_at == pytest.approx(float(first.time))
    assert ex.recorded is not None
    assert ex.recorded.elapsed_s == pytest.approx(float(last.time - first.time))


# -- TCP reassembly -----------------------------------------------------------------------


def test_small_segments(tmp_path: Path) -> None:
    body = bytes(range(256)) * 40  # 10 KB, several MTU-1500 segments
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    flow = Flow().handshake()
    flow.send(True, REQ1, mss=7)
    flow.send(False, head + body, mss=1448)
    flow.close()
    (ex,), stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.recorded is not None and ex.recorded.body == body and not ex.marks


def test_out_of_order_segments(tmp_path: Path) -> None:
    flow = Flow().handshake()
    pkts = list(flow.pkts)
    for client, msg in ((True, REQ1), (False, RESP1), (True, REQ2), (False, RESP2)):
        flow.pkts = []
        segs = flow.send(client, msg, mss=9)
        # Each message's segments arrive last-first; the ACK after them stays last.
        pkts += list(reversed(segs)) + [p for p in flow.pkts if p not in segs]
    flow.pkts = []
    pkts += flow.close().pkts
    exchanges, stats = read_all(write(tmp_path / "c.pcap", pkts))
    assert_simple(exchanges)
    assert stats["gaps"] == 0 and stats["retransmitted_bytes"] == 0


def test_retransmitted_and_overlapping_segments(tmp_path: Path) -> None:
    flow = Flow().handshake()
    start = flow.cseq
    flow.packet(True, "PA", REQ1[:30])
    flow.packet(True, "PA", REQ1[:30])           # plain retransmission
    flow.packet(True, "PA", REQ1[20:50], seq=start + 20)  # overlaps 10 old bytes
    flow.packet(True, "PA", REQ1[50:], seq=start + 50)
    flow.cseq += len(REQ1)
    flow.send(False, RESP1)
    flow.send(False, b"", ack=False)
    flow.close()
    (ex,), stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.request.headers[0] == ("Host", "api.test") and not ex.marks
    assert ex.recorded is not None and ex.recorded.status == 200
    assert stats["retransmitted_bytes"] == 40


def test_missing_segment_marks_the_message_incomplete_and_the_next_one_survives(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ1)
    segs = flow.send(False, RESP1, mss=40)      # the client ACKs all of it...
    flow.pkts.remove(segs[1])                    # ...but the capture lost the middle
    flow.send(True, REQ2)
    flow.send(False, RESP2)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.request.target for e in exchanges] == ["/users/1?full=1", "/orders"]
    assert exchanges[0].marks == ("incomplete",) and exchanges[0].recorded is None
    assert exchanges[1].recorded is not None and exchanges[1].recorded.body == b"ok"
    assert not exchanges[1].marks
    assert stats["gaps"] == 1 and stats["incomplete"] == 1


def test_missing_request_body_segment(tmp_path: Path) -> None:
    flow = Flow().handshake()
    segs = flow.send(True, REQ2, mss=len(REQ2) - 3)
    flow.pkts.remove(segs[1])
    flow.send(False, RESP2)
    flow.close()
    (ex,), stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert "incomplete" in ex.marks and ex.request.body == REQ2.split(b"\r\n\r\n")[1][:4]


def test_snaplen_cut_frames_make_the_message_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", simple(Flow()).pkts)
    cut = tmp_path / "cut.pcap"
    # Rewrite with a 90-byte snaplen, as `tcpdump -s 90` would have.
    import struct
    raw = path.read_bytes()
    out, pos = bytearray(raw[:24]), 24
    while pos < len(raw):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", raw, pos)
        keep = min(caplen, 90)
        out += struct.pack("<IIII", sec, usec, keep, wirelen) + raw[pos + 16:pos + 16 + keep]
        pos += 16 + caplen
    cut.write_bytes(bytes(out))
    exchanges, stats = read_all(cut)
    assert stats["skipped_packets"] == 0
    assert all("incomplete" in e.marks or e.recorded is None for e in exchanges)


def test_connection_seen_mid_way(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ2[:-3], mss=len(REQ2))
    pre = len(flow.pkts)
    flow.send(True, REQ2[-3:])                 # the capture starts here, inside a body
    flow.send(False, RESP2[:10])
    flow.send(False, RESP2[10:])
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts[pre:]))
    assert [e.request.target for e in exchanges] == ["/users/1?full=1"]
    assert exchanges[0].recorded is not None and exchanges[0].recorded.status == 200
    assert stats["skipped_bytes"] == 3  # the tail of the body the capture began in
    assert stats["orphan_responses"] == 1  # the answer to the request not captured
    assert stats["connections"] == 1


def test_connection_seen_mid_way_with_port_hint_and_high_server_port(tmp_path: Path) -> None:
    flow = Flow(cport=80, sport=50000)  # a server on a port above its client's: needs `ports`
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    exchanges, _ = read_all(write(tmp_path / "c.pcap", flow.pkts), ports=[50000])
    assert [e.request.target for e in exchanges] == ["/users/1?full=1"]
    assert exchanges[0].recorded is not None


def test_rst_ends_the_connection(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ1)
    flow.packet(False, "RA")
    (ex,), stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.marks == ("no_response",) and ex.recorded is None
    assert stats["no_response"] == 1


def test_ids_follow_request_start_across_connections(tmp_path: Path) -> None:
    a, b = Flow(cport=40001, t0=100.0), Flow(cport=40002, t0=100.0005)
    a.handshake()
    b.handshake()
    pkts = sorted(a.pkts + b.pkts, key=lambda p: float(p.time))
    a.send(True, REQ1)          # starts first...
    b.send(True, REQ2)
    b.send(False, RESP2)        # ...but b is answered first
    a.send(False, RESP1)
    a.pkts = a.pkts[3:]
    b.pkts = b.pkts[3:]
    pkts += sorted(a.pkts + b.pkts, key=lambda p: float(p.time))
    exchanges, _ = read_all(write(tmp_path / "c.pcap", pkts))
    assert [(e.id, e.request.target) for e in exchanges] == [
        ("pcap-0", "/users/1?full=1"), ("pcap-1", "/orders")]
    assert exchanges[0].seen_at < exchanges[1].seen_at


def test_idle_connections_are_flushed(tmp_path: Path) -> None:
    a = Flow(cport=40001, t0=100.0).handshake()
    a.send(True, REQ1)                      # never answered
    b = Flow(cport=40002, t0=1000.0).handshake()
    b.send(True, REQ2)
    b.send(False, RESP2)
    seen = []
    for ex in read_pcap(write(tmp_path / "c.pcap", a.pkts + b.pkts), idle_s=60):
        seen.append(ex.request.target)
    assert seen == ["/users/1?full=1", "/orders"]



def test_non_http_and_filtered_traffic_is_counted(tmp_path: Path) -> None:
    tls = Flow(cport=40001, sport=443).handshake()
    tls.send(True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(300))
    tls.send(False, b"\x16\x03\x03\x00\x5a\x02" + os.urandom(90))
    tls.close()
    web = simple(Flow(cport=40002, sport=8080))
    path = write(tmp_path / "c.pcap", tls.pkts + web.pkts)
    exchanges, stats = read_all(path)
    assert_simple(exchanges)
    assert stats["connections"] == 2 and stats["non_http_connections"] == 1
    assert stats["skipped_bytes"] >= 300
    only, stats = read_all(path, ports=[443])
    assert only == [] and stats["skipped_packets"] == len(web.pkts)




# -- the file layer -----------------------------------------------------------------------


@pytest.mark.parametrize("head", [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                  b"\xa1\xb2\x3c\x4d",
                                  b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
                                  b"\x0a\x0d\x0d\x0a\x00\x00\x00\x1c\x1a\x2b\x3c\x4d"])
def test_sniff_accepts_every_pcap_magic(head: bytes) -> None:
    assert sniff(head)


@pytest.mark.parametrize("head", [b"", b"{\"log\"", b"\x1f\x8b\x08", b"\x0a\x0d\x0d\x0aXXXXXXXX"])
def test_sniff_rejects_others(head: bytes) -> None:
    assert not sniff(head)


def test_nanosecond_big_endian_and_gzip_files(tmp_path: Path) -> None:
    pkts = ether(simple(Flow()).pkts)
    ns = tmp_path / "ns.pcap"
    wrpcap(str(ns), pkts, nano=True, endianness=">")
    assert ns.read_bytes()[:4] == b"\xa1\xb2\x3c\x4d"
    exchanges, _ = read_all(ns)
    assert_simple(exchanges)
    assert exchanges[0].seen_at == pytest.approx(float(pkts[3].time), abs=1e-6)
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(ns.read_bytes()))
    assert_simple(read_all(gz)[0])


def test_truncated_file_keeps_what_was_complete(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", simple(Flow()).pkts)
    data = path.read_bytes()
    for cut in (len(data) - 5, len(data) - 30):
        (tmp_path / "t.pcap").write_bytes(data[:cut])
        exchanges, stats = read_all(tmp_path / "t.pcap")
        assert [e.request.target for e in exchanges] == ["/users/1?full=1", "/orders"]
        assert stats["truncated_bytes"] > 0


def test_truncated_pcapng_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", simple(Flow()).pkts, "etherng")
    data = path.read_bytes()
    (tmp_path / "t.pcapng").write_bytes(data[:-30])
    exchanges, stats = read_all(tmp_path / "t.pcapng")
    assert len(exchanges) == 2 and stats["truncated_bytes"] > 0


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2\xa1\x02\x00", b"hello world, not a pcap",
                                     b"\x0a\x0d\x0d\x0a\xff\xff"])
def test_unreadable_files_raise_capture_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        list(read_pcap(path))
    assert info.value.source == str(path) and info.value.position


def test_missing_file_and_unsupported_link_type(tmp_path: Path) -> None:
    with pytest.raises(CaptureError):
        list(read_pcap(tmp_path / "nope.pcap"))
    path = tmp_path / "c.pcap"
    wrpcap(str(path), [Raw(b"x" * 40)], linktype=147)  # USER0
    with pytest.raises(CaptureError, match="link-layer type 147"):
        list(read_pcap(path))


def test_corrupt_record_length_is_a_capture_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", simple(Flow()).pkts)
    data = bytearray(path.read_bytes())
    data[24 + 8:24 + 12] = (10 ** 9).to_bytes(4, "little")  # first record's caplen
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="packet 1, byte 24:"):
        list(read_pcap(path))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _gzip_cut_inside_the_deflate_data() -> bytes:
    whole = gzip.compress((DATA / "curl_lo.pcap").read_bytes())
    return whole[:40] + bytes(64)  # header + some blocks, then a broken one


_FAILING_FILES = {
    "gzip-magic-only": b"\x1f\x8b",
    "gzip-not-deflate": b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 40,
    "gzip-cut-header": gzip.compress(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00")[:-9],
    "gzip-corrupt-stream": _gzip_cut_inside_the_deflate_data(),
    "pcap-short-header": b"\xd4\xc3\xb2\xa1\x02\x00",
    "pcap-link-type-147": b"\xd4\xc3\xb2\xa1" + bytes(12) + b"\xff\xff\x00\x00\x93\x00\x00\x00",
    "pcapng-bad-byte-order": b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00XXXX" + bytes(16),
    "pcapng-short": b"\x0a\x0d\x0d\x0a\x1c\x00",
}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files via /proc")
@pytest.mark.parametrize("name", list(_FAILING_FILES))
def test_every_failing_open_closes_the_file(tmp_path: Path, name: str) -> None:
    # Regression: a file that passed the sniff but failed later in opening stayed open
    # (a ResourceWarning, an error under filterwarnings=error, in the deep fuzz profile).
    path = tmp_path / "bad.pcap"
    path.write_bytes(_FAILING_FILES[name])
    before = _open_fds()
    with pytest.raises(CaptureError) as info:
        list(read_exchanges(path, fmt="pcap"))
    assert info.value.source == str(path) and info.value.position
    assert _open_fds() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files via /proc")
def test_abandoned_or_failing_iteration_closes_the_file(tmp_path: Path) -> None:
    before = _open_fds()
    it = read_pcap(FIXTURES[0])
    next(it)
    assert _open_fds() == before + 1
    it.close()  # what a consumer that stops early (or its garbage collection) does
    assert _open_fds() == before
    path = tmp_path / "c.pcap"
    data = bytearray(FIXTURES[0].read_bytes())
    pos = 24
    for _ in range(20):  # the 21st record's caplen becomes impossible
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
    data[pos + 8:pos + 12] = (10 ** 9).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=f"packet 21, byte {pos}:"):
        list(read_pcap(path))
    assert _open_fds() == before


def test_import_pcap_writes_a_capture_with_stats(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl.gz"
    stats = import_pcap(FIXTURES[0], out)
    header = read_header(out)
    assert header["stats"] == stats and header["exchanges"] == stats["requests"]
    assert header["source"] == "pcap:curl_lo.pcap"
    def key(e: Exchange) -> tuple[Any, ...]:
        r = e.recorded
        return (e.id, e.source, e.request, e.marks, r and (r.status, r.headers, r.body, r.reason),
                round(e.seen_at, 6), r and round(r.elapsed_s, 6))
    assert [key(e) for e in read_capture(out)] == [key(e) for e in read_pcap(FIXTURES[0])]


# -- fuzz ---------------------------------------------------------------------------------

_SEED = FIXTURES[0].read_bytes()


def _must_be_clean(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    stats: dict[str, Any] = {}
    try:
        exchanges = list(read_pcap(path, stats=stats))
    except CaptureError as exc:
        assert exc.source == str(path)
        return
    assert stats["requests"] == len(exchanges)
    assert stats["packets"] >= stats["skipped_packets"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    _must_be_clean(tmp_path, data, "random.pcap")
    _must_be_clean(tmp_path, b"\xd4\xc3\xb2\xa1" + data, "magic.pcap")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), max_size=12),
       st.integers(0, len(_SEED)))
def test_fuzz_mutated_pcap(tmp_path: Path, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_SEED)
    for pos, value in flips:
        data[pos] = value
    _must_be_clean(tmp_path, bytes(data[:max(cut, 24)]), "mutated.pcap")