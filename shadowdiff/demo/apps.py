"""The demo's two services: the OLD and the NEW version of a small shop JSON API.

`shadowdiff demo` starts both on loopback ports chosen at run time
(`start_demo_servers`) and replays `captures/demo.jsonl` to them. Both serve the same
catalog (`catalog.py`); the NEW version differs on purpose in the ways listed in
`EXPECTED_DIVERGENCES` and `SLOW_ENDPOINTS`, and both versions stamp every response with
volatile values (`VOLATILE_LOCATIONS`) that the bundled rules
(`shadowdiff/demo/data/shadowdiff.toml`) must remove from the report.

Endpoints:
    GET  /                                   HTML home page
    GET  /health
    GET  /api/categories
    GET  /api/products?category=..&page=..
    GET  /api/products/{id}
    GET  /api/recommendations/{id}
    GET  /api/users/{id}
    GET  /api/users/{id}/orders
    GET  /api/orders/{uuid}
    GET  /api/search?q=..
    POST /api/cart                           never replayed by default
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from aiohttp import web

from shadowdiff.demo.catalog import CATEGORIES, PER_PAGE, Catalog, Product, build_catalog
from shadowdiff.model import Signature

Version = Literal["old", "new"]

#: How much slower NEW answers `GET /api/search`; short so the demo stays fast.
SEARCH_DELAY_S = 0.15

#: Every deliberate old/new difference, as the report should name it.
EXPECTED_DIVERGENCES: tuple[Signature, ...] = (
    # NEW crashes on soft-deleted users: 500 instead of 404, with its own error code.
    Signature("GET /api/users/{id}", "status", "status_changed"),
    Signature("GET /api/users/{id}", "body.error", "value_changed"),
    # NEW renamed address.zip to address.postal_code.
    Signature("GET /api/users/{id}", "body.address.zip", "field_missing"),
    Signature("GET /api/users/{id}", "body.address.postal_code", "field_added"),
    # NEW dropped the legacy SKU from product detail.
    Signature("GET /api/products/{id}", "body.legacy_sku", "field_missing"),
    # NEW serializes the order total as a decimal string.
    Signature("GET /api/orders/{id}", "body.total", "type_changed"),
    # NEW stopped letting caches keep the product list.
    Signature("GET /api/products", "header.cache-control", "header_changed"),
    # NEW lowered the free-shipping threshold on the home page.
    Signature("GET /", "body.html.body.p.text", "value_changed"),
)

#: Differences that exist on the wire but that the bundled rules must hide.
IGNORED_DIVERGENCES: tuple[Signature, ...] = (
    Signature("GET /api/products/{id}", "body.tags", "order_changed"),
    Signature("GET /api/products", "body.items[*].tags", "order_changed"),
)

#: Endpoints NEW answers more slowly, with the added delay in seconds.
SLOW_ENDPOINTS: Mapping[str, float] = {"GET /api/search": SEARCH_DELAY_S}

#: Values that change on every response, in both versions.
VOLATILE_LOCATIONS: tuple[str, ...] = (
    "body.generated_at",       # JSON bodies: ISO timestamp with microseconds
    "body.meta.request_id",    # JSON bodies: uuid4, equal to the X-Request-Id header
    "header.x-request-id",
    "header.date",
)
# The HTML page (`GET /`) also embeds a "Rendered at" ISO timestamp: the rules' `timestamp`
# mask covers it, since a text body has no path to ignore.

#: Differences no rule covers, which the demo's old replica measures as noise: every
#: instance names itself in `X-Served-By` (old-a, its replica old-b, new-a).
NOISE_LOCATIONS: tuple[str, ...] = ("header.x-served-by",)
INSTANCES: Mapping[str, str] = {"old": "old-a", "old_replica": "old-b", "new": "new-a"}

_FREE_SHIPPING = {"old": 50, "new": 40}
_LIST_CACHE_CONTROL = {"old": "public, max-age=60", "new": "no-store"}


# The current request's id. A context variable rather than request storage: aiohttp
# 3.14 warns on string request keys and `web.RequestKey` is too new to rely on, and each
# request runs in its own task, hence its own context.
_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("demo_request_id")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _stamps(instance: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def stamp(request: web.Request, handler: Handler) -> web.StreamResponse:
        # One id per request, echoed in the header and the JSON body, like most tracing
        # setups; and the instance's name, like many load-balanced services.
        request_id = str(uuid.uuid4())
        _REQUEST_ID.set(request_id)
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        response.headers["X-Served-By"] = instance
        return response
    return stamp


def _json(payload: dict[str, Any], *, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    body = {**payload, "generated_at": _now(), "meta": {"request_id": _REQUEST_ID.get()}}
    return web.json_response(body, status=status, headers=headers)


class _Shop:
    """The handlers of one version; `new` switches on the deliberate changes."""

    def __init__(self, version: Version, catalog: Catalog) -> None:
        self.version = version
        self.new = version == "new"
        self.catalog = catalog

    def _tags(self, product: Product) -> list[str]:
        # NEW builds tags from a set-backed index: same tags, another order.
        return list(reversed(product.tags)) if self.new else list(product.tags)

    def _summary(self, product: Product) -> dict[str, Any]:
        return {"id": product.id, "name": product.name, "price": product.price}

    async def home(self, request: web.Request) -> web.Response:
        featured = [self.catalog.by_category(c)[0] for c in CATEGORIES]
        rows = "\n".join(f'    <li><a href="/products/{p.id}">{html.escape(p.name)}</a> '
                         f"&euro;{p.price:.2f}</li>" for p in featured)
        page = (
            "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            "<title>Demo Shop</title></head>\n<body>\n  <h1>Demo Shop</h1>\n"
            f"  <p class=\"banner\">Free shipping on orders over &euro;"
            f"{_FREE_SHIPPING[self.version]}</p>\n  <ul class=\"featured\">\n{rows}\n  </ul>\n"
            f"  <footer>Rendered at {_now()}</footer>\n</body>\n</html>\n"
        )
        return web.Response(text=page, content_type="text/html")

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def categories(self, request: web.Request) -> web.Response:
        rows = [{"name": c, "product_count": len(self.catalog.by_category(c))}
                for c in CATEGORIES]
        return _json({"categories": rows})

    async def products(self, request: web.Request) -> web.Response:
        category = request.query.get("category") or None
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return _json({"error": "bad_page"}, status=400)
        matching = self.catalog.by_category(category)
        window = matching[(page - 1) * PER_PAGE: page * PER_PAGE]
        items = [{**self._summary(p), "tags": self._tags(p), "in_stock": p.stock > 0}
                 for p in window]
        payload = {"category": category, "page": page, "per_page": PER_PAGE,
                   "total": len(matching), "items": items}
        return _json(payload,
                     headers={"Cache-Control": _LIST_CACHE_CONTROL[self.version]})

    async def product(self, request: web.Request) -> web.Response:
        product = self.catalog.products.get(int(request.match_info["id"]))
        if product is None:
            return _json({"error": "not_found"}, status=404)
        payload: dict[str, Any] = {**self._summary(product), "category": product.category,
                                   "tags": self._tags(product), "stock": product.stock}
        if not self.new:
            payload["legacy_sku"] = product.legacy_sku
        return _json(payload, headers={"Cache-Control": "public, max-age=300"})

    async def recommendations(self, request: web.Request) -> web.Response:
        pid = int(request.match_info["id"])
        if pid not in self.catalog.products:
            return _json({"error": "not_found"}, status=404)
        items = [self._summary(p) for p in self.catalog.recommendations(pid)]
        return _json({"product_id": pid, "items": items})

    async def user(self, request: web.Request) -> web.Response:
        user = self.catalog.users.get(int(request.match_info["id"]))
        if user is None:
            return _json({"error": "not_found"}, status=404)
        if user.deleted:
            # OLD hides soft-deleted users; NEW forgot the check and fails further down.
            if self.new:
                return _json({"error": "internal_error"}, status=500)
            return _json({"error": "not_found"}, status=404)
        zip_key = "postal_code" if self.new else "zip"
        address = {"city": user.city, zip_key: user.zip}
        return _json({"id": user.id, "name": user.name, "email": user.email,
                               "address": address})

    async def user_orders(self, request: web.Request) -> web.Response:
        user = self.catalog.users.get(int(request.match_info["id"]))
        if user is None or user.deleted:
            return _json({"error": "not_found"}, status=404)
        orders = [self.catalog.orders[oid] for oid in self.catalog.orders_by_user.get(user.id, ())]
        rows = [{"id": o.id, "placed_on": o.placed_on, "status": o.status,
                 "item_count": sum(line.quantity for line in o.lines)} for o in orders]
        return _json({"user_id": user.id, "orders": rows})

    async def order(self, request: web.Request) -> web.Response:
        order = self.catalog.orders.get(request.match_info["id"].lower())
        if order is None:
            return _json({"error": "not_found"}, status=404)
        lines = [{"product_id": ln.product_id, "quantity": ln.quantity,
                  "unit_price": ln.unit_price} for ln in order.lines]
        # NEW moved to Decimal and serializes money as a string.
        total: float | str = f"{order.total:.2f}" if self.new else order.total
        return _json({"id": order.id, "user_id": order.user_id,
                               "placed_on": order.placed_on, "status": order.status,
                               "lines": lines, "total": total, "currency": "EUR"})

    async def search(self, request: web.Request) -> web.Response:
        if self.new:
            await asyncio.sleep(SEARCH_DELAY_S)  # NEW queries an unindexed column
        query = request.query.get("q", "")
        results = [{**self._summary(p), "category": p.category}
                   for p in self.catalog.search(query)]
        return _json({"query": query, "count": len(results), "results": results})

    async def add_to_cart(self, request: web.Request) -> web.Response:
        try:
            item = await request.json()
            pid, quantity = int(item["product_id"]), int(item.get("quantity", 1))
        except (ValueError, KeyError, TypeError):
            return _json({"error": "bad_request"}, status=400)
        if pid not in self.catalog.products:
            return _json({"error": "unknown_product"}, status=422)
        return _json({"cart_id": str(uuid.uuid4()),
                               "items": [{"product_id": pid, "quantity": quantity}]},
                     status=201)


def make_app(version: Version, *, catalog: Catalog | None = None,
             instance: str | None = None) -> web.Application:
    """The demo shop as `version` ("old" or "new") implements it; `instance` names it.

    >>> app = make_app("new")  # then web.run_app(app) or start_demo_servers()
    """
    if version not in ("old", "new"):
        raise ValueError(f"version must be 'old' or 'new', not {version!r}")
    shop = _Shop(version, catalog or build_catalog())
    app = web.Application(middlewares=[_stamps(instance or INSTANCES[version])])
    app.add_routes([
        web.get("/", shop.home),
        web.get("/health", shop.health),
        web.get("/api/categories", shop.categories),
        web.get("/api/products", shop.products),
        web.get(r"/api/products/{id:\d+}", shop.product),
        web.get(r"/api/recommendations/{id:\d+}", shop.recommendations),
        web.get(r"/api/users/{id:\d+}", shop.user),
        web.get(r"/api/users/{id:\d+}/orders", shop.user_orders),
        web.get(r"/api/orders/{id:[0-9a-fA-F-]{36}}", shop.order),
        web.get("/api/search", shop.search),
        web.post("/api/cart", shop.add_to_cart),
    ])
    return app


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start(version: Version, host: str, instance: str) -> tuple[web.AppRunner, str]:
    # A short shutdown timeout: the demo should exit promptly even with keep-alive clients.
    runner = web.AppRunner(make_app(version, instance=instance), access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    return runner, _url(host, port)


async def _start_roles(roles: tuple[str, ...], host: str
                       ) -> tuple[list[str], Callable[[], Awaitable[None]]]:
    runners: list[web.AppRunner] = []

    async def stop() -> None:
        await asyncio.gather(*(r.cleanup() for r in runners))

    urls = []
    try:
        for role in roles:
            version: Version = "new" if role == "new" else "old"
            runner, url = await _start(version, host, INSTANCES[role])
            runners.append(runner)
            urls.append(url)
    except BaseException:
        await stop()
        raise
    return urls, stop


async def start_demo_servers(host: str = "127.0.0.1"
                             ) -> tuple[str, str, Callable[[], Awaitable[None]]]:
    """Start OLD and NEW on free ports of `host`; returns (old_url, new_url, stop).

    >>> old_url, new_url, stop = await start_demo_servers()  # doctest: +SKIP
    >>> await stop()  # doctest: +SKIP
    """
    (old_url, new_url), stop = await _start_roles(("old", "new"), host)
    return old_url, new_url, stop


async def start_demo_servers_with_replica(host: str = "127.0.0.1"
                                          ) -> tuple[str, str, str, Callable[[], Awaitable[None]]]:
    """OLD, NEW and a second OLD instance (the replica that measures noise);
    returns (old_url, new_url, old_replica_url, stop)."""
    (old_url, new_url, replica_url), stop = await _start_roles(("old", "new", "old_replica"), host)
    return old_url, new_url, replica_url, stop
