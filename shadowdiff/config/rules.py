"""The normalization rules of `[normalize]` and each `[[endpoint]]` section -> `Rules`.

Every path and regex is compiled here, so a bad pattern is an error at load time that
names the key, not a surprise halfway through a night's replay.
"""

from __future__ import annotations

import re
from typing import Any

from shadowdiff.compare.normalize import DEFAULT_HEADER_SETS, DEFAULT_IGNORE_HEADERS, Mask, Rules, Tolerance
from shadowdiff.compare.rulebook import EndpointRules
from shadowdiff.compare.rules.masks import MASK_NAME
from shadowdiff.compare.rules.presets import PRESETS
from shadowdiff.tables import check_keys, str_list, typed
from shadowdiff.errors import ConfigError
from shadowdiff.paths import compile_path


_PATH_LISTS = ("ignore_paths", "case_insensitive", "whitespace_insensitive", "html", "xml")


_RULE_KEYS = {"ignore_headers", "default_ignore_headers", "ignore_paths", "masks", "unordered",
              "tolerance", "header_sets", *_PATH_LISTS}


def parse_rules(table: Any, prefix: str, src: str, *, defaults: bool) -> Rules:
    p = prefix + "."
    check_keys(table, _RULE_KEYS | ({"match"} if not defaults else set()), p, src)
    use_defaults = defaults and typed(table, "default_ignore_headers", bool, p, src, True)
    headers = frozenset(h.lower() for h in str_list(table, "ignore_headers", p, src))
    sets = frozenset(h.lower() for h in str_list(table, "header_sets", p, src))
    paths = {key: path_list(table, key, p, src) for key in _PATH_LISTS}
    unordered, keyed = parse_unordered(table, p, src)
    masks = typed(table, "masks", list, p, src, [])
    tolerances = typed(table, "tolerance", list, p, src, [])
    return Rules(
        ignore_headers=(DEFAULT_IGNORE_HEADERS if use_defaults else frozenset()) | headers,
        masks=tuple(parse_mask(m, f"{p}masks[{i}]", src) for i, m in enumerate(masks)),
        unordered=unordered, unordered_keys=keyed,
        tolerances=tuple(parse_tolerance(t, f"{p}tolerance[{i}]", src) for i, t in enumerate(tolerances)),
        header_sets=(DEFAULT_HEADER_SETS if defaults else frozenset()) | sets,
        **paths,
    )


def path_list(table: dict[str, Any], key: str, prefix: str, src: str) -> tuple[str, ...]:
    patterns = str_list(table, key, prefix, src)
    for pattern in patterns:
        check_path(pattern, src, prefix + key)
    return patterns


def parse_unordered(table: dict[str, Any], prefix: str, src: str
               ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`unordered = ["body.tags", {path = "body.items", key = "id"}]`."""
    plain: list[str] = []
    keyed: list[tuple[str, str]] = []
    for i, item in enumerate(typed(table, "unordered", list, prefix, src, [])):
        key = f"{prefix}unordered[{i}]"
        if isinstance(item, str):
            check_path(item, src, key)
            plain.append(item)
            continue
        check_keys(item, {"path", "key"}, key + ".", src)
        path, field_name = item.get("path"), item.get("key")
        if not isinstance(path, str) or not isinstance(field_name, str) or not field_name:
            raise ConfigError("needs a 'path' string and a 'key' field name, e.g. "
                              '{ path = "body.items", key = "id" }', path=src, key=key)
        check_path(path, src, key + ".path")
        keyed.append((path, field_name))
    return tuple(plain), tuple(keyed)


def check_path(pattern: str, src: str, key: str) -> None:
    try:
        compile_path(pattern)
    except ValueError as exc:
        raise ConfigError(f"bad path {pattern!r}: {exc}", path=src, key=key) from exc


def parse_mask(table: Any, key: str, src: str) -> Mask:
    """A mask table, or a preset's name (`"uuid"`): a table without a pattern names a preset."""
    if isinstance(table, str):
        table = {"name": table}
    check_keys(table, {"name", "pattern", "paths"}, key + ".", src)
    pattern = typed(table, "pattern", str, key + ".", src, None)
    name = typed(table, "name", str, key + ".", src, None)
    if pattern is None and name is None:
        raise ConfigError("a mask needs a 'pattern', or the 'name' of a ready-made one "
                          f"({', '.join(sorted(PRESETS))})", path=src, key=key)
    if pattern is None:
        if name not in PRESETS:
            raise ConfigError(f"unknown mask name {name!r} and no 'pattern' "
                              f"(ready-made: {', '.join(sorted(PRESETS))})", path=src, key=key + ".name")
        pattern = PRESETS[name]
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regex {pattern!r}: {exc}", path=src, key=key + ".pattern") from exc
    name = name or "masked"
    if not MASK_NAME.fullmatch(name):
        raise ConfigError("a mask name is letters, digits and - _ . :", path=src, key=key + ".name")
    paths = path_list(table, "paths", key + ".", src)
    return Mask(name=name, pattern=regex, paths=paths) if paths else Mask(name=name, pattern=regex)


def parse_tolerance(table: Any, key: str, src: str) -> Tolerance:
    check_keys(table, {"paths", "absolute", "relative"}, key + ".", src)
    paths = path_list(table, "paths", key + ".", src)
    margins = {k: float(typed(table, k, (int, float), key + ".", src, 0.0))
               for k in ("absolute", "relative")}
    try:
        return Tolerance(paths=paths, **margins)
    except ValueError as exc:
        raise ConfigError(str(exc), path=src, key=key) from exc


def parse_endpoint(table: Any, index: int, src: str) -> EndpointRules:
    key = f"endpoint[{index}]"
    if not isinstance(table, dict) or not isinstance(table.get("match"), str):
        raise ConfigError("needs a 'match' string such as \"GET /users/{id}\"", path=src, key=key)
    return EndpointRules(match=table["match"], rules=parse_rules(table, key, src, defaults=False))
