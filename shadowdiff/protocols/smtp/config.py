"""The `[smtp]` section: how the SMTP sender talks to mail targets (docs/smtp.md).

Kept apart from config.py (which only holds it as `ReplayConfig.smtp`, so every sender
gets it with the replay options). Same rules as there: unknown keys and wrong types are
errors naming the file and the key, because a misspelt rewrite rule that is silently
ignored would send production addresses to the targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shadowdiff.errors import ConfigError
from shadowdiff.tables import check_keys

_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                     r"[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class SmtpConfig:
    """`[smtp]`: domain rewriting and STARTTLS to the targets."""

    rewrite_domains: tuple[tuple[str, str], ...] = ()
    """(production domain, test domain) pairs, lower-cased; subdomains follow their domain."""
    starttls: bool = False
    """Upgrade to TLS after EHLO when the target advertises STARTTLS."""
    tls_verify: bool = True
    """Check the target's certificate and host name (false for self-signed test MTAs)."""


def parse_smtp(table: Any, src: str) -> SmtpConfig:
    """`[smtp]`: `rewrite_domains = {"customer.com" = "test.example"}`, `starttls`, `tls_verify`."""
    check_keys(table, {"rewrite_domains", "starttls", "tls_verify"}, "smtp.", src)
    for key in ("starttls", "tls_verify"):
        if key in table and not isinstance(table[key], bool):
            raise ConfigError(f"must be bool, not {type(table[key]).__name__}",
                              path=src, key=f"smtp.{key}")
    return SmtpConfig(rewrite_domains=_domains(table.get("rewrite_domains", {}), src),
                      starttls=table.get("starttls", False),
                      tls_verify=table.get("tls_verify", True))


def _domains(rules: Any, src: str) -> tuple[tuple[str, str], ...]:
    """Plain domain names on both sides: a pattern or an address here is a mistake."""
    if not isinstance(rules, dict):
        raise ConfigError('must be a table of "domain" = "test domain"', path=src,
                          key="smtp.rewrite_domains")
    out: list[tuple[str, str]] = []
    for old, new in rules.items():
        key = f"smtp.rewrite_domains.{old}"
        if not isinstance(new, str) or not _DOMAIN.match(old) or not _DOMAIN.match(new):
            raise ConfigError("both sides must be domain names such as \"test.example\"",
                              path=src, key=key)
        out.append((old.lower(), new.lower()))
    return tuple(out)
