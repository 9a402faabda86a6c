"""Record tests/data/mitm_flows.mitm with a real mitmdump in front of a local aiohttp app.

Run from the repo root:
    .venv/bin/python tests/data/make_mitm_flows.py tests/data/mitm_flows.mitm tests/data/mitm_flows.har
(the second argument is optional: mitmproxy's `hardump` writes the same traffic as HAR 1.2).

The test suite imports `record()` too, to check the importer against a freshly recorded file.
Everything listens on 127.0.0.1; every process started here is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

#: What the recording sends, in order: (curl arguments, what the importer should see).
GZIP_BODY = b'{"items": [' + b",".join(b'{"n": %d}' % i for i in range(50)) + b"]}"
POST_BODY = b'{"sku": "A-1", "qty": 2}'


def _app() -> web.Application:
    async def user(request: web.Request) -> web.Response:
        return web.json_response({"id": int(request.match_info["uid"]), "q": request.query_string})

    async def order(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"received": len(body)}, status=201)

    async def items(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(GZIP_BODY, mtime=0),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "application/json"})

    async def broken(request: web.Request) -> web.StreamResponse:
        # Closing without an answer makes mitmproxy record a flow with an error.
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError

    app = web.Application()
    app.add_routes([web.get("/users/{uid}", user), web.post("/orders", order),
                    web.get("/items", items), web.get("/broken", broken)])
    return app


class _Upstream:
    """The aiohttp app on 127.0.0.1 port 0, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("aiohttp server did not start")

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mitmdump exited early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mitmdump did not listen in time")


def _curl(url: str, *extra: str) -> None:
    subprocess.run(["curl", "-s", "-o", os.devnull, "--max-time", "10", *extra, url],
                   check=False, timeout=20)


def record(out: Path, har: Path | None = None, mitmdump: str | None = None) -> None:
    """Record the fixture's five flows to `out` (and `har`) through a real mitmdump."""
    beside = Path(sys.executable).with_name("mitmdump")  # the venv's own, matching its mitmproxy
    mitmdump = mitmdump or (str(beside) if beside.exists() else shutil.which("mitmdump"))
    if mitmdump is None:
        raise RuntimeError("mitmdump not found: pip install shadowdiff[mitm]")
    upstream = _Upstream()
    listen = _free_port()
    with tempfile.TemporaryDirectory() as confdir:
        har_args = ["--set", f"hardump={har}"] if har else []
        proc = subprocess.Popen(
            [mitmdump, *har_args, "-q", "--listen-host", "127.0.0.1",
             "--mode", f"reverse:http://127.0.0.1:{upstream.port}@{listen}",
             "--set", f"confdir={confdir}", "--set", "keep_host_header=true", "-w", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(listen, proc)
            base = f"http://127.0.0.1:{listen}"
            _curl(f"{base}/users/42?expand=1", "-H", "Host: api.example.test")
            _curl(f"{base}/orders", "-X", "POST", "-H", "Content-Type: application/json",
                  "--data-binary", POST_BODY.decode())
            _curl(f"{base}/items", "-H", "Accept-Encoding: gzip")
            _curl(f"{base}/broken")
            _curl(f"{base}/users/7")
        finally:
            proc.send_signal(signal.SIGINT)  # SIGINT flushes the flow file
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            proc.stderr.close()  # type: ignore[union-attr]
            upstream.stop()


if __name__ == "__main__":
    record(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
