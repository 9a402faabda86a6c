"""Regenerate the demo's bundled traffic: `captures/demo.jsonl` and `captures/demo-access.log`.

The capture is what `shadowdiff demo` replays to the demo's old and new shop
(`shadowdiff/demo/apps.py`); the access log is the production usage it ranks by. Both are
drawn from the demo catalog with a fixed seed, so a rerun rewrites the same bytes (except
the capture header's `created` time). Run from anywhere:

    python scripts/make_demo_data.py [--out captures] [--seed 20240611]

The two mixes differ on purpose: the capture over-samples users and orders, while
production is dominated by product pages and hits two endpoints the capture never
exercises (`GET /api/categories`, `GET /api/recommendations/{id}`), so the report has
untested traffic to show.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

from shadowdiff.capture.jsonl import write_capture
from shadowdiff.demo.catalog import CATEGORIES, SEED, Catalog, build_catalog
from shadowdiff.model import Exchange, Request

#: 2024-06-11T00:00:00Z: the day both files cover.
DAY_START = 1718064000
DAY_S = 86400
HOST = "shop.example.com"
ACCESS_LOG_LINES = 20_000

#: Exchanges per kind in the capture (400 in all).
CAPTURE_MIX: dict[str, int] = {
    "product": 90, "products": 80, "user": 60, "order": 50, "user_orders": 40,
    "search": 40, "health": 20, "home": 10, "cart": 10,
}
#: Lines per kind in the access log (20,000 in all): product pages dominate.
LOG_MIX: dict[str, int] = {
    "product": 7600, "products": 3000, "categories": 2000, "search": 1800,
    "recommendations": 1600, "user": 1000, "health": 900, "order": 800, "user_orders": 600,
    "home": 400, "cart": 300,
}

_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
)
_APPS = ("ShopApp/4.2.1 (iOS 17.5; iPhone15,2)", "ShopApp/4.2.0 (Android 14; Pixel 8)",
         "shop-sync/1.8 python-requests/2.32.3")
_MONITOR = "kube-probe/1.29"
_SEARCH_TERMS = ("lamp", "tent", "kettle", "atlas", "robot", "solar lamp", "travel", "mini",
                 "puzzle", "backpack", "smart speaker", "nordic", "umbrella", "eco bottle")
_HOURLY = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 9, 8, 8, 8, 9, 10, 10, 9, 7, 5, 3)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

T = TypeVar("T")
Pick = tuple[str, str, bytes, int]  # method, target, body, status production answered


class _Traffic:
    """Draws realistic requests from the catalog: skewed ids, a few misses."""

    def __init__(self, rng: random.Random, catalog: Catalog) -> None:
        self.rng = rng
        self.catalog = catalog
        self.products = self._popularity(sorted(catalog.products))
        self.live_users = self._popularity(sorted(u.id for u in catalog.users.values()
                                                  if not u.deleted))
        self.deleted_users = sorted(u.id for u in catalog.users.values() if u.deleted)
        self.orders = self._popularity(sorted(catalog.orders))

    def _popularity(self, ids: list[T]) -> tuple[list[T], list[float]]:
        # Zipf-like weights over a shuffled order, so the popular ids are not just the first.
        shuffled = list(ids)
        self.rng.shuffle(shuffled)
        return shuffled, [1.0 / (rank + 1) ** 1.1 for rank in range(len(shuffled))]

    def _pick(self, population: tuple[list[T], list[float]]) -> T:
        return self.rng.choices(population[0], weights=population[1])[0]

    def request(self, kind: str) -> Pick:
        """One request of `kind`, with the status the old (production) version gives it."""
        return getattr(self, f"_{kind}")()  # type: ignore[no-any-return]

    def _home(self) -> Pick:
        return "GET", "/", b"", 200

    def _health(self) -> Pick:
        return "GET", "/health", b"", 200

    def _categories(self) -> Pick:
        return "GET", "/api/categories", b"", 200

    def _products(self) -> Pick:
        params: dict[str, str | int] = {}
        if self.rng.random() < 0.85:
            params["category"] = self.rng.choice(CATEGORIES)
        params["page"] = self.rng.choices((1, 2, 3), weights=(70, 25, 5))[0]
        return "GET", f"/api/products?{urlencode(params)}", b"", 200

    def _product(self) -> Pick:
        if self.rng.random() < 0.03:
            return "GET", f"/api/products/{self.rng.randint(2000, 2999)}", b"", 404
        return "GET", f"/api/products/{self._pick(self.products)}", b"", 200

    def _recommendations(self) -> Pick:
        return "GET", f"/api/recommendations/{self._pick(self.products)}", b"", 200

    def _user_id(self) -> tuple[int, int]:
        roll = self.rng.random()
        if roll < 0.15:  # soft-deleted users: where old and new disagree on the status
            return self.rng.choice(self.deleted_users), 404
        if roll < 0.20:
            return self.rng.randint(9000, 9999), 404
        return self._pick(self.live_users), 200

    def _user(self) -> Pick:
        uid, status = self._user_id()
        return "GET", f"/api/users/{uid}", b"", status

    def _user_orders(self) -> Pick:
        uid, status = self._user_id()
        return "GET", f"/api/users/{uid}/orders", b"", status

    def _order(self) -> Pick:
        if self.rng.random() < 0.05:
            return "GET", f"/api/orders/{uuid.UUID(int=self.rng.getrandbits(128), version=4)}", \
                b"", 404
        return "GET", f"/api/orders/{self._pick(self.orders)}", b"", 200

    def _search(self) -> Pick:
        query = urlencode({"q": self.rng.choice(_SEARCH_TERMS)})
        return "GET", f"/api/search?{query}", b"", 200

    def _cart(self) -> Pick:
        item = {"product_id": self._pick(self.products), "quantity": self.rng.randint(1, 3)}
        return "POST", "/api/cart", json.dumps(item).encode(), 201


def _shuffled_kinds(rng: random.Random, mix: dict[str, int]) -> list[str]:
    kinds = [kind for kind, n in mix.items() for _ in range(n)]
    rng.shuffle(kinds)
    return kinds


def _times(rng: random.Random, n: int) -> list[float]:
    """`n` sorted epoch times over the day, busier in the afternoon than at night."""
    hours = rng.choices(range(24), weights=_HOURLY, k=n)
    return sorted(DAY_START + h * 3600 + rng.uniform(0, 3600) for h in hours)


def _token(rng: random.Random, nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


def _headers(rng: random.Random, target: str, body: bytes) -> tuple[tuple[str, str], ...]:
    browser = target == "/" or rng.random() < 0.55
    agent = rng.choice(_BROWSERS) if browser else rng.choice(_APPS)
    if target == "/health":
        browser, agent = False, _MONITOR
    accept = ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
              if target == "/" else "application/json")
    headers = [("Host", HOST), ("User-Agent", agent), ("Accept", accept),
               ("Accept-Encoding", "gzip, deflate")]
    private = target.startswith(("/api/users", "/api/orders", "/api/cart"))
    if private or (target != "/health" and rng.random() < 0.2):
        headers.append(("Authorization", f"Bearer {_token(rng, 30)}"))
    if browser:
        headers.append(("Cookie", f"session={_token(rng, 18)}; theme=light; consent=1"))
    if body:
        headers.append(("Content-Type", "application/json"))
    return tuple(headers)


def build_exchanges(seed: int = SEED) -> list[Exchange]:
    """The demo capture's exchanges: `CAPTURE_MIX`, spread over the day, ids `demo-N`."""
    rng = random.Random(f"capture:{seed}")
    traffic = _Traffic(rng, build_catalog(seed))
    kinds = _shuffled_kinds(rng, CAPTURE_MIX)
    exchanges = []
    for n, (kind, seen_at) in enumerate(zip(kinds, _times(rng, len(kinds))), start=1):
        method, target, body, _ = traffic.request(kind)
        request = Request("http", method, target, _headers(rng, target, body), body)
        exchanges.append(Exchange(id=f"demo-{n}", request=request, source=f"demo:capture#{n}",
                                  seen_at=round(seen_at, 3)))
    return exchanges


def _clf_time(epoch: float) -> str:
    t = time.gmtime(epoch)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def _response_bytes(rng: random.Random, target: str, status: int) -> int:
    if status >= 400:
        return rng.randint(95, 110)
    base = 1350 if target == "/" else 700 if target.startswith("/api/products?") else 300
    return base + rng.randint(0, 400)


def build_access_log(seed: int = SEED) -> list[str]:
    """Production's access log for the day, nginx combined format: `LOG_MIX` lines."""
    rng = random.Random(f"access-log:{seed}")
    traffic = _Traffic(rng, build_catalog(seed))
    clients = [f"{net}.{rng.randint(1, 254)}" for net in ("203.0.113", "198.51.100", "192.0.2")
               for _ in range(100)]
    kinds = _shuffled_kinds(rng, LOG_MIX)
    lines = []
    for kind, epoch in zip(kinds, _times(rng, len(kinds))):
        method, target, _, status = traffic.request(kind)
        agent = _MONITOR if kind == "health" else rng.choice(_BROWSERS + _APPS)
        referer = f"https://{HOST}/" if agent in _BROWSERS and target != "/" else "-"
        client = "10.0.0.7" if kind == "health" else rng.choice(clients)
        lines.append(f'{client} - - [{_clf_time(epoch)}] "{method} {target} HTTP/1.1" {status} '
                     f'{_response_bytes(rng, target, status)} "{referer}" "{agent}"')
    return lines


def write_demo_data(out_dir: Path, seed: int = SEED) -> tuple[Path, Path]:
    """Write `demo.jsonl` and `demo-access.log` into `out_dir`; returns both paths."""
    capture, log = out_dir / "demo.jsonl", out_dir / "demo-access.log"
    write_capture(capture, build_exchanges(seed), source="demo:capture",
                  stats={"generator": "scripts/make_demo_data.py", "seed": seed})
    log.write_text("\n".join(build_access_log(seed)) + "\n", encoding="utf-8")
    return capture, log


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: parse flags, write both files, say where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "captures"
    parser.add_argument("--out", type=Path, default=default_out,
                        help="output directory (default: the repo's captures/)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    args = parser.parse_args(argv)
    for path in write_demo_data(args.out, args.seed):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
