"""Tests for shadowdiff/capture/http1.py: HTTP/1.x messages cut out of TCP streams, and pairing.

Each conversation is built with scapy (tests/pcapflow.py) and read back through the whole
importer, as a user's pcap would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pcapflow import FIXTURES, REQ1, REQ2, RESP1, RESP2, Flow, read_all, write


def test_fixture_holds_an_interim_100_continue_that_is_skipped() -> None:
    data = FIXTURES[0].read_bytes()
    assert b"HTTP/1.1 100 Continue" in data  # the recipe's Expect: 100-continue upload
    exchanges, _ = read_all(FIXTURES[0])
    statuses = [e.recorded.status for e in exchanges if e.recorded is not None]
    assert 100 not in statuses and len(statuses) == len(exchanges)


# -- HTTP ---------------------------------------------------------------------------------


def test_pipelined_requests_pair_in_order(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ1 + REQ2 + REQ1)
    flow.send(False, RESP1 + RESP2 + RESP1)
    flow.close()
    exchanges, _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [(e.request.target, e.recorded.status) for e in exchanges] == [  # type: ignore[union-attr]
        ("/users/1?full=1", 200), ("/orders", 201), ("/users/1?full=1", 200)]


def test_chunked_response_and_trailer(tmp_path: Path) -> None:
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    flow = Flow().handshake()
    flow.send(True, REQ1)
    flow.send(False, resp, mss=11)
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    flow.close()
    exchanges, _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert exchanges[0].recorded is not None and exchanges[0].recorded.body == b"hello world"
    assert exchanges[1].recorded is not None and exchanges[1].recorded.status == 200


def test_expect_100_continue(tmp_path: Path) -> None:
    head = b"PUT /blob HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    flow = Flow().handshake()
    flow.send(True, head)
    flow.send(False, b"HTTP/1.1 100 Continue\r\n\r\n")
    flow.send(True, b"data")
    flow.send(False, RESP2)
    flow.close()
    (ex,), _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.request.body == b"data" and ex.recorded is not None
    assert ex.recorded.status == 201 and not ex.marks


def test_head_response_has_no_body_and_close_delimited_response(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
    flow.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
    flow.send(True, b"GET /old HTTP/1.0\r\n\r\n")
    flow.send(False, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
    flow.close()
    exchanges, _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.recorded.body for e in exchanges] == [b"", b"until close"]  # type: ignore[union-attr]
    assert all(not e.marks for e in exchanges)


def test_close_delimited_response_without_fin_is_incomplete(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, b"GET /old HTTP/1.0\r\n\r\n")
    flow.send(False, b"HTTP/1.0 200 OK\r\n\r\npartial")
    (ex,), _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.marks == ("incomplete",) and ex.recorded is None


def test_request_without_response(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    flow.send(True, REQ2)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.marks for e in exchanges] == [(), ("no_response",)]
    assert exchanges[1].request.body == b'{"a":1}'
    assert (stats["requests"], stats["responses"], stats["no_response"]) == (2, 1, 1)

def test_garbage_between_messages_is_skipped(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, b"NOT HTTP AT ALL\r\n\r\n" + REQ1)
    flow.send(False, RESP1)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.request.target for e in exchanges] == ["/users/1?full=1"]
    assert exchanges[0].recorded is not None and stats["skipped_bytes"] > 0



def test_garbage_between_pipelined_requests_loses_neither_neighbour(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, REQ1 + b"NOT HTTP AT ALL\r\n\r\n" + REQ2)
    flow.send(False, RESP1 + RESP2)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.request.target for e in exchanges] == ["/users/1?full=1", "/orders"]
    assert exchanges[1].request.body == b'{"a":1}'
    assert stats["skipped_bytes"] == len(b"NOT HTTP AT ALL\r\n\r\n")


@pytest.mark.parametrize("split", [0, 2, 3, 4], ids=lambda n: f"cut{n}")
def test_head_answer_pipelined_after_a_get_ends_at_its_head(tmp_path: Path, split: int) -> None:
    # llhttp would wait for the 500 bytes a HEAD answer announces; the next response must
    # still be found, wherever the segment boundary falls in the head's CRLFCRLF.
    head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"
    stream = RESP1 + head_resp + RESP2
    at = len(RESP1) + len(head_resp) - split
    flow = Flow().handshake()
    flow.send(True, REQ1 + b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n" + REQ2)
    flow.send(False, stream[:at])
    flow.send(False, stream[at:])
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [(e.request.method, e.recorded.status, e.recorded.body) for e in exchanges] == [  # type: ignore[union-attr]
        ("GET", 200, b'{"id": 1}\r\n'), ("HEAD", 200, b""), ("POST", 201, b"ok")]
    assert all(not e.marks for e in exchanges) and stats["skipped_bytes"] == 0


def test_header_values_lose_trailing_whitespace_and_trailers_are_not_headers(tmp_path: Path) -> None:
    resp = (b"HTTP/1.1 200 OK\r\nX-Pad: v  \t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n")
    flow = Flow().handshake()
    flow.send(True, b"GET /t HTTP/1.1\r\nHost:  h \r\n\r\n")
    flow.send(False, resp)
    flow.close()
    (ex,), _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.request.headers == (("Host", "h"),)
    assert ex.recorded is not None and ex.recorded.reason == "OK"
    assert ex.recorded.headers == (("X-Pad", "v"), ("Transfer-Encoding", "chunked"))


def test_requests_after_connection_close_are_still_read(tmp_path: Path) -> None:
    # A passive reader records what was sent, even where a server should have stopped.
    first = b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"
    flow = Flow().handshake()
    flow.send(True, first + REQ1)
    flow.send(False, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" + RESP1)
    flow.close()
    exchanges, _ = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [(e.request.target, e.recorded.status) for e in exchanges] == [  # type: ignore[union-attr]
        ("/a", 200), ("/users/1?full=1", 200)]


def test_switching_protocols_ends_http_on_the_connection(tmp_path: Path) -> None:
    flow = Flow().handshake()
    flow.send(True, b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    flow.send(False, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n\x81\x05hello")
    flow.send(True, b"\x81\x85abcd" + bytes(5))
    flow.close()
    (ex,), stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert ex.recorded is not None and ex.recorded.status == 101 and not ex.marks
    assert stats["skipped_bytes"] == 7 + 11 and stats["incomplete"] == 0


def test_unknown_method_is_skipped_not_guessed(tmp_path: Path) -> None:
    # llhttp knows the registered methods only; the next request is found again.
    flow = Flow().handshake()
    flow.send(True, b"FROB /x HTTP/1.1\r\nHost: h\r\n\r\n" + REQ1)
    flow.send(False, RESP1)
    flow.close()
    exchanges, stats = read_all(write(tmp_path / "c.pcap", flow.pkts))
    assert [e.request.target for e in exchanges] == ["/users/1?full=1"]
    assert stats["skipped_bytes"] == len(b"FROB /x HTTP/1.1\r\nHost: h\r\n\r\n")
