"""The `[dns]` section: what the DNS plugin compares and sends (docs/dns.md).

Held by config.py as `ReplayConfig.dns`, so every sender gets it with the replay options, the
way `[smtp]` is. Unknown keys and wrong types are errors naming the file and the key.

```toml
[dns]
ttl_tolerance = 60        # TTLs that differ by at most 60 s are the same (0: exact)
ttl = "compare"           # or "ignore": TTLs never diverge
compare_opt = false       # true: also compare the OPT record's payload size, NSID, cookies
zones = ["example.com"]   # zones for endpoint names (default: the last two labels)
allow = ["axfr"]          # also send zone transfers (AXFR, IXFR); same as --dns-allow axfr
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shadowdiff.errors import ConfigError
from shadowdiff.tables import check_keys

#: What `allow` / `--dns-allow` may name.
ALLOWABLE = ("axfr",)
_KNOWN = {"ttl_tolerance", "ttl", "compare_opt", "zones", "allow"}


@dataclass(frozen=True)
class DnsConfig:
    """`[dns]`: TTL tolerance, OPT comparison, zones for endpoint names, opt-in transfers."""

    ttl_tolerance: float = 0.0
    """Largest TTL difference (seconds) that is not a divergence."""
    ttl: str = "compare"
    """`compare` (within the tolerance) or `ignore`."""
    compare_opt: bool = False
    """Compare the OPT record's per-server fields (payload size, NSID, cookie, padding)."""
    zones: tuple[str, ...] = ()
    """Zone apexes that endpoint templates are relative to."""
    allow: tuple[str, ...] = ()
    """Opt-ins beyond plain queries: `axfr` sends AXFR and IXFR."""


def parse_dns(table: Any, src: str) -> DnsConfig:
    """`[dns]` from parsed TOML; ConfigError names the key and the file."""
    check_keys(table, _KNOWN, "dns.", src)
    tolerance = table.get("ttl_tolerance", 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not math.isfinite(tolerance) or tolerance < 0:
        raise ConfigError("must be a number of seconds >= 0", path=src, key="dns.ttl_tolerance")
    ttl = table.get("ttl", "compare")
    if ttl not in ("compare", "ignore"):
        raise ConfigError('must be "compare" or "ignore"', path=src, key="dns.ttl")
    compare_opt = table.get("compare_opt", False)
    if not isinstance(compare_opt, bool):
        raise ConfigError("must be bool", path=src, key="dns.compare_opt")
    return DnsConfig(float(tolerance), ttl, compare_opt, _names(table, "zones", src),
                     allowed(_names(table, "allow", src), src))


def allowed(names: tuple[str, ...], src: str = "--dns-allow") -> tuple[str, ...]:
    """Check `allow` names (lower-cased); ConfigError for one this version does not know."""
    out = tuple(n.lower() for n in names)
    for name in out:
        if name not in ALLOWABLE:
            raise ConfigError(f"unknown opt-in {name!r} (known: {', '.join(ALLOWABLE)})",
                              path=src, key="dns.allow")
    return out


def _names(table: dict[str, Any], key: str, src: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("must be a list of strings", path=src, key=f"dns.{key}")
    return tuple(value)
