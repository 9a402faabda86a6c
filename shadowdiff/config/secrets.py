"""The `[redact]` section (what capture-time redaction replaces, shadowdiff.scrub) and the
`[auth]` section (credentials replay sets per target, read from the environment).

    [redact]                           [auth.new]
    headers = ["x-session"]            Authorization = "Bearer ${NEW_TOKEN}"
    fields = ["pin"]                   [auth.old]
    patterns = ["^card"]               Authorization = "Bearer ${OLD_TOKEN}"
    key_file = "/etc/shadowdiff/redact.key"
"""

from __future__ import annotations

import os
import re
from typing import Any

from shadowdiff.errors import ConfigError
from shadowdiff.scrub import RedactConfig
from shadowdiff.tables import check_keys, str_list, typed

AUTH_ROLES: tuple[str, ...] = ("old", "new", "old_replica")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_redact(table: Any, src: str) -> RedactConfig:
    """`[redact]`: names and patterns add to the defaults (they never remove one)."""
    p = "redact."
    check_keys(table, {"keep_secrets", "headers", "fields", "patterns", "key_file"}, p, src)
    base = RedactConfig()
    patterns = str_list(table, "patterns", p, src)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"not a valid regex {pattern!r}: {exc}", path=src,
                              key=p + "patterns") from exc

    def more(key: str, have: tuple[str, ...]) -> tuple[str, ...]:
        extra = tuple(v.lower() for v in str_list(table, key, p, src))
        return have + tuple(v for v in extra if v not in have)

    return RedactConfig(
        keep_secrets=typed(table, "keep_secrets", bool, p, src, False),
        headers=more("headers", base.headers), fields=more("fields", base.fields),
        patterns=base.patterns + tuple(x for x in patterns if x not in base.patterns),
        key_file=typed(table, "key_file", str, p, src, None),
    )


def parse_auth(table: Any, src: str,
               environ: dict[str, str] | None = None) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """`[auth.<role>]` header tables, `${VAR}` taken from the environment now.

    old_replica, when not given, gets old's headers: it is old's twin.
    """
    env = os.environ if environ is None else environ
    check_keys(table, set(AUTH_ROLES), "auth.", src)
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for role, headers in table.items():
        key = f"auth.{role}"
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError("must be a table of header = \"value\" strings", path=src, key=key)
        out[role] = tuple((name, _expand(value, env, src, f"{key}.{name}"))
                          for name, value in headers.items())
    if "old" in out and "old_replica" not in out:
        out["old_replica"] = out["old"]
    return tuple(out.items())


def _expand(value: str, env: Any, src: str, key: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set", path=src, key=key)
        return str(env[name])
    expanded = _VAR.sub(sub, value)
    if any(c in expanded for c in "\r\n"):
        raise ConfigError("a header value cannot hold a line break", path=src, key=key)
    return expanded
