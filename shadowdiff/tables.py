"""Checks of parsed TOML tables, shared by every section's parser (shadowdiff.config and each
stage's own settings): unknown keys and wrong types are errors naming the file and the dotted
key, never silently ignored."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shadowdiff.errors import ConfigError


def check_keys(table: Any, allowed: set[str], prefix: str, src: str) -> None:
    """`table` is a table whose keys are all in `allowed`; `prefix` is its dotted name plus "."."""
    if not isinstance(table, dict):
        raise ConfigError("must be a table", path=src, key=prefix.rstrip(".") or "<root>")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(allowed))})",
                              path=src, key=prefix + key)


def typed(table: dict[str, Any], key: str, types: type | tuple[type, ...], prefix: str,
           src: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: `concurrency = true` must not pass as 1
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ConfigError(f"must be {names}, not {type(value).__name__}", path=src, key=prefix + key)
    return value


def str_list(table: dict[str, Any], key: str, prefix: str, src: str) -> tuple[str, ...]:
    value = typed(table, key, list, prefix, src, [])
    if not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of strings", path=src, key=prefix + key)
    return tuple(value)


def simple_table(cls: type, table: Any, prefix: str, src: str) -> Any:
    fields = {f for f in cls.__dataclass_fields__}
    check_keys(table, fields, prefix + ".", src)
    base = cls()
    values = {k: typed(table, k, type(getattr(base, k)) if not isinstance(getattr(base, k), float)
                        else (int, float), prefix + ".", src, getattr(base, k)) for k in table}
    return replace(base, **values)
