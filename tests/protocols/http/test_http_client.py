"""Both HTTP senders against real loopback peers: every fault becomes a Failure."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from aiohttp import web

from servers import raw_server, refused_url, serve_app
from factories import make_request
from shadowdiff.replay.options import ReplayConfig
from shadowdiff.model import Failure, Response
from shadowdiff.protocols.http.plugin import PROTOCOL


@pytest.fixture(params=["fast", "aiohttp"], autouse=True)
def client(request):
    global CLIENT
    CLIENT = request.param
    return request.param


def send(url: str, request=None, **options) -> Response | Failure:
    async def go():
        sender = PROTOCOL.open_sender(url, ReplayConfig(**{"timeout_s": 0.5, "client": CLIENT,
                                                           **options}))
        try:
            return await sender.send(request or make_request())
        finally:
            await sender.close()
    return asyncio.run(go())


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items()}
        return web.json_response({"method": request.method, "path": request.path_qs,
                                  "headers": headers, "body": (await request.read()).decode()})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to check up front
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"x" * 1000)
        return resp

    async def gz(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"a": 1}'), headers={
            "Content-Encoding": "gzip", "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/gz", gz)
    return app


def test_headers_host_and_overrides_reach_the_server():
    with serve_app(echo_app) as url:
        req = make_request("GET", "/echo?q=a%20b&x=1", headers=(
            ("Host", "prod.example.com"), ("Connection", "keep-alive"), ("X-Custom", "1")))
        resp = send(url, req, headers=(("Authorization", "Bearer staging"),))
    assert isinstance(resp, Response) and resp.status == 200
    import orjson
    seen = orjson.loads(resp.body)
    assert seen["path"] == "/echo?q=a%20b&x=1"  # the target is sent exactly, not re-quoted
    assert seen["headers"]["Host"] == "prod.example.com"
    assert seen["headers"]["X-Custom"] == "1"
    assert seen["headers"]["Authorization"] == "Bearer staging"
    assert "User-Agent" not in seen["headers"]  # nothing invented that the client never sent


def test_host_header_modes():
    import orjson
    with serve_app(echo_app) as url:
        target = orjson.loads(send(url, make_request(target="/echo"), host_header="target").body)
        literal = orjson.loads(send(url, make_request(target="/echo"), host_header="new.example").body)
    assert target["headers"]["Host"] == url.removeprefix("http://")
    assert literal["headers"]["Host"] == "new.example"


def test_post_body_is_sent():
    import orjson
    with serve_app(echo_app) as url:
        resp = send(url, make_request("POST", "/echo", body=b'{"x": 1}'))
    assert orjson.loads(resp.body)["body"] == '{"x": 1}'


def test_redirects_are_not_followed():
    with serve_app(echo_app) as url:
        resp = send(url, make_request(target="/redirect"))
    assert isinstance(resp, Response) and resp.status == 302
    assert resp.header("Location") == "/elsewhere"


def test_gzip_body_is_kept_as_on_the_wire():
    with serve_app(echo_app) as url:
        resp = send(url, make_request(target="/gz"))
    assert resp.header("content-encoding") == "gzip"
    assert gzip.decompress(resp.body) == b'{"a": 1}'


def test_oversized_body_is_too_large():
    with serve_app(echo_app) as url:
        resp = send(url, make_request(target="/big"), max_body_bytes=5000)
    assert isinstance(resp, Failure) and resp.kind == "too_large"


def test_refused_connection():
    resp = send(refused_url())
    assert isinstance(resp, Failure) and resp.kind == "refused"


def test_server_that_never_answers_times_out():
    with raw_server("hang") as url:
        resp = send(url, timeout_s=0.3)
    assert isinstance(resp, Failure) and resp.kind == "timeout"
    assert 0.25 <= resp.elapsed_s < 3


def test_reset_connection():
    with raw_server("reset") as url:
        resp = send(url)
    assert isinstance(resp, Failure) and resp.kind == "reset", resp


def test_garbage_reply_is_invalid():
    with raw_server("garbage") as url:
        resp = send(url)
    assert isinstance(resp, Failure) and resp.kind == "invalid", resp


def test_keep_alive_connections_are_reused():
    ports = set()

    def app() -> web.Application:
        async def peer(request: web.Request) -> web.Response:
            ports.add(request.transport.get_extra_info("peername")[1])
            return web.json_response({})
        a = web.Application()
        a.router.add_get("/p", peer)
        return a

    async def go(url):
        sender = PROTOCOL.open_sender(url, ReplayConfig(concurrency=2, client=CLIENT))
        try:
            for _ in range(20):
                assert (await sender.send(make_request(target="/p"))).status == 200
        finally:
            await sender.close()

    with serve_app(app) as url:
        asyncio.run(go(url))
    assert len(ports) == 1


def test_head_response_has_no_body_and_does_not_break_the_connection():
    with serve_app(echo_app) as url:
        first = send(url, make_request("HEAD", "/gz"))
    assert isinstance(first, Response) and first.status == 200 and first.body == b""


def test_truncated_body_is_a_failure():
    with raw_server("truncated") as url:
        resp = send(url)
    assert isinstance(resp, Failure) and resp.kind in ("invalid", "reset"), resp
