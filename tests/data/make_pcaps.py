"""Recipe for tests/data/curl_lo.pcap and curl_any.pcapng: real tcpdump captures.

A small aiohttp server on 127.0.0.1 (port 0) answers curl (keep-alive with several URLs
on one connection, POST, a chunked response, HEAD, Expect: 100-continue, a chunked upload)
and a raw socket client that pipelines three requests in one write. tcpdump records it:
on `lo` (Ethernet link type) and on `any` (Linux cooked SLL2, converted to pcapng with
editcap). Needs root, tcpdump, curl, editcap. Rewrite the fixtures with:

    .venv/bin/python tests/data/make_pcaps.py

tests/capture/pcap/test_capture_pcap.py imports `record()` to make a fresh capture the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, run as a script too
from servers import serve_app  # noqa: E402

HERE = Path(__file__).parent
UPLOAD = b"x" * 3000  # large enough to look like an upload, small enough for a fixture


def make_app() -> web.Application:
    async def item(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "name": "widget"})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"length": len(body), "head": body[:16].decode("latin-1")})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"part {i}\n".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.add_routes([web.get("/items/{id}", item), web.post("/echo", echo),
                    web.get("/stream", stream)])
    return app


@contextmanager
def serve() -> Iterator[int]:
    """The app on 127.0.0.1:0 (tests/servers.serve_app); yields the port."""
    with serve_app(make_app) as url:
        yield int(url.rsplit(":", 1)[1])


def curl_runs(base: str, upload: str) -> list[list[str]]:
    """The curl invocations; each list is one connection."""
    return [
        ["curl", "-s", f"{base}/items/1", f"{base}/items/2", f"{base}/items/3?q=a%20b",
         f"{base}/stream"],                                                   # keep-alive
        ["curl", "-s", "-H", "Content-Type: application/json", "-d", '{"name": "new"}',
         f"{base}/echo"],                                                     # POST
        ["curl", "-s", "-I", f"{base}/items/9"],                              # HEAD
        ["curl", "-s", "-H", "Expect: 100-continue", "--data-binary", f"@{upload}",
         f"{base}/echo"],                                                     # 100-continue
        ["curl", "-s", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}",
         f"{base}/echo"],                                                     # chunked upload
    ]


#: (method, target) of every request the recipe sends, in order.
def expected_requests() -> list[tuple[str, str]]:
    return [("GET", "/items/1"), ("GET", "/items/2"), ("GET", "/items/3?q=a%20b"),
            ("GET", "/stream"), ("POST", "/echo"), ("HEAD", "/items/9"), ("POST", "/echo"),
            ("POST", "/echo"), ("GET", "/items/p1"), ("GET", "/items/p2"), ("GET", "/items/p3")]


def pipeline(port: int) -> None:
    """Three requests in one write, the last asking to close; read until the server does."""
    reqs = b"".join(f"GET /items/p{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"{'Connection: close' if i == 3 else 'Accept: */*'}\r\n\r\n".encode()
                    for i in (1, 2, 3))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(reqs)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and s.recv(65536):
            pass


@contextmanager
def tcpdump(out: Path, iface: str, port: int) -> Iterator[None]:
    """tcpdump on `iface` for `port`, stopped with SIGINT after the 2 s flush wait."""
    proc = subprocess.Popen(["tcpdump", "-i", iface, "-n", "-s", "0", "-U", "-B", "32768",
                             "-Z", "root", "-w", str(out), f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        line = b""
        while b"listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited with {proc.returncode}")
        yield
        time.sleep(2.0)  # the kernel hands packets over in blocks (RECIPES.md)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def record(out: Path, iface: str = "lo") -> int:
    """Capture the recipe's traffic into `out` (pcap); returns the server port."""
    with serve() as port, tempfile.TemporaryDirectory() as tmp:
        upload = os.path.join(tmp, "upload.bin")
        Path(upload).write_bytes(UPLOAD)
        with tcpdump(out, iface, port):
            for argv in curl_runs(f"http://127.0.0.1:{port}", upload):
                subprocess.run(argv, stdout=subprocess.DEVNULL, timeout=20, check=True)
            pipeline(port)
    return port


def main() -> None:
    port = record(HERE / "curl_lo.pcap")
    (HERE / "curl_lo.port").write_text(f"{port}\n")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "any.pcap"
        port = record(raw, iface="any")
        subprocess.run(["editcap", "-F", "pcapng", str(raw), str(HERE / "curl_any.pcapng")],
                       check=True, timeout=30)
    (HERE / "curl_any.port").write_text(f"{port}\n")


if __name__ == "__main__":
    main()
