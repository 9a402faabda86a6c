"""Which rule hid a difference: the report's answer to "what did you suppress, and why?".

The judge audits some exchanges: it diffs the raw lifted trees as well as the normalized
ones, and every raw divergence whose signature the normalized diff no longer shows was
hidden by a rule. `explain` names the rule, as it is written in the config
(`ignore_paths "body.meta.request_id"`, `mask "uuid"`), so a reader can find and review it.
"""

from __future__ import annotations

import json
from typing import Any

from shadowdiff.model import Divergence
from shadowdiff.compare.ruleset import Rules
from shadowdiff.paths import compile_path, join_location, parse_location


def explain(rules: Rules, d: Divergence) -> str:
    """The first rule that covers divergence `d` (its location or an ancestor of it).

    >>> explain(Rules(ignore_paths=("body.meta",)), Divergence("GET /", "body.meta.id",
    ...         "value_changed", 1, 2))
    'ignore_paths "body.meta"'
    """
    locations = _prefixes(d.location)
    header = _header_name(d.location)
    if header is not None and header in rules.ignore_headers:
        return f'ignore_headers "{header}"'
    if header is not None and header in rules.header_sets:
        return f'header_sets "{header}"'
    for name, patterns in (("ignore_paths", rules.ignore_paths), ("unordered", rules.unordered),
                           ("unordered", tuple(p for p, _ in rules.unordered_keys)),
                           *((n, getattr(rules, n)) for n in
                             ("html", "xml", "whitespace_insensitive", "case_insensitive"))):
        found = _first_match(patterns, locations)
        if found is not None:
            return f'{name} "{found}"'
    for tolerance in rules.tolerances:
        if d.kind == "value_changed" and tolerance.applies(d.location) \
                and tolerance.close(d.old, d.new):
            return f'tolerance "{", ".join(tolerance.paths)}"'
    texts = [_text(v) for v in (d.old, d.new)]
    for mask in rules.masks:
        if _first_match(mask.paths, locations) is not None \
                and any(mask.pattern.search(t) for t in texts):
            return f'mask "{mask.name}"'
    return "rules"  # several rules together (a mask inside a reordered list, say)


def _prefixes(location: str) -> list[str]:
    try:
        keys = parse_location(location)
    except ValueError:
        return [location]
    out, current = [], ""
    for key in keys:
        current = join_location(current, key) if isinstance(key, (str, int)) else current + "[*]"
        out.append(current)
    return out


def _header_name(location: str) -> str | None:
    return location[len("header."):].lower() if location.startswith("header.") else None


def _first_match(patterns: tuple[str, ...], locations: list[str]) -> str | None:
    for pattern in patterns:
        compiled = compile_path(pattern)
        if any(compiled.matches(loc) for loc in locations):
            return pattern
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
