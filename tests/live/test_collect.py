"""The collector: real aiohttp clients and a real nginx `mirror` send to it; the capture keeps
every request in order, with method, target, headers and body."""

from __future__ import annotations

from testpaths import REPO
import asyncio
import http.client
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from conftest import require_tool
from servers import background_loop, serve_app
from shadowdiff.capture import read_exchanges
from shadowdiff.capture.jsonl import read_header
from shadowdiff.live.collect import Collector, CollectorSettings, strip_shadow

_MAIN = "import shadowdiff.cli.live; from shadowdiff.cli.main import main; main()"


@contextmanager
def collector(out: Path, **options: object) -> Iterator[tuple[str, Collector]]:
    """A Collector on 127.0.0.1:0 in a background loop; flushed when the block ends."""
    coll = Collector(CollectorSettings(output=str(out), **options))  # type: ignore[arg-type]
    with background_loop() as loop:
        stop = asyncio.Event()
        ready: queue.Queue[int] = queue.Queue()
        task = asyncio.run_coroutine_threadsafe(
            coll.serve("127.0.0.1", 0, stop, lambda host, port: ready.put(port)), loop)
        try:
            yield f"http://127.0.0.1:{ready.get(timeout=10)}", coll
        finally:
            loop.call_soon_threadsafe(stop.set)
            task.result(10)


def wait_for(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


SENT = [
    ("GET", "/users/42?expand=1&q=a%20b", [("X-Trace", "t1"), ("X-Dup", "one"), ("X-Dup", "two")], b""),
    ("POST", "/cart", [("Content-Type", "application/json")], b'{"sku": 7}'),
    ("PUT", "/blob/1", [("Content-Type", "application/octet-stream")], bytes(range(256)) * 4),
    ("DELETE", "/cart/7", [], b""),
    ("GET", "/shadowed", [("Host", "api.test-shadow:8080")], b""),
]


def test_requests_recorded_in_order_with_bodies(tmp_path):
    out = tmp_path / "collected.jsonl"

    async def send(url: str) -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for method, target, headers, body in SENT:
                async with session.request(method, url + target, headers=headers, data=body or None,
                                           skip_auto_headers=["User-Agent"]) as resp:
                    statuses.append(resp.status)
        return statuses

    with collector(out) as (url, _):
        statuses = asyncio.run(send(url))
    assert statuses == [204] * len(SENT)
    exchanges = list(read_exchanges(out))
    assert [(e.request.method, e.request.target, e.request.body) for e in exchanges] == \
        [(m, t, b) for m, t, _, b in SENT]
    for ex, (_, _, headers, _) in zip(exchanges, SENT):
        got = [h for h in ex.request.headers if h[0] in {n for n, _ in headers} - {"Host"}]
        assert got == [h for h in headers if h[0] != "Host"]  # order and duplicates kept
        assert "no_response" in ex.marks
    assert exchanges[-1].request.header("Host") == "api.test:8080"  # Envoy's suffix undone
    assert read_header(out)["stats"]["shadow_host_stripped"] == 1


def test_oversized_body_is_marked_not_kept(tmp_path):
    out = tmp_path / "collected.jsonl"

    async def send(url: str) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/upload", data=b"x" * 5000) as resp:
                return resp.status

    with collector(out, max_body_bytes=1000) as (url, _):
        status = asyncio.run(send(url))
    (ex,) = read_exchanges(out)
    # refused (413) on its Content-Length alone, never read, still recorded as a request
    assert status == 413 and ex.request.body == b"" and "request_body_missing" in ex.marks
    stats = read_header(out)["stats"]
    assert (stats["bodies_too_large"], stats["body_bytes"]) == (1, 0)


def test_strip_shadow():
    assert strip_shadow("api.test-shadow:8080") == "api.test:8080"
    assert strip_shadow("api.test-shadow") == "api.test"
    assert strip_shadow("[2001:db8::1]-shadow:443") == "[2001:db8::1]:443"
    assert strip_shadow("api.test:8080") is None and strip_shadow("-shadow") is None


def test_collect_command_flushes_on_sigterm(tmp_path):
    out = tmp_path / "collected.jsonl"
    with open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", _MAIN, "collect", "--listen", "127.0.0.1:0",
                                 "-o", str(out)], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            lines: queue.Queue[str] = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)  # type: ignore[union-attr]
            reader.start()
            port = int(lines.get(timeout=20).rsplit(":", 1)[1])
            for i in range(3):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("POST", f"/p/{i}", body=f"body {i}".encode())
                assert conn.getresponse().status == 204
                conn.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            reader.join(5)
        finally:
            if proc.poll() is None:
                proc.kill()  # this PID only
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
    assert [(e.request.target, e.request.body) for e in read_exchanges(out)] == \
        [(f"/p/{i}", f"body {i}".encode()) for i in range(3)]
    assert "wrote 3 exchanges" in "".join(lines.get_nowait() for _ in range(lines.qsize()))


# -- a real nginx mirroring to the collector ----------------------------------------------

NGINX_CONF = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream old {{ server 127.0.0.1:{old_port}; }}
    upstream shadowdiff_collect {{ server 127.0.0.1:{collect_port}; keepalive 8; }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            mirror /_shadowdiff;
            mirror_request_body on;
            proxy_pass http://old;
        }}
        location = /_shadowdiff {{
            internal;
            proxy_pass http://shadowdiff_collect$request_uri;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 200ms;
            proxy_read_timeout 1s;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _old_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"old {request.method} {request.raw_path} {len(body)}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def nginx(conf: str, prefix: Path, port: int) -> Iterator[None]:
    binary = require_tool("nginx")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([binary, "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        assert wait_for(up, 10), (prefix / "error.log").read_text()
        yield
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # this PID only (master_process off: nginx is this one process)
            proc.wait(5)


@pytest.mark.integration
def test_nginx_mirror_reaches_collector(tmp_path):
    require_tool("nginx")
    out = tmp_path / "mirrored.jsonl"
    sent = [("GET", "/users/42?expand=1&q=a%20b", b""), ("POST", "/cart", b'{"sku": 7}'),
            ("PUT", "/blob/%7Eraw", bytes(range(256))), ("DELETE", "/cart/7", b""),
            ("GET", "/", b"")] * 3
    port = _free_port()
    with serve_app(_old_app) as old, collector(out) as (sink, coll):
        conf = NGINX_CONF.format(prefix=tmp_path / "nginx", port=port,
                                 old_port=old.rsplit(":", 1)[1], collect_port=sink.rsplit(":", 1)[1])
        with nginx(conf, tmp_path / "nginx", port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # one keep-alive connection
            answers = []
            for method, target, body in sent:
                conn.request(method, target, body=body or None, headers={"Host": "shop.test"})
                resp = conn.getresponse()
                answers.append((resp.status, resp.read().decode()))
            conn.close()
            assert wait_for(lambda: coll.stats["requests"] >= len(sent)), coll.stats
    # Clients got old's answers, not the collector's 204.
    assert answers == [(200, f"old {m} {t} {len(b)}") for m, t, b in sent]
    exchanges = list(read_exchanges(out))
    assert [(e.request.method, e.request.target, e.request.body) for e in exchanges] == sent
    assert {e.request.header("Host") for e in exchanges} == {"shop.test"}


@pytest.mark.integration
def test_nginx_with_collector_down_still_serves(tmp_path):
    require_tool("nginx")
    port = _free_port()
    with serve_app(_old_app) as old:
        conf = NGINX_CONF.format(prefix=tmp_path / "nginx", port=port, old_port=old.rsplit(":", 1)[1],
                                 collect_port=_free_port())  # nothing listens there
        with nginx(conf, tmp_path / "nginx", port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            timings, answers = [], []
            for i in range(5):
                start = time.perf_counter()
                conn.request("GET", f"/x/{i}", headers={"Host": "shop.test"})
                resp = conn.getresponse()
                answers.append((resp.status, resp.read().decode()))
                timings.append(time.perf_counter() - start)
            conn.close()
    assert answers == [(200, f"old GET /x/{i} 0") for i in range(5)]
    assert max(timings) < 0.2, timings  # under the mirror's 200 ms connect timeout


def test_docs_show_the_tested_nginx_config():
    docs = (REPO / "docs" / "mirroring.md").read_text()
    start = NGINX_CONF.index("        location / {{")
    tested = NGINX_CONF[start:].replace("{{", "{").replace("}}", "}")
    for line in tested.splitlines():
        if line.strip() and line.strip() != "}":
            assert line.strip() in docs, line
