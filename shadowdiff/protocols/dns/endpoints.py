"""DNS endpoint names: `QTYPE <zone-relative name template>`, e.g. `A {host}.example.com`.

Ranking groups by endpoint and weighs it by how often production asks it, so the template
must fold the many names of one kind into one (every host of a zone) while keeping what an
admin tells apart: the query type, the zone, the apex, service labels (`_sip._tcp`) and
wildcard-ish depth. The zone is the longest of the configured `[dns] zones` that contains the
name; without them, the last two labels (three under a known two-label suffix such as co.uk),
which is right for most zones a migration moves.

    A www.example.com.        -> A {host}.example.com
    MX Example.COM.           -> MX example.com
    SRV _sip._tcp.example.com -> SRV _sip._tcp.example.com
    A a.b.example.com         -> A {host}.b.example.com
    PTR 4.3.2.1.in-addr.arpa  -> PTR {ip}.in-addr.arpa
    UPDATE example.com        -> UPDATE example.com
"""

from __future__ import annotations

from collections.abc import Sequence

#: Public suffixes of two labels under which a zone has three (co.uk, com.au, ...).
_TWO_LABEL_SUFFIXES = frozenset({"co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au",
                                 "org.au", "co.jp", "co.nz", "com.br", "co.za", "com.cn"})
_REVERSE = ("in-addr.arpa", "ip6.arpa")


def _labels(name: str) -> list[str]:
    return [label for label in name.strip().rstrip(".").lower().split(".") if label]


def zone_of(labels: list[str], zones: Sequence[str] = ()) -> int:
    """How many trailing labels of the name form its zone."""
    best = 0
    for zone in zones:
        zl = _labels(zone)
        if zl and labels[-len(zl):] == zl and len(zl) > best:
            best = len(zl)
    if best:
        return best
    if len(labels) >= 3 and ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES:
        return 3
    return min(2, len(labels))


def name_template(name: str, zones: Sequence[str] = ()) -> str:
    """The zone-relative template of a query name (see the module docstring).

    >>> name_template("WWW.Example.com.")
    '{host}.example.com'
    """
    labels = _labels(name)
    if not labels:
        return "."
    joined = ".".join(labels)
    for suffix in _REVERSE:
        if joined.endswith(suffix) and joined != suffix:
            return "{ip}." + suffix
    zone = zone_of(labels, zones)
    inner = labels[:len(labels) - zone]
    if not inner:
        return ".".join(labels)
    # Service labels (_sip, _dmarc) name a kind of query, not a host: kept as they are.
    if inner[0].startswith("_"):
        return ".".join(labels)
    if inner[0] == "*":
        return ".".join(labels)
    return ".".join(["{host}"] + labels[1:])


def dns_endpoint(method: str, name: str, zones: Sequence[str] = ()) -> str:
    """`A {host}.example.com`; the method is the query type (or opcode) upper-cased.

    >>> dns_endpoint("aaaa", "api.shop.example.com.")
    'AAAA {host}.shop.example.com'
    """
    kind = method.strip().upper() or "{unknown}"
    return f"{kind} {name_template(name, zones)}"
