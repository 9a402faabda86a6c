"""Benchmark the diff stage: compare() against a plain DeepDiff on the same ~2 KB JSON pairs.

    .venv/bin/python benchmarks/diff.py [--seconds 0.3]

Each case is timed for about `--seconds` (compare) and a few dozen calls (DeepDiff, which is
~100x slower), in the same run, so the ratio holds whatever the machine's load. A last line
times normalize() on the same documents with a few typical rules.
"""

from __future__ import annotations

import argparse
import copy
import re
import time
from typing import Any, Callable

import orjson
from deepdiff import DeepDiff

from shadowdiff.compare.diff import compare
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


def per_call(fn: Callable[[], Any], seconds: float, max_calls: int) -> float:
    """Seconds per call, measured over about `seconds` or `max_calls` calls."""
    fn()  # warm caches and imports outside the timing
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while calls < max_calls:
        fn()
        calls += 1
        if calls % 16 == 0 and time.perf_counter() > deadline:
            break
    return (time.perf_counter() - start) / calls


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


if __name__ == "__main__":
    main()
