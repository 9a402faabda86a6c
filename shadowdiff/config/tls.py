"""The `[tls]` section and its per-role tables (`[tls.old]`, `[tls.new]`, `[tls.old_replica]`),
and the command line's `--ca-bundle`, `--client-cert`, `--client-key`, `--insecure`,
`--old-address`... and `--resolve` laid over them (docs/configuration.md).
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from typing import Any

from shadowdiff.errors import ConfigError
from shadowdiff.protocols.http.tls import TlsSettings, parse_address, parse_resolve
from shadowdiff.replay.options import ReplayConfig
from shadowdiff.tables import check_keys, str_list, typed

_ROLES = ("old", "new", "old_replica")
_COMMON = {"ca_bundle", "client_cert", "client_key", "insecure", "server_name", "resolve"}
_FILES = ("ca_bundle", "client_cert", "client_key")


def _settings(table: dict[str, Any], base: TlsSettings, prefix: str, src: str) -> TlsSettings:
    values: dict[str, Any] = {}
    for f in fields(TlsSettings):
        if f.name not in table:
            continue
        if f.name == "resolve":
            values["resolve"] = base.resolve + str_list(table, "resolve", prefix, src)
        elif f.name == "insecure":
            values["insecure"] = typed(table, "insecure", bool, prefix, src, False)
        else:
            values[f.name] = typed(table, f.name, str, prefix, src, None)
    return check_tls(replace(base, **values), src, prefix)


def parse_tls(table: Any, src: str) -> tuple[TlsSettings, tuple[tuple[str, TlsSettings], ...]]:
    """`[tls]` for every role, and each `[tls.<role>]` laid over it (address only per role)."""
    check_keys(table, _COMMON | set(_ROLES), "tls.", src)
    base = _settings({k: v for k, v in table.items() if k not in _ROLES}, TlsSettings(),
                     "tls.", src)
    roles = []
    for role in _ROLES:
        if role in table:
            prefix = f"tls.{role}."
            check_keys(table[role], _COMMON | {"address"}, prefix, src)
            roles.append((role, _settings(table[role], base, prefix, src)))
    return base, tuple(roles)


def check_tls(tls: TlsSettings, src: str = "<flags>", prefix: str = "tls.") -> TlsSettings:
    """Files that exist, addresses and resolve entries that parse, a key only with its cert."""
    for key in _FILES:
        path = getattr(tls, key)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"no such file: {path}", path=src, key=prefix + key)
    if tls.client_key and not tls.client_cert:
        raise ConfigError("a client key needs its certificate (client_cert)",
                          path=src, key=prefix + "client_key")
    try:
        if tls.address:
            parse_address(tls.address, 443)
        for entry in tls.resolve:
            parse_resolve(entry)
    except ValueError as exc:
        raise ConfigError(str(exc), path=src, key=prefix + ("address" if tls.address else "resolve")) from exc
    return tls


def tls_flags(replay: ReplayConfig, flags: dict[str, Any]) -> ReplayConfig:
    """`replay` with the TLS flags laid over `[tls]` and over every `[tls.<role>]`, and
    `--http2` over `[replay] http2`.

    `--resolve [ROLE=]NAME:PORT:ADDR` (repeatable) applies to every role, or to one when it
    starts with `old=`, `new=` or `old_replica=`; `--old-address` and the like pin one role.
    """
    common: dict[str, Any] = {k: flags[k] for k in _FILES if flags.get(k)}
    if flags.get("insecure"):
        common["insecure"] = True
    resolve: dict[str | None, list[str]] = {}
    for entry in flags.get("resolve") or ():
        role, sep, rest = entry.partition("=")
        if sep and role not in _ROLES:
            raise ConfigError(f"{entry!r}: the role before '=' must be one of {', '.join(_ROLES)}",
                              key="--resolve")
        try:
            parse_resolve(rest if sep else entry)
        except ValueError as exc:
            raise ConfigError(str(exc), key="--resolve") from exc
        resolve.setdefault(role if sep else None, []).append(rest if sep else entry)
    addresses = {role: flags.get(f"{role}_address") for role in _ROLES}
    if flags.get("http2"):
        replay = replace(replay, http2=flags["http2"])
    if not (common or resolve or any(addresses.values())):
        return replay

    def laid(tls: TlsSettings, role: str | None) -> TlsSettings:
        out = replace(tls, **common,
                      resolve=tls.resolve + tuple(resolve.get(None, ())) + tuple(resolve.get(role, ())))
        if role is not None and addresses.get(role):
            out = replace(out, address=addresses[role])
        return check_tls(out, "<flags>", f"tls.{role}." if role else "tls.")

    own = dict(replay.tls_roles)
    roles = tuple((role, laid(own.get(role, replay.tls), role)) for role in _ROLES)
    return replace(replay, tls=laid(replay.tls, None), tls_roles=roles)
