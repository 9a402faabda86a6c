"""Real loopback servers for tests: aiohttp apps and misbehaving raw TCP peers, in threads.

The pipeline runs its own event loop (asyncio.run), so servers live in a background thread
with theirs. Every server listens on 127.0.0.1 port 0 and stops when the block ends.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web


@contextmanager
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def serve_app(make_app: Callable[[], web.Application]) -> Iterator[str]:
    """Run an aiohttp app on 127.0.0.1:0; yields its base URL."""
    with background_loop() as loop:
        async def start() -> tuple[web.AppRunner, int]:
            runner = web.AppRunner(make_app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner, runner.addresses[0][1]

        runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)


def refused_url() -> str:
    """A loopback URL where nothing listens (the port was just freed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@contextmanager
def tcp_peer(handle: Callable[[socket.socket], None], scheme: str = "http") -> Iterator[str]:
    """A loopback TCP listener that runs `handle(conn)` in a thread per connection;
    yields `scheme://127.0.0.1:PORT`. Connections still open are closed at the end."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conns.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for c in conns:
            c.close()
        listener.close()


@contextmanager
def raw_server(behaviour: str) -> Iterator[str]:
    """A TCP peer that misbehaves: `hang` (never answers), `reset` (RST after the request),
    `garbage` (a non-HTTP reply), `truncated` (headers promise more body than is sent)."""

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            if behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif behaviour == "garbage":
                conn.sendall(b"\x00\x01SSH-2.0-not-http\r\n\r\n")
                conn.close()
            elif behaviour == "truncated":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                conn.close()
            # hang: keep the connection open and silent until the test ends
        except OSError:
            pass

    with tcp_peer(handle) as url:
        yield url
