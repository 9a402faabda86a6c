"""shadowdiff/protocols/http/h2_sender.py against a real nginx with `http2` on loopback, a CA
made in the test: exchanges captured as HTTP/2 go over HTTP/2 (nginx's access log says
`HTTP/2.0`), the others over HTTP/1.1, a target without h2 gets HTTP/1.1, bodies far past
the 64 KB initial flow-control window arrive (and go) whole, more streams than the server's
MAX_CONCURRENT_STREAMS wait their turn, a wrong name is a `tls` failure with OpenSSL's
reason, and h2 answers are shaped like the fast sender's."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from factories import make_request
from shadowdiff.model import Failure, Outcome, Request, Response
from shadowdiff.protocols.http.fast import FastSender
from shadowdiff.protocols.http.h2_sender import H2Sender, NotHttp2, VersionRouter
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.protocols.http.tls import TlsSettings
from shadowdiff.replay.options import ReplayConfig
from tls_servers import H2Servers, h2_and_http1_nginx

pytestmark = pytest.mark.integration

BIG = 3 * 1024 * 1024 + 17   # ~48 initial stream windows of 65,535 bytes


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Servers]:
    with h2_and_http1_nginx(tmp_path_factory.mktemp("h2")) as servers:
        for which in ("h2", "plain"):
            (servers.files(which) / "big.bin").write_bytes(os.urandom(BIG))
        yield servers


def h2_request(method: str = "GET", target: str = "/", **kw: object) -> Request:
    return replace(make_request(method, target, **kw), http_version="HTTP/2")  # type: ignore[arg-type]


def options(servers: H2Servers, port: int, **kw: object) -> ReplayConfig:
    tls = TlsSettings(ca_bundle=str(servers.ca.pem), address=f"127.0.0.1:{port}")
    return ReplayConfig(**{"timeout_s": 10, "host_header": "target", "tls": tls, **kw})  # type: ignore[arg-type]


def exchange(sender: object, *requests: Request) -> list[Outcome]:
    async def go() -> list[Outcome]:
        try:
            return list(await asyncio.gather(*(sender.send(r) for r in requests)))  # type: ignore[attr-defined]
        finally:
            await sender.close()  # type: ignore[attr-defined]
    return asyncio.run(go())


def ok(outcome: Outcome) -> Response:
    assert isinstance(outcome, Response), outcome
    assert outcome.status == 200, (outcome.status, outcome.body[:200])
    return outcome


def test_exchanges_captured_as_http2_go_over_http2_the_others_over_http11(servers: H2Servers) -> None:
    before = len(servers.log("h2"))
    sender = PROTOCOL.open_sender(f"https://shop.test:{servers.h2}", options(servers, servers.h2))
    assert isinstance(sender, VersionRouter)  # not probed: the first h2 handshake tells
    outcomes = exchange(sender, *[h2_request("GET", f"/h2/{i}") for i in range(5)],
                        make_request("GET", "/one-one"))
    bodies = [ok(o).body for o in outcomes]
    assert all(b'"proto": "HTTP/2.0"' in b and b'"sni": "shop.test"' in b for b in bodies[:5])
    assert b'"proto": "HTTP/1.1"' in bodies[5]
    assert sender.sent_over == {"HTTP/2": 5, "HTTP/1.1": 1}
    lines = sorted(servers.log("h2")[before:])
    assert lines == ["HTTP/1.1 GET /one-one 200"] + [f"HTTP/2.0 GET /h2/{i} 200" for i in range(5)]


def test_a_target_without_h2_gets_http11(servers: H2Servers) -> None:
    before = len(servers.log("plain"))
    url = f"https://shop.test:{servers.plain}"
    lazy = PROTOCOL.open_sender(url, options(servers, servers.plain))   # learns it by handshake
    probed = PROTOCOL.open_sender(url, options(servers, servers.plain, alpn="http/1.1"))
    assert isinstance(probed, FastSender)   # the probe said so: no h2 sender at all
    for sender in (lazy, probed):
        outcomes = exchange(sender, *[h2_request("GET", "/fallback") for _ in range(3)])
        assert all(b'"proto": "HTTP/1.1"' in ok(o).body for o in outcomes)
        assert sender.sent_over == {"HTTP/1.1": 3}  # type: ignore[attr-defined]
    assert isinstance(lazy, VersionRouter) and lazy.h2_offered is False
    assert servers.log("plain")[before:] == ["HTTP/1.1 GET /fallback 200"] * 6
    with pytest.raises(NotHttp2, match="http/1.1"):
        exchange(H2Sender(url, options(servers, servers.plain)), h2_request())


def test_http2_off_and_plain_http_stay_on_http11(servers: H2Servers) -> None:
    off = PROTOCOL.open_sender(f"https://shop.test:{servers.h2}",
                               options(servers, servers.h2, http2="off"))
    plain = PROTOCOL.open_sender("http://127.0.0.1:9", ReplayConfig())   # no h2c
    assert isinstance(off, FastSender) and isinstance(plain, FastSender)
    assert b'"proto": "HTTP/1.1"' in ok(exchange(off, h2_request())[0]).body
    exchange(plain)


def test_bodies_past_the_flow_control_window_arrive_and_go_whole(servers: H2Servers) -> None:
    before = len(servers.log("h2"))
    sent = os.urandom(300_000)   # > 64 KB: the server's stream window must reopen
    sender = H2Sender(f"https://shop.test:{servers.h2}", options(servers, servers.h2))
    big, head, post, small = exchange(sender, h2_request("GET", "/files/big.bin"),
                                      h2_request("HEAD", "/files/big.bin"),
                                      h2_request("POST", "/upload", body=sent),
                                      h2_request("GET", "/small"))
    expected = (servers.files("h2") / "big.bin").read_bytes()
    assert hashlib.sha256(ok(big).body).digest() == hashlib.sha256(expected).digest()
    assert ok(big).header("content-length") == str(BIG)
    assert ok(head).body == b"" and ok(head).header("content-length") == str(BIG)
    ok(post), ok(small)
    assert sorted(servers.log("h2")[before:]) == [
        "HTTP/2.0 GET /files/big.bin 200", "HTTP/2.0 GET /small 200",
        "HTTP/2.0 HEAD /files/big.bin 200", "HTTP/2.0 POST /upload 200"]


def test_more_streams_than_the_server_allows_wait_their_turn(servers: H2Servers) -> None:
    # nginx allows 128 concurrent streams (http2_max_concurrent_streams): 300 at once must
    # queue, not fail, on the one connection
    sender = H2Sender(f"https://shop.test:{servers.h2}", options(servers, servers.h2))
    outcomes = exchange(sender, *[h2_request("GET", f"/many/{i}") for i in range(300)])
    assert all(ok(o) for o in outcomes) and sender.sent_over == {"HTTP/2": 300}


def test_a_wrong_name_fails_verification_over_h2_as_tls(servers: H2Servers) -> None:
    sender = H2Sender(f"https://wrong.test:{servers.h2}", options(servers, servers.h2))
    outcome = exchange(sender, h2_request(), h2_request())
    for failure in outcome:
        assert isinstance(failure, Failure) and failure.kind == "tls", failure
        assert "certificate verify failed: Hostname mismatch" in failure.detail
    refused = exchange(H2Sender("https://shop.test:1", options(servers, 1)), h2_request())[0]
    assert isinstance(refused, Failure) and refused.kind == "refused"


def test_a_timeout_is_a_failure(servers: H2Servers) -> None:
    sender = H2Sender(f"https://shop.test:{servers.h2}",
                      options(servers, servers.h2, timeout_s=0.001))
    slow, = exchange(sender, h2_request("GET", "/files/big.bin"))
    assert isinstance(slow, Failure) and slow.kind == "timeout"


def test_a_body_over_the_cap_is_too_large_and_the_connection_goes_on(servers: H2Servers) -> None:
    sender = H2Sender(f"https://shop.test:{servers.h2}",
                      options(servers, servers.h2, max_body_bytes=100_000))

    async def go() -> tuple[Outcome, Outcome, bool]:
        try:
            big = await sender.send(h2_request("GET", "/files/big.bin"))
            first = sender._conn
            after = await sender.send(h2_request("GET", "/after"))
            return big, after, first is not None and sender._conn is first
        finally:
            await sender.close()
    big, after, same_connection = asyncio.run(go())
    assert isinstance(big, Failure) and big.kind == "too_large" and "100000" in big.detail
    assert b'"proto": "HTTP/2.0"' in ok(after).body
    assert same_connection   # the stream was reset, not the connection


def test_h2_answers_are_shaped_like_the_fast_senders(servers: H2Servers) -> None:
    url = f"https://shop.test:{servers.h2}"
    h2_answer = ok(exchange(H2Sender(url, options(servers, servers.h2)),
                            h2_request("GET", "/files/big.bin"))[0])
    one_one = ok(exchange(FastSender(url, options(servers, servers.h2)),
                          make_request("GET", "/files/big.bin"))[0])
    assert h2_answer.reason == one_one.reason == "OK" and h2_answer.body == one_one.body
    assert all(name == name.lower() for name, _ in h2_answer.headers)
    lifted_h2, lifted_11 = PROTOCOL.lift(h2_answer), PROTOCOL.lift(one_one)
    for tree in (lifted_h2, lifted_11):
        tree["header"].pop("date")
    transport = {"connection", "keep-alive"}
    assert {k: v for k, v in lifted_11["header"].items() if k not in transport} == lifted_h2["header"]


def test_request_headers_become_http2_headers(servers: H2Servers) -> None:
    request = h2_request("GET", "/", headers=(
        ("Host", "shop.test"), ("Connection", "keep-alive"), ("Keep-Alive", "5"),
        ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Proxy-Connection", "x"),
        ("X-Case", "Kept")))
    sender = H2Sender(f"https://shop.test:{servers.h2}", options(servers, servers.h2,
                                                                 host_header="original"))
    headers = sender._headers(request)
    assert headers[:4] == [(b":method", b"GET"), (b":scheme", b"https"),
                           (b":authority", b"shop.test"), (b":path", b"/")]
    assert headers[4:] == [(b"x-case", b"Kept")]
    assert b'"host": "shop.test"' in ok(exchange(sender, request)[0]).body
    bad = exchange(H2Sender(f"https://shop.test:{servers.h2}", options(servers, servers.h2)),
                   h2_request("GET", "/", headers=(("X-Evil", "a\r\nInjected: 1"),)))[0]
    assert isinstance(bad, Failure) and bad.kind == "error" and "not sent" in bad.detail


# -- faults nginx will not produce on demand: a small h2 server of the test's own --------------


class _FakeH2(asyncio.Protocol):
    """An HTTP/2 server (the h2 library, server side) that misbehaves as `mode` says:
    `drop` closes the connection when a request arrives; `goaway` answers the first stream
    of each connection and refuses the others with GOAWAY; `one` allows one stream at a time;
    `huge` answers with a 70 KB header (past MAX_HEAD_BYTES, 64 KiB)."""

    connections = 0
    most_open = 0

    def __init__(self, mode: str) -> None:
        import h2.config
        import h2.connection
        import h2.settings
        self.mode = mode
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        if mode == "one":
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        self.open: set[int] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).connections += 1
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self._request(event.stream_id)
        if not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def _request(self, stream_id: int) -> None:
        self.open.add(stream_id)
        type(self).most_open = max(type(self).most_open, len(self.open))
        if self.mode == "drop":
            self.transport.close()
        elif self.mode == "goaway" and stream_id > 1:
            self.h2.close_connection(last_stream_id=1)
        elif self.mode == "one":
            asyncio.get_running_loop().call_later(0.01, self._answer, stream_id)
        else:
            self._answer(stream_id)

    def _answer(self, stream_id: int) -> None:
        self.open.discard(stream_id)
        extra = [("x-huge", "a" * 70_000)] if self.mode == "huge" else []
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain"), *extra])
        self.h2.send_data(stream_id, b"ok", end_stream=True)
        if not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())


def fake_exchange(servers: H2Servers, mode: str, *requests: Request) -> list[Outcome]:
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*servers.ca.issue(f"fake-{mode}", ["shop.test"]))
    context.set_alpn_protocols(["h2"])
    _FakeH2.connections = _FakeH2.most_open = 0

    async def go() -> list[Outcome]:
        server = await asyncio.get_running_loop().create_server(
            lambda: _FakeH2(mode), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        sender = H2Sender(f"https://shop.test:{port}", options(servers, port, timeout_s=5))
        try:
            return list(await asyncio.gather(*(sender.send(r) for r in requests)))
        finally:
            await sender.close()
            server.close()
            await server.wait_closed()
    return asyncio.run(go())


def test_connection_loss_is_a_reset_failure(servers: H2Servers) -> None:
    for outcome in fake_exchange(servers, "drop", h2_request(), h2_request()):
        assert isinstance(outcome, Failure) and outcome.kind == "reset", outcome
        assert "connection" in outcome.detail


def test_streams_a_goaway_refused_go_again_on_a_new_connection(servers: H2Servers) -> None:
    outcomes = fake_exchange(servers, "goaway", *[h2_request("GET", f"/{i}") for i in range(3)])
    assert [ok(o).body for o in outcomes] == [b"ok"] * 3
    assert _FakeH2.connections == 3   # each connection answered one stream


def test_the_servers_max_concurrent_streams_is_respected(servers: H2Servers) -> None:
    outcomes = fake_exchange(servers, "one", *[h2_request("GET", f"/{i}") for i in range(6)])
    assert [ok(o).body for o in outcomes] == [b"ok"] * 6
    assert _FakeH2.connections == 1 and _FakeH2.most_open == 1


def test_a_header_list_past_the_bound_is_too_large(servers: H2Servers) -> None:
    outcome, = fake_exchange(servers, "huge", h2_request())
    assert isinstance(outcome, Failure) and outcome.kind == "too_large", outcome
