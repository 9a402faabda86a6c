"""The demo's old and new shop, its rules file and its bundled traffic.

The servers run for real on 127.0.0.1 port 0. A deliberately small normalizer and
differ live here (driven by the bundled rules file), so these tests pin the demo's
ground truth independently of shadowdiff's own normalize/diff stages.
"""

from __future__ import annotations

from testpaths import REPO
import asyncio
import importlib.util
import json
import re
import time
import tomllib
from collections import Counter
from html.parser import HTMLParser
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import aiohttp
import pytest

import shadowdiff.demo
from shadowdiff.capture.jsonl import read_capture
from shadowdiff.demo.apps import (
    EXPECTED_DIVERGENCES,
    IGNORED_DIVERGENCES,
    SEARCH_DELAY_S,
    VOLATILE_LOCATIONS,
    make_app,
    start_demo_servers,
)
from shadowdiff.demo.catalog import build_catalog
from shadowdiff.protocols.http.endpoints import http_endpoint
from shadowdiff.model import Exchange, Signature, signature_location

REPO = REPO
CAPTURE = REPO / "captures" / "demo.jsonl"
ACCESS_LOG = REPO / "captures" / "demo-access.log"
RULES_FILE = Path(shadowdiff.demo.__file__).parent / "data" / "shadowdiff.toml"
# x-served-by names the instance: no rule covers it, the demo's old replica measures it as noise
DEFAULT_IGNORED_HEADERS = {"date", "server", "x-request-id", "content-length", "x-served-by"}

T = TypeVar("T")
Session = aiohttp.ClientSession
Tree = dict[str, Any]

CATALOG = build_catalog()
LIVE_USER = min(u.id for u in CATALOG.users.values() if not u.deleted)
DELETED_USER = min(u.id for u in CATALOG.users.values() if u.deleted)
ORDER_ID = next(iter(CATALOG.orders))


# -- helpers: servers, a tiny rules-driven normalizer and differ ---------------------------


def with_servers(scenario: Callable[[Session, str, str], Awaitable[T]]) -> T:
    """Run `scenario(session, old_url, new_url)` against freshly started demo servers."""
    async def main() -> T:
        old_url, new_url, stop = await start_demo_servers()
        try:
            async with aiohttp.ClientSession() as session:
                return await scenario(session, old_url, new_url)
        finally:
            await stop()
    return asyncio.run(main())


async def fetch(session: Session, base: str, target: str, method: str = "GET",
                headers: Any = (), body: bytes = b"") -> tuple[Tree, float]:
    """The lifted response (status, header, body) and the seconds it took."""
    started = time.perf_counter()
    async with session.request(method, base + target, headers=list(headers), data=body or None,
                               allow_redirects=False) as resp:
        raw = await resp.read()
        header = {k.lower(): v for k, v in resp.headers.items()}
    elapsed = time.perf_counter() - started
    is_json = header.get("content-type", "").startswith("application/json")
    parsed = json.loads(raw) if is_json else raw.decode()
    if header.get("content-type", "").startswith("text/html"):
        parsed = _html_tree(parsed)  # compared element by element, as shadowdiff does
    return {"status": resp.status, "header": header, "body": parsed}, elapsed


class _HtmlNodes(HTMLParser):
    """Elements as nested dicts: {"text": ..., child name: node, or a list when repeated}.
    Attributes are left out: the demo's versions never differ in one."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, Any]] = [{"tag": "", "text": "", "children": []}]

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        node: dict[str, Any] = {"tag": tag, "text": "", "children": []}
        self.stack[-1]["children"].append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1 and self.stack.pop()["tag"] != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1]["text"] = " ".join(f"{self.stack[-1]['text']} {data}".split())


def _html_tree(text: str) -> dict[str, Any]:
    parser = _HtmlNodes()
    parser.feed(text)
    parser.close()

    def plain(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"text": node["text"]} if node["text"] else {}
        for child in node["children"]:
            out.setdefault(child["tag"], []).append(plain(child))
        return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in out.items()}
    return plain(parser.stack[0])


def load_rules() -> dict[str, Any]:
    with RULES_FILE.open("rb") as f:
        return tomllib.load(f)


def _rule_regex(rule: str) -> re.Pattern[str]:
    # `**` any steps, `[*]` any index, `*` one key step; longest tokens first.
    out = re.escape(rule).replace(r"\*\*", "\0").replace(r"\[\*\]", r"\[\d+\]")
    return re.compile(out.replace(r"\*", r"[^.\[]+").replace("\0", ".*"))


def _flatten(value: Any, path: str, unordered: list[re.Pattern[str]], out: Tree) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{path}.{key}", unordered, out)
    elif isinstance(value, list) and value:
        if any(p.fullmatch(path) for p in unordered):
            value = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", unordered, out)
    else:
        out[path] = value


def normalize(tree: Tree, rules: dict[str, Any]) -> Tree:
    """Leaf path -> value after the rules file's ignore_paths, unordered and masks."""
    norm = rules["normalize"]
    header = {k: v for k, v in tree["header"].items() if k not in DEFAULT_IGNORED_HEADERS}
    leaves: Tree = {}
    unordered = [_rule_regex(r) for r in norm["unordered"]]
    for section, value in (("status", tree["status"]), ("header", header), ("body", tree["body"])):
        _flatten(value, section, unordered, leaves)
    ignored = [_rule_regex(r) for r in norm["ignore_paths"]]
    leaves = {k: v for k, v in leaves.items() if not any(p.fullmatch(k) for p in ignored)}
    for mask in norm["masks"]:
        leaves = {k: re.sub(mask["pattern"], f"<{mask['name']}>", v) if isinstance(v, str)
                  else v for k, v in leaves.items()}
    return leaves


def differences(old: Tree, new: Tree) -> set[tuple[str, str]]:
    """(location, kind) for each leaf that differs, in the report's vocabulary."""
    found = set()
    for path in old.keys() | new.keys():
        section = path.split(".", 1)[0]
        if path not in new or path not in old:
            gone = path not in new
            kind = ("header_missing" if gone else "header_added") if section == "header" \
                else ("field_missing" if gone else "field_added")
        elif old[path] == new[path]:
            continue
        elif section in ("status", "header"):
            kind = f"{section}_changed"
        elif path == "body" and isinstance(old[path], str):
            kind = "body_changed"
        else:
            kind = "type_changed" if type(old[path]) is not type(new[path]) else "value_changed"
        found.add((path, kind))
    return found


async def diff_target(session: Session, old_url: str, new_url: str, target: str,
                      method: str = "GET", body: bytes = b"") -> set[tuple[str, str]]:
    rules = load_rules()
    old, _ = await fetch(session, old_url, target, method, body=body)
    new, _ = await fetch(session, new_url, target, method, body=body)
    return differences(normalize(old, rules), normalize(new, rules))


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_demo_data",
                                                  REPO / "scripts" / "make_demo_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the services --------------------------------------------------------------------------


def test_make_app_rejects_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="'old' or 'new'"):
        make_app("staging")  # type: ignore[arg-type]


def test_servers_start_on_distinct_free_ports_and_stop() -> None:
    async def main() -> None:
        old_url, new_url, stop = await start_demo_servers()
        assert old_url.startswith("http://127.0.0.1:") and new_url.startswith("http://127.0.0.1:")
        assert old_url != new_url
        async with aiohttp.ClientSession() as session:
            for url in (old_url, new_url):
                tree, _ = await fetch(session, url, "/health")
                assert tree["body"]["status"] == "ok"
        await stop()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await fetch(session, old_url, "/health")
    asyncio.run(main())


EXPECTED_BY_TARGET: dict[str, set[tuple[str, str]]] = {
    "/": {("body.html.body.p.text", "value_changed")},
    "/health": set(),
    "/api/categories": set(),
    "/api/products?category=books&page=1": {("header.cache-control", "header_changed")},
    "/api/products?page=9": {("header.cache-control", "header_changed")},
    "/api/products/1003": {("body.legacy_sku", "field_missing")},
    "/api/products/2999": set(),
    "/api/recommendations/1003": set(),
    f"/api/users/{LIVE_USER}": {("body.address.zip", "field_missing"),
                                ("body.address.postal_code", "field_added")},
    f"/api/users/{DELETED_USER}": {("status", "status_changed"), ("body.error", "value_changed")},
    "/api/users/9999": set(),
    f"/api/users/{LIVE_USER}/orders": set(),
    f"/api/users/{DELETED_USER}/orders": set(),
    f"/api/orders/{ORDER_ID}": {("body.total", "type_changed")},
    "/api/orders/00000000-0000-4000-8000-000000000000": set(),
    "/api/search?q=lamp": set(),
    "/api/search?q=umbrella": set(),
}


def test_each_deliberate_difference_is_on_its_endpoint_only() -> None:
    async def scenario(session: Session, old_url: str, new_url: str) -> dict[str, Any]:
        return {t: await diff_target(session, old_url, new_url, t) for t in EXPECTED_BY_TARGET}

    assert with_servers(scenario) == EXPECTED_BY_TARGET


def test_post_cart_answers_identically_after_rules() -> None:
    async def scenario(session: Session, old_url: str, new_url: str) -> tuple[Any, ...]:
        good = await diff_target(session, old_url, new_url, "/api/cart", "POST",
                                 b'{"product_id": 1003, "quantity": 2}')
        created, _ = await fetch(session, old_url, "/api/cart", "POST",
                                 body=b'{"product_id": 1003}')
        bad, _ = await fetch(session, old_url, "/api/cart", "POST", body=b"not json")
        return good, created["status"], bad["status"]

    # The cart id is random per call, so the POST differs by value: one more reason it is
    # never replayed by default.
    good, created, bad = with_servers(scenario)
    assert good == {("body.cart_id", "value_changed")}
    assert (created, bad) == (201, 400)


def test_tags_come_in_another_order_which_the_rules_hide() -> None:
    async def scenario(session: Session, old_url: str, new_url: str) -> list[Tree]:
        return [(await fetch(session, url, t))[0]["body"] for t in
                ("/api/products/1003", "/api/products?category=toys") for url in (old_url, new_url)]

    old_detail, new_detail, old_list, new_list = with_servers(scenario)
    assert old_detail["tags"] != new_detail["tags"]
    assert sorted(old_detail["tags"]) == sorted(new_detail["tags"])
    assert [i["tags"] for i in old_list["items"]] != [i["tags"] for i in new_list["items"]]
    rules = load_rules()
    assert {sig.location for sig in IGNORED_DIVERGENCES} <= set(rules["normalize"]["unordered"])


def test_volatile_values_change_on_every_call_in_both_versions() -> None:
    async def scenario(session: Session, old_url: str, new_url: str) -> list[list[Tree]]:
        return [[(await fetch(session, url, t))[0] for _ in range(2)]
                for url in (old_url, new_url) for t in ("/api/products/1003", "/")]

    rules = load_rules()
    for first, second in with_servers(scenario):
        assert first["header"]["x-request-id"] != second["header"]["x-request-id"]
        assert "date" in first["header"]
        if first["header"]["content-type"].startswith("application/json"):
            assert first["body"]["meta"]["request_id"] == first["header"]["x-request-id"]
            assert first["body"]["generated_at"] != second["body"]["generated_at"]
            assert first["body"]["meta"]["request_id"] != second["body"]["meta"]["request_id"]
        else:
            assert first["body"] != second["body"]  # only the embedded timestamp moves
        assert normalize(first, rules) == normalize(second, rules)
    assert set(VOLATILE_LOCATIONS) >= {"body.generated_at", "body.meta.request_id"}


def test_new_search_is_slow_and_old_is_not() -> None:
    async def scenario(session: Session, old_url: str, new_url: str) -> tuple[float, float]:
        # The best of three for old, so a busy machine cannot make old look slow.
        old_s = min([(await fetch(session, old_url, "/api/search?q=lamp"))[1]
                     for _ in range(3)])
        _, new_s = await fetch(session, new_url, "/api/search?q=lamp")
        return old_s, new_s

    old_s, new_s = with_servers(scenario)
    assert new_s >= SEARCH_DELAY_S * 0.95
    assert new_s - old_s >= SEARCH_DELAY_S * 0.6


def test_replaying_the_whole_capture_shows_exactly_the_expected_signatures() -> None:
    exchanges = [e for e in read_capture(CAPTURE) if e.request.method == "GET"]
    rules = load_rules()

    async def one(session: Session, old_url: str, new_url: str, ex: Exchange,
                  gate: asyncio.Semaphore) -> set[Signature]:
        async with gate:
            req = ex.request
            old, _ = await fetch(session, old_url, req.target, headers=req.headers)
            new, _ = await fetch(session, new_url, req.target, headers=req.headers)
        endpoint = http_endpoint(req.method, req.target)
        return {Signature(endpoint, signature_location(loc), kind)
                for loc, kind in differences(normalize(old, rules), normalize(new, rules))}

    async def scenario(session: Session, old_url: str, new_url: str) -> set[Signature]:
        gate = asyncio.Semaphore(rules["replay"]["concurrency"])
        found = await asyncio.gather(*(one(session, old_url, new_url, e, gate)
                                       for e in exchanges))
        return set().union(*found)

    assert with_servers(scenario) == set(EXPECTED_DIVERGENCES)


# -- the rules file and the bundled traffic ------------------------------------------------


def test_rules_file_uses_only_the_agreed_keys() -> None:
    rules = load_rules()
    assert set(rules) == {"replay", "normalize"}
    assert set(rules["replay"]) == {"concurrency", "timeout_s"}
    assert set(rules["normalize"]) == {"ignore_paths", "unordered", "masks"}
    assert all(set(m) == {"name", "pattern"} for m in rules["normalize"]["masks"])
    stamp = "Rendered at 2024-06-11T08:15:02.123456+00:00 and 2024-06-11T08:15:02Z"
    (mask,) = rules["normalize"]["masks"]
    assert re.sub(mask["pattern"], "<t>", stamp) == "Rendered at <t> and <t>"


def test_capture_reads_back_with_the_intended_mix() -> None:
    exchanges = list(read_capture(CAPTURE))
    assert [e.id for e in exchanges] == [f"demo-{n}" for n in range(1, 401)]
    assert all(e.source == f"demo:capture#{e.id[5:]}" for e in exchanges)
    seen = [e.seen_at for e in exchanges]
    assert seen == sorted(seen) and seen[-1] - seen[0] > 20 * 3600
    assert Counter(e.request.method for e in exchanges) == {"GET": 390, "POST": 10}
    endpoints = Counter(http_endpoint(e.request.method, e.request.target) for e in exchanges)
    assert endpoints == {
        "GET /api/products/{id}": 90, "GET /api/products": 80, "GET /api/users/{id}": 60,
        "GET /api/orders/{id}": 50, "GET /api/users/{id}/orders": 40, "GET /api/search": 40,
        "GET /health": 20, "GET /": 10, "POST /api/cart": 10,
    }
    assert all(e.request.header(h) for e in exchanges for h in ("Host", "User-Agent", "Accept"))
    auth = [e.request.header("Authorization") for e in exchanges]
    assert 50 < sum(a is not None for a in auth) < 400
    assert all(a.startswith("Bearer ") for a in auth if a)
    assert any(e.request.header("Cookie") for e in exchanges)
    deleted = {u.id for u in CATALOG.users.values() if u.deleted}
    assert any(e.request.target == f"/api/users/{uid}" for e in exchanges for uid in deleted)


_COMBINED = re.compile(r'(\S+) - - \[([^\]]+)\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+) '
                       r'"([^"]*)" "([^"]*)"')


def test_access_log_is_skewed_differently_and_shows_untested_endpoints() -> None:
    lines = ACCESS_LOG.read_text(encoding="utf-8").splitlines()
    matches = [_COMBINED.fullmatch(line) for line in lines]
    assert len(lines) == 20_000 and all(matches)
    usage = Counter(http_endpoint(m[3], m[4]) for m in matches if m)
    (top, top_n), = usage.most_common(1)
    assert top == "GET /api/products/{id}" and top_n > 0.3 * len(lines)
    captured = {http_endpoint(e.request.method, e.request.target) for e in read_capture(CAPTURE)}
    untested = {ep for ep, n in usage.items() if ep not in captured and n > 0.05 * len(lines)}
    assert untested == {"GET /api/categories", "GET /api/recommendations/{id}"}
    assert usage["GET /api/users/{id}"] < usage["GET /api/search"]
    assert lines[0].split("[")[1].startswith("11/Jun/2024:00")


def test_generator_rewrites_the_committed_files(tmp_path: Path) -> None:
    capture, log = load_generator().write_demo_data(tmp_path)
    assert log.read_bytes() == ACCESS_LOG.read_bytes()
    # The header line carries the creation time; everything after it must match.
    assert capture.read_bytes().split(b"\n", 1)[1] == CAPTURE.read_bytes().split(b"\n", 1)[1]
