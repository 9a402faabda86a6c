"""The demo shop's data: products, users and orders, built deterministically from a seed.

Both demo services (`apps.py`) serve this same catalog, so every difference between
them is a deliberate code change, never a data change; the traffic generator
(`scripts/make_demo_data.py`) draws its ids from it, so captured requests hit real rows.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

#: The seed the demo data, the capture and the access log are all built from.
SEED = 20240611

CATEGORIES: tuple[str, ...] = ("kitchen", "garden", "books", "toys", "electronics", "outdoor")
PRODUCTS_PER_CATEGORY = 16
PER_PAGE = 12
USER_COUNT = 150

_NOUNS: dict[str, tuple[str, ...]] = {
    "kitchen": ("kettle", "pan", "knife", "grinder", "teapot", "mixer", "board", "scale"),
    "garden": ("hose", "shovel", "planter", "lamp", "bench", "rake", "sprinkler", "trowel"),
    "books": ("atlas", "cookbook", "novel", "journal", "guide", "almanac", "poems", "diary"),
    "toys": ("robot", "puzzle", "kite", "train", "blocks", "yo-yo", "drone", "doll"),
    "electronics": ("speaker", "charger", "lamp", "headset", "router", "camera", "clock", "cable"),
    "outdoor": ("tent", "lantern", "backpack", "stove", "hammock", "compass", "bottle", "chair"),
}
_ADJECTIVES = ("classic", "compact", "deluxe", "eco", "folding", "heavy-duty", "mini", "nordic",
               "retro", "smart", "solar", "travel")
_TAGS = ("bestseller", "new", "gift", "eco", "sale", "limited", "bundle", "premium", "imported")
_FIRST = ("Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kiri", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq")
_LAST = ("Almeida", "Berg", "Costa", "Dubois", "Engel", "Fischer", "Garcia", "Haas", "Ivanova",
         "Jensen", "Kowalski", "Lind", "Moreau", "Nakamura", "Okafor", "Petrov")
_CITIES = (("Lyon", "69002"), ("Porto", "4050-100"), ("Malmo", "211 19"), ("Graz", "8010"),
           ("Leeds", "LS1 4AP"), ("Turin", "10121"), ("Ghent", "9000"), ("Bergen", "5003"))
_ORDER_STATUSES = ("delivered", "delivered", "delivered", "shipped", "processing", "cancelled")


@dataclass(frozen=True, slots=True)
class Product:
    """One product row."""

    id: int
    name: str
    category: str
    price: float
    tags: tuple[str, ...]
    legacy_sku: str
    stock: int


@dataclass(frozen=True, slots=True)
class User:
    """One customer; `deleted` users still have a row (soft delete)."""

    id: int
    name: str
    email: str
    city: str
    zip: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order."""

    product_id: int
    quantity: int
    unit_price: float


@dataclass(frozen=True, slots=True)
class Order:
    """One order, addressed by a UUID in the API."""

    id: str
    user_id: int
    placed_on: str
    status: str
    lines: tuple[OrderLine, ...]

    @property
    def total(self) -> float:
        """Sum of the lines, rounded to cents."""
        return round(sum(line.unit_price * line.quantity for line in self.lines), 2)


@dataclass(frozen=True)
class Catalog:
    """Everything the demo shop serves, keyed for the handlers' lookups."""

    products: dict[int, Product]
    users: dict[int, User]
    orders: dict[str, Order]
    orders_by_user: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def by_category(self, category: str | None) -> list[Product]:
        """Products of one category (all when None), in id order."""
        return [p for p in self.products.values() if category in (None, p.category)]

    def search(self, query: str, limit: int = 10) -> list[Product]:
        """Products whose name contains every word of `query`, case-insensitively."""
        words = query.lower().split()
        if not words:
            return []
        hits = [p for p in self.products.values() if all(w in p.name.lower() for w in words)]
        return hits[:limit]

    def recommendations(self, product_id: int, limit: int = 4) -> list[Product]:
        """Other products of the same category, cheapest first."""
        product = self.products[product_id]
        same = [p for p in self.by_category(product.category) if p.id != product_id]
        return sorted(same, key=lambda p: (p.price, p.id))[:limit]


def _products(rng: random.Random) -> dict[int, Product]:
    products: dict[int, Product] = {}
    next_id = 1001
    for category in CATEGORIES:
        for _ in range(PRODUCTS_PER_CATEGORY):
            noun = rng.choice(_NOUNS[category])
            name = f"{rng.choice(_ADJECTIVES).capitalize()} {noun}"
            products[next_id] = Product(
                id=next_id, name=name, category=category,
                # Priced in cents so every price prints with at most two decimals.
                price=(rng.randint(40, 1800) * 10 + rng.choice((0, 5, 9))) / 100,
                tags=tuple(rng.sample(_TAGS, rng.randint(2, 4))),
                legacy_sku=f"SKU-{category[:3].upper()}-{rng.randint(10000, 99999)}",
                stock=rng.randint(0, 250),
            )
            next_id += 1
    return products


def _users(rng: random.Random) -> dict[int, User]:
    users: dict[int, User] = {}
    for uid in range(1, USER_COUNT + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, zip_code = rng.choice(_CITIES)
        users[uid] = User(id=uid, name=f"{first} {last}",
                          email=f"{first.lower()}.{last.lower()}{uid}@example.com",
                          city=city, zip=zip_code, deleted=rng.random() < 0.08)
    return users


def _orders(rng: random.Random, products: dict[int, Product],
            users: dict[int, User]) -> dict[str, Order]:
    orders: dict[str, Order] = {}
    product_ids = sorted(products)
    for uid in users:
        for _ in range(rng.randint(0, 4)):
            oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            picks = rng.sample(product_ids, rng.randint(1, 4))
            lines = tuple(OrderLine(pid, rng.randint(1, 3), products[pid].price) for pid in picks)
            day = f"2024-{rng.randint(1, 5):02d}-{rng.randint(1, 28):02d}"
            orders[oid] = Order(oid, uid, day, rng.choice(_ORDER_STATUSES), lines)
    return orders


@lru_cache(maxsize=4)
def build_catalog(seed: int = SEED) -> Catalog:
    """The demo catalog for `seed`; cached because it is immutable and asked for often.

    >>> build_catalog().products[1001].category
    'kitchen'
    """
    rng = random.Random(seed)
    products = _products(rng)
    users = _users(rng)
    orders = _orders(rng, products, users)
    by_user: dict[int, list[str]] = {}
    for order in orders.values():
        by_user.setdefault(order.user_id, []).append(order.id)
    return Catalog(products, users, orders, {u: tuple(ids) for u, ids in by_user.items()})
