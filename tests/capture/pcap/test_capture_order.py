"""Tests for shadowdiff/capture/order.py: what `Orderer._build` makes of a settled `Pending`.

The whole importer is tested through pcaps in tests/capture/pcap/test_capture_pcap.py; here the
exchanges built from hand-filled `Pending`s are compared field by field with records
built by keyword, so a faster `_build` cannot drift from what it made before.
"""

from __future__ import annotations

from typing import Any

from shadowdiff.capture.pcap.order import ABSENT, COMPLETE, INCOMPLETE, OPEN, Orderer, Pending
from shadowdiff.capture.pcap.tcp import Counters
from shadowdiff.model import Exchange, Request, Response


def _pending(ticket: int, **changes: Any) -> Pending:
    p = Pending(ticket, 10.0, 1000)
    p.method, p.target, p.headers = "GET", "/a?b=1", [("Host", "h"), ("X-Y", "z")]
    p.req_state = p.resp_state = COMPLETE
    p.status, p.reason, p.resp_headers = 200, "OK", [("Content-Length", "2")]
    p.resp_body, p.resp_len, p.end_ts = b"{}", 2, 10.5
    for name, value in changes.items():
        setattr(p, name, value)
    return p


def _released(*pendings: Pending) -> tuple[list[Exchange], Counters]:
    counters = Counters()
    orderer = Orderer("/some/dir/trace.pcap", counters)
    for p in pendings:
        orderer.done(p)
    orderer.flush()
    return orderer.ready, counters


def test_a_fresh_pending_is_open_and_empty() -> None:
    p = Pending(None, 1.5, 7)
    assert (p.ticket, p.start_ts, p.start_seq) == (None, 1.5, 7)
    assert (p.method, p.target, p.body, p.body_len, p.req_state) == ("", "", b"", 0, OPEN)
    assert (p.status, p.reason, p.resp_body, p.resp_len, p.resp_state) == (0, "", b"", 0, OPEN)
    assert (p.end_ts, p.truncated) == (0.0, False)
    assert p.headers == [] and p.resp_headers == [] and p.headers is not p.resp_headers
    assert Pending(0, 0.0, 0).headers is not p.headers  # each its own list


def test_complete_exchange_fields_numbering_and_counters() -> None:
    bodies = {"body": [b"ab", b"cd"], "body_len": 4, "resp_body": [b"{", b"}"]}
    ready, counters = _released(_pending(0), _pending(1, **bodies))
    request = Request(protocol="http", method="GET", target="/a?b=1",
                      headers=(("Host", "h"), ("X-Y", "z")), body=b"")
    recorded = Response(status=200, headers=(("Content-Length", "2"),), body=b"{}",
                        elapsed_s=0.5, reason="OK")
    assert ready[0] == Exchange(id="pcap-0", request=request, recorded=recorded,
                                source="pcap:trace.pcap#0", seen_at=10.0, count=1,
                                observed=(), marks=())
    assert ready[1].id == "pcap-1" and ready[1].source == "pcap:trace.pcap#1"
    assert ready[1].request.body == b"abcd" and ready[1].recorded == recorded
    assert all(type(e.request.headers) is tuple and type(e.recorded.headers) is tuple  # type: ignore[union-attr]
               for e in ready)
    assert (counters.requests, counters.responses, counters.incomplete) == (2, 2, 0)


def test_numbers_follow_tickets_not_arrival() -> None:
    ready, _ = _released(_pending(2, target="/c"), _pending(0, target="/a"),
                         _pending(1, target="/b"))
    assert [(e.id, e.request.target) for e in ready] == [
        ("pcap-0", "/a"), ("pcap-1", "/b"), ("pcap-2", "/c")]


def test_elapsed_is_never_negative() -> None:
    ready, _ = _released(_pending(0, end_ts=9.0), _pending(1, end_ts=float("nan")))
    assert [e.recorded.elapsed_s for e in ready] == [0.0, 0.0]  # type: ignore[union-attr]


def test_partial_exchanges_keep_their_marks_and_counts() -> None:
    ready, counters = _released(
        _pending(0, resp_state=ABSENT),
        _pending(1, req_state=INCOMPLETE),
        _pending(2, truncated=True),
        _pending(3, resp_state=INCOMPLETE))
    assert [(e.recorded is not None, e.marks) for e in ready] == [
        (False, ("no_response",)), (True, ("incomplete",)), (False, ("incomplete",)),
        (False, ("incomplete",))]
    assert ready[1].recorded == Response(200, (("Content-Length", "2"),), b"{}", 0.5, "OK")
    assert [e.id for e in ready] == ["pcap-0", "pcap-1", "pcap-2", "pcap-3"]
    assert all(e.count == 1 and e.observed == () for e in ready)
    assert (counters.requests, counters.responses, counters.incomplete,
            counters.no_response) == (4, 1, 3, 1)
