"""DNS lift: an answer's wire bytes -> the plain tree every later stage compares.

Nothing after lift knows DNS, so the tree itself must make equal answers equal:

    {"status": "NOERROR",                                  rcode, extended rcodes included
     "header": {"aa": true, "tc": false, "ra": false, "ad": false, "cd": false},
     "body": {"question": "www.example.com. IN A",
              "answer":     {"www.example.com. A": {"ttl": 300,
                                                    "records": {"192.0.2.1": true, "192.0.2.2": true}}},
              "authority":  {"example.com. NS": {"ttl": 3600, "records": {"ns1.example.com.": true}}},
              "additional": {},
              "ede": {"18": "Prohibited"},                 only when present
              "edns": {"version": 0, "do": false},        only when the answer has an OPT
              "opt": {"udp_payload": 1232, "nsid": "..", "cookie": "..", "padding": 64}}}

- A section is a *set* of RRsets keyed by `owner TYPE` (RRSIGs by `owner RRSIG(TYPE)`), and an
  RRset a set of records (dict keys with the value `true`): dicts compare without order, so
  neither RRset order nor record order (random per query on some servers) can diverge, and an
  extra record shows as `field_added` at the record itself.
- Names are lower-cased, owners and the names inside records (RFC 4034 6.2 canonical form),
  because DNS compares names case-insensitively and 0x20-randomizing servers echo any case.
- An RRset's TTL is a field of its own beside its records, so one rule can tolerate or drop
  TTLs (`[dns] ttl_tolerance`, `ttl = "ignore"`) without touching the records, and an RRset
  only one side has shows once (at the RRset), not once more for its TTL.
- The OPT record's per-server fields (payload size, NSID, cookies, padding) live under `opt`,
  which the plugin's default rules ignore (`[dns] compare_opt` keeps them).
- AXFR answers span messages: their sections are united.
"""

from __future__ import annotations

from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from shadowdiff.protocols.dns.wire import PARSE_ERRORS, unframe

Tree = dict[str, Any]
SECTIONS = ("answer", "authority", "additional")
#: Types whose records embed domain names (RFC 4034 6.2, RFC 6840 5.1): those get lower-cased.
_NAMED_TYPES = frozenset(dns.rdatatype.from_text(t) for t in (
    "NS", "MD", "MF", "CNAME", "SOA", "MB", "MG", "MR", "PTR", "MINFO", "MX", "RP", "AFSDB",
    "RT", "SIG", "PX", "NXT", "NAPTR", "KX", "SRV", "DNAME", "A6", "RRSIG", "NSEC"))
_FLAGS = (("aa", dns.flags.AA), ("tc", dns.flags.TC), ("ra", dns.flags.RA),
          ("ad", dns.flags.AD), ("cd", dns.flags.CD))


def rcode_text(value: int) -> str:
    """`NOERROR`, `NXDOMAIN`, `BADVERS`; `RCODE<n>` for a number no RFC names."""
    try:
        return dns.rcode.to_text(dns.rcode.Rcode.make(value))
    except (ValueError, dns.rcode.UnknownRcode):
        return f"RCODE{value}"


def lift_answer(body: bytes, status: int) -> Tree:
    """The lifted tree of a framed answer body (wire.py); see the module docstring."""
    messages = list(unframe(body))
    if not messages:
        return {"status": rcode_text(status), "header": {}, "body": {}}
    parsed: list[dns.message.Message] = []
    for wire in messages:
        try:
            parsed.append(dns.message.from_wire(wire, ignore_trailing=False))
        except PARSE_ERRORS as exc:
            # A recorded answer may be garbage: that, not a crash, is what the report shows.
            return {"status": rcode_text(status), "header": {},
                    "body": {"malformed": f"message {len(parsed) + 1}: {exc.__class__.__name__}"}}
    return lift_messages(parsed)


def lift_messages(messages: list[dns.message.Message]) -> Tree:
    """The tree of one answer (or the messages of one zone transfer), first message's header."""
    first = messages[0]
    header = {name: bool(first.flags & bit) for name, bit in _FLAGS}
    body: Tree = {"question": _question(first)}
    for section in SECTIONS:
        rrsets: Tree = {}
        for msg in messages:
            for rrset in getattr(msg, section):
                entry = rrsets.setdefault(rrset_key(rrset), {"ttl": rrset.ttl, "records": {}})
                entry["ttl"] = min(entry["ttl"], rrset.ttl)
                entry["records"].update(dict.fromkeys(_records(rrset), True))
        body[section] = rrsets
    _edns(first, body)
    return {"status": rcode_text(int(first.rcode())), "header": header, "body": body}


def rrset_key(rrset: dns.rrset.RRset) -> str:
    """`www.example.com. A`, `example.com. RRSIG(SOA)`, `x.example. CH TXT` (class when not IN)."""
    rdtype = dns.rdatatype.to_text(rrset.rdtype)
    if rrset.covers:
        rdtype += f"({dns.rdatatype.to_text(rrset.covers)})"
    owner = rrset.name.to_text().lower()
    if rrset.rdclass != dns.rdataclass.IN:
        return f"{owner} {dns.rdataclass.to_text(rrset.rdclass)} {rdtype}"
    return f"{owner} {rdtype}"


def canonical_text(rdata: dns.rdata.Rdata) -> str:
    """A record's text with its embedded names lower-cased (RFC 4034 6.2), as a set key."""
    if rdata.rdtype not in _NAMED_TYPES:
        return rdata.to_text()  # no names inside (A, AAAA, TXT, ...): as it is, and cheaper
    try:
        wire = rdata.to_digestable()
        return dns.rdata.from_wire(rdata.rdclass, rdata.rdtype, wire, 0, len(wire)).to_text()
    except PARSE_ERRORS:
        return rdata.to_text()


def _records(rrset: dns.rrset.RRset) -> list[str]:
    return [canonical_text(rd) for rd in rrset]


def _question(msg: dns.message.Message) -> str:
    if not msg.question:
        return ""
    q = msg.question[0]
    return (f"{q.name.to_text().lower()} {dns.rdataclass.to_text(q.rdclass)} "
            f"{dns.rdatatype.to_text(q.rdtype)}")


def _edns(msg: dns.message.Message, body: Tree) -> None:
    """EDE codes, the EDNS version and DO bit (compared), and the OPT's per-server fields."""
    if msg.edns < 0:
        return
    body["edns"] = {"version": msg.edns, "do": bool(msg.ednsflags & dns.flags.DO)}
    opt: Tree = {"udp_payload": msg.payload}
    ede: dict[str, str] = {}
    for option in msg.options:
        if isinstance(option, dns.edns.EDEOption):
            ede[str(int(option.code))] = option.text or ""
        elif option.otype == dns.edns.NSID:
            opt["nsid"] = option.to_wire().hex()
        elif option.otype == dns.edns.COOKIE:
            opt["cookie"] = option.to_wire().hex()
        elif option.otype == dns.edns.PADDING:
            opt["padding"] = len(option.to_wire())
        else:
            opt[f"option{int(option.otype)}"] = option.to_wire().hex()
    body["opt"] = opt
    if ede:
        body["ede"] = ede
