"""A minimal Chrome DevTools Protocol driver for headless chromium (no Playwright/Selenium).

Starts Debian's chromium with --remote-debugging-port=0, reads the port it chose from its
stderr, attaches to the first page over a websocket (aiohttp) and offers `send(method,
**params)`; every event is kept in `events` so a test can look for console errors.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
         "--remote-allow-origins=*", "--window-size=1280,900")
_LISTENING = re.compile(rb"DevTools listening on (ws://[^\s]+)")


class Browser:
    """One chromium process and a CDP session on its first page."""

    def __init__(self, chromium: str, profile: Path) -> None:
        self._argv = [chromium, *FLAGS, f"--user-data-dir={profile}",
                      "--remote-debugging-port=0", "about:blank"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []
        self._drain: threading.Thread | None = None

    async def __aenter__(self) -> Browser:
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        port = await asyncio.to_thread(self._port)
        self._http = aiohttp.ClientSession()
        for _ in range(50):
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    def _port(self) -> int:
        assert self._proc is not None and self._proc.stderr is not None
        seen = b""
        for line in self._proc.stderr:
            seen += line
            match = _LISTENING.search(line)
            if match:
                # keep draining: chromium blocks once a full stderr pipe is left unread
                self._drain = threading.Thread(target=self._discard, daemon=True)
                self._drain.start()
                return int(match.group(1).split(b":")[2].split(b"/")[0])
        raise RuntimeError(f"chromium exited without a DevTools port: {seen[-2000:]!r}")

    def _discard(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for _ in self._proc.stderr:
            pass

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            data = msg.json()
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a CDP method; returns its result, raises on a protocol error."""
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """The first event named `method` (already received or still to come)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {method} event within {timeout} s")

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element `selector` selects."""
        box = await self.evaluate(
            f"(() => {{ const el = document.querySelector({selector!r}); el.scrollIntoView();"
            " const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                            button="left", clickCount=1)

    async def __aexit__(self, *exc: Any) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._drain is not None:
                self._drain.join(10)
            assert self._proc.stderr is not None
            self._proc.stderr.close()
