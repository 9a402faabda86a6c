"""Benchmark the diff stage: compare() against a plain DeepDiff on the same ~2 KB JSON pairs.

    .venv/bin/python benchmarks/diff.py [--seconds 0.3]

Then 60 KB HTML pages (issue 16): identical bodies through the judge's bytes-equal fast
path, and differing pages compared node by node (both sides parsed, no cache) beside a
difflib line diff of the same pair, as a ratio measured in the same run (and
benchmarks/diff_instructions.py counts the instructions of the same compares: repeatable
whatever the load).

Each case is timed for about `--seconds` (compare) and a few dozen calls (DeepDiff, which is
~100x slower), in the same run, so the ratio holds whatever the machine's load. A last line
times normalize() on the same documents with a few typical rules.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import time
from typing import Any, Callable

import orjson
from deepdiff import DeepDiff

from shadowdiff.compare import markup
from shadowdiff.compare.diff import compare
from shadowdiff.compare.judge import compare_responses
from shadowdiff.config import Config
from shadowdiff.model import Response
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.compare.normalize import Mask, Rules, normalize


def make_document(seed: int = 0) -> dict[str, Any]:
    """A lifted tree whose body is ~2 KB of JSON: 20 items of 6 fields plus a meta block."""
    items = [
        {
            "id": 1000 + seed + i,
            "sku": f"SKU-{seed + i:05d}",
            "name": f"Item number {i}",
            "price": round((i + 1) * 3.17, 2),
            "in_stock": i % 3 != 0,
            "tags": ["sale", "new"] if i % 2 else ["core"],
        }
        for i in range(20)
    ]
    meta = {"page": 1, "per_page": 20, "total": 240, "next": "/items?page=2",
            "generated_at": "2024-05-01T12:00:00Z", "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}
    body = {"items": items, "meta": meta}
    header = {"content-type": "application/json", "cache-control": "no-store",
              "date": "Wed, 01 May 2024 12:00:00 GMT", "x-request-id": "abc123"}
    return {"status": 200, "header": header, "body": body}


def cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Named (old, new) pairs: identical (distinct objects), one and two fields differing."""
    old = make_document()
    one = copy.deepcopy(old)
    one["body"]["items"][7]["price"] = 99.99
    two = copy.deepcopy(one)
    two["body"]["meta"]["total"] = 241
    return {"identical": (old, copy.deepcopy(old)), "1 field": (old, one), "2 fields": (old, two)}


def make_page(rows: int = 420, timing: str = "2.145", price: str = "€{p}", sep: str = "\n") -> bytes:
    """A ~60 KB template-like HTML page: a head, a nav, a table of `rows` rows, a timed footer."""
    cells = sep.join(f'<tr id="row-{i}" class="item"><td class="sku">SKU-{i:05d}</td>'
                     f"<td>Item number {i} with a longer name</td>"
                     f'<td class="price">{price.format(p=f"{(i + 1) * 3.17:.2f}")}</td></tr>'
                     for i in range(rows))
    page = sep.join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Catalog</title>',
        '<link rel="stylesheet" href="/static/site.css"><link rel="icon" href="/favicon.ico"></head>',
        '<body><header><nav><a href="/">Home</a> <a href="/shop">Shop</a></nav></header>',
        '<main><h1>Catalog</h1><table class="items"><tbody>', cells, "</tbody></table></main>",
        f"<footer><p>Copyright 2024</p><p>Contact</p><p>Query took {timing}ms</p></footer>",
        "</body></html>"])
    return page.encode()


def html_cases() -> dict[str, tuple[bytes, bytes]]:
    """(old, new) page pairs: identical; timing + one cell; timing + every price (a template edit)."""
    old = make_page()
    one = old.replace(b"Item number 200 ", b"Item no. 200 ").replace(b"2.145ms", b"3.9ms")
    return {"identical": (old, bytes(old)), "timing+cell": (old, one),
            "template": (old, make_page(timing="3.9", price="{p} EUR")),
            "minified": (make_page(sep=""), make_page(sep="").replace(b"2.145ms", b"3.9ms"))}


def bench_html(seconds: float) -> None:
    config = Config()
    headers = (("Content-Type", "text/html; charset=utf-8"),)
    print(f"{'html page':<12} {'KB':>4} {'compare ms':>11} {'found':>6} {'difflib ms':>11} {'ratio':>6}")
    for name, (old_body, new_body) in html_cases().items():
        old, new = Response(200, headers, old_body), Response(200, headers, new_body)

        def ours() -> list[Any]:
            markup._CACHE.clear()  # both pages parsed every time: a fresh pair
            return compare_responses(old, new, "GET /catalog", PROTOCOL, config)
        old_lines, new_lines = old_body.decode().splitlines(), new_body.decode().splitlines()
        cost = per_call(ours, seconds, 2000)
        theirs = per_call(lambda: list(difflib.unified_diff(old_lines, new_lines)), seconds, 2000)
        print(f"{name:<12} {len(old_body) / 1024:>4.0f} {cost * 1e3:>11.3f} {len(ours()):>6}"
              f" {theirs * 1e3:>11.3f} {cost / theirs:>5.1f}x")


def per_call(fn: Callable[[], Any], seconds: float, max_calls: int, batches: int = 8) -> float:
    """Seconds per call: the best of `batches` batches sharing about `seconds` and
    `max_calls` calls. The best batch, as timeit advises: on a shared machine the slower
    ones measure the neighbours (the same rule for both sides of a ratio)."""
    fn()  # warm caches and imports outside the timing
    best = float("inf")
    for _ in range(batches):
        calls, start = 0, time.perf_counter()
        deadline = start + seconds / batches
        while calls < max(1, max_calls // batches):
            fn()
            calls += 1
            if time.perf_counter() > deadline:
                break
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per case")
    args = parser.parse_args()
    pairs = cases()
    size = len(orjson.dumps(pairs["identical"][0]["body"]))
    print(f"body size: {size} bytes of JSON")
    print(f"{'case':<10} {'compare µs':>11} {'pairs/s':>9} {'DeepDiff µs':>12} {'pairs/s':>8} {'ratio':>7}")
    for name, (old, new) in pairs.items():
        ours = per_call(lambda: compare(old, new, "GET /items"), args.seconds, 200_000)
        theirs = per_call(lambda: DeepDiff(old, new, view="tree"), args.seconds, 40)
        print(f"{name:<10} {ours * 1e6:>11.1f} {1 / ours:>9.0f} {theirs * 1e6:>12.0f}"
              f" {1 / theirs:>8.0f} {theirs / ours:>6.0f}x")
    rules = Rules(ignore_paths=("body.meta.request_id",),
                  masks=(Mask("ts", re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z?")),),
                  unordered=("body.items[*].tags",))
    old = pairs["identical"][0]
    cost = per_call(lambda: normalize(old, rules), args.seconds, 200_000)
    print(f"normalize (ignore 1 path, 1 mask on body.**, unordered tags): {cost * 1e6:.1f} µs/tree")
    defaults = Rules()
    cost = per_call(lambda: normalize(old, defaults), args.seconds, 200_000)
    print(f"normalize (default rules: headers only): {cost * 1e6:.1f} µs/tree")
    bench_html(args.seconds)


if __name__ == "__main__":
    main()
