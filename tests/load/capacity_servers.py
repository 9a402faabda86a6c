"""Two aiohttp backends of known capacity, for the load tests: a handler holds one of
`slots` places for `service_s`, so the server serves at most slots / service_s requests/s
and queues past that (as a worker pool does)."""

from __future__ import annotations

import asyncio

from aiohttp import web


def capped_app(slots: int, service_s: float) -> web.Application:
    gate = asyncio.Semaphore(slots)

    async def handle(request: web.Request) -> web.Response:
        async with gate:
            await asyncio.sleep(service_s)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
