"""DNS plugin: one exchange per query, `QTYPE {host}.zone` endpoints, answers lifted into sets.

Registered as `dns` for the `dns://` and `dns+tcp://` schemes. The modules:

    wire.py       queries and answers <-> Request / Response (docs/dns.md has the mapping)
    sender.py     dns.asyncquery: UDP, TC -> TCP, zone transfers only when allowed
    lift.py       the answer as a tree of sets (sections, RRsets, records), TTLs apart
    endpoints.py  `A {host}.example.com`
    config.py     the `[dns]` section
    logs.py       BIND, Unbound, Knot, dnsmasq query logs and `name type` lists
    pcap.py       DNS over UDP and TCP in pcap files

Everything after `lift` stays protocol-neutral: the plugin's default rules (ignore the OPT
record's per-server fields, the TTL tolerance) are ordinary `Rules` handed to the pipeline
by `configure`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import dns.rdatatype

from shadowdiff.model import Request, Response
from shadowdiff.protocols.base import Sender, Tree
from shadowdiff.protocols.dns.endpoints import dns_endpoint
from shadowdiff.protocols.dns.lift import lift_answer
from shadowdiff.protocols.dns.wire import TRANSFER_TYPES

#: Opcodes that are never replayed (they change or announce zones): counted as skipped.
UNSAFE_OPCODES = ("UPDATE", "NOTIFY")
#: Where the lifted tree keeps what `[dns]` rules address (lift.py).
OPT_PATH = "body.opt"
TTL_PATHS = ("body.answer.*.ttl", "body.authority.*.ttl", "body.additional.*.ttl")


@lru_cache(maxsize=4)
def query_methods(transfers: bool) -> frozenset[str]:
    """Every query type's name (`TYPE<n>` for unnamed ones), zone transfers only if asked."""
    names = {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(n)) for n in range(65536)}
    return frozenset(names if transfers else names - TRANSFER_TYPES)


class DnsProtocol:
    """The DNS plugin object registered as `dns`."""

    name = "dns"
    schemes = ("dns", "dns+tcp")

    def __init__(self, zones: tuple[str, ...] = ()) -> None:
        self.zones = zones

    def endpoint_key(self, request: Request) -> str:
        """`A {host}.example.com`, `MX example.com`, `UPDATE example.com`."""
        return dns_endpoint(request.method, request.target, self.zones)

    def lift(self, response: Response) -> Tree:
        """{"status": rcode, "header": {aa, tc, ra, ad, cd}, "body": sections as sets, ...}."""
        return lift_answer(response.body, response.status)

    def replay_methods(self, options: Any) -> frozenset[str]:
        """Plain queries; AXFR/IXFR too with `--dns-allow axfr`. Never UPDATE or NOTIFY."""
        allow = getattr(getattr(options, "dns", None), "allow", ()) or ()
        return query_methods("axfr" in allow)

    def configure(self, options: Any) -> tuple[DnsProtocol, dict[str, Any]]:
        """This plugin for `[dns] zones`, and the `[dns]` comparison rules as a `[normalize]`
        table (shadowdiff.config.plugin_configured turns it into Rules, from above)."""
        dns_config = options.dns
        ignore: list[str] = [] if dns_config.compare_opt else [OPT_PATH]
        table: dict[str, Any] = {}
        if dns_config.ttl == "ignore":
            ignore += list(TTL_PATHS)
        elif dns_config.ttl_tolerance > 0:
            table["tolerance"] = [{"paths": list(TTL_PATHS),
                                   "absolute": dns_config.ttl_tolerance}]
        if ignore:
            table["ignore_paths"] = ignore
        return DnsProtocol(tuple(dns_config.zones)), table

    def open_sender(self, target: str, options: Any) -> Sender:
        """A sender to `dns://IP:PORT` (UDP, TC -> TCP) or `dns+tcp://IP:PORT`."""
        from shadowdiff.protocols.dns.sender import DnsSender
        return DnsSender(target, options)


PROTOCOL = DnsProtocol()
