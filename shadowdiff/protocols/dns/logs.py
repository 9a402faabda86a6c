"""DNS query logs -> exchanges (`shadowdiff capture dnslog`) and production usage (`--usage`).

The logs admins already have, one query a line (docs/dns.md shows each):

- BIND (`querylog yes;`): `client @0x7f.. 192.0.2.1#53211 (www.example.com): query:
  www.example.com IN A +E(0)DK (192.0.2.53)`; the flags say RD (`+`), EDNS (`E`), TCP (`T`),
  DO (`D`), CD (`C`);
- Unbound (`log-queries: yes`): `[1764676800] unbound[99:0] info: 192.0.2.1 www.example.com. A IN`;
- Knot Resolver (verbose): `[plan] plan 'www.example.com.' type 'A' uid [..]`, and Knot DNS's
  query lines (`[example.com.] ... query, remote 192.0.2.1@53211, ... qname www.example.com.,
  qtype A`); knotd itself logs queries only that way, through a log module or dnstap;
- dnsmasq (`log-queries`): `dnsmasq[812]: query[AAAA] www.example.com from 192.0.2.1`;
- `dig`/dnsperf-style lists: `www.example.com A` (or `www.example.com IN A`) a line.

A log holds no wire bytes, so each query is rebuilt as a stub resolver sends it (EDNS0, the
logged DO/RD bits, the logged transport). Lines that are not queries are counted by reason.
Usage counts the same endpoints the capture does (`endpoints.dns_endpoint`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

from shadowdiff.files import READ_ERRORS, open_maybe_gzip
from shadowdiff.model import Exchange
from shadowdiff.protocols.dns.wire import BadQuery, make_query_request

_NAME = r"(?P<name>[^\s'\"(),]+)"
_TYPE = r"(?P<type>[A-Za-z][A-Za-z0-9-]*|TYPE\d+)"
_BIND = re.compile(r"\bquery: " + _NAME + r" (?P<cls>[A-Z]+\d*) " + _TYPE
                   + r" (?P<flags>[+-][A-Za-z()0-9]*)")
_BIND_TIME = re.compile(r"^(\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?)")
_UNBOUND = re.compile(r"^\[(?P<ts>\d+)\] unbound\[[\d:]+\] info: \S+ " + _NAME + " " + _TYPE
                      + r" (?P<cls>[A-Z]+\d*)\s*$")
_KRESD = re.compile(r"\[plan\]\s+plan '" + _NAME + r"' type '" + _TYPE + "'")
_KNOT = re.compile(r"\bqname " + _NAME + r",? qtype " + _TYPE)
_DNSMASQ = re.compile(r"\bdnsmasq\[\d+\]: query\[" + _TYPE + r"\] " + _NAME + r" from ")
_LIST = re.compile(r"^\s*" + _NAME + r"\s+(?:(?:IN|CH|HS)\s+)?" + _TYPE + r"\s*$")
_SAMPLE_LINES = 50


class Query(NamedTuple):
    """One logged query."""

    name: str
    qtype: str
    seen_at: float = 0.0
    rd: bool = False
    dnssec: bool = False
    tcp: bool = False


def parse_line(line: str) -> Query | None:
    """The query a log line records, or None when it records none (or an invalid name).

    >>> parse_line("www.example.com AAAA")
    Query(name='www.example.com', qtype='AAAA', seen_at=0.0, rd=False, dnssec=False, tcp=False)
    """
    query = _parse(line)
    return query if query is not None and _valid_name(query.name) else None


def _valid_name(name: str) -> bool:
    # Usage and capture must count the same queries: a name no query can carry is neither.
    import dns.name
    try:
        dns.name.from_text(name)
    except Exception:  # noqa: BLE001 - dnspython's several label and length errors
        return False
    return True


def _parse(line: str) -> Query | None:
    m = _BIND.search(line)
    if m is not None:
        flags = m.group("flags")
        return Query(m.group("name"), m.group("type").upper(), _bind_time(line),
                     rd=flags.startswith("+"), dnssec="D" in flags, tcp="T" in flags)
    m = _UNBOUND.match(line)
    if m is not None:
        return Query(m.group("name"), m.group("type").upper(), float(m.group("ts")), rd=True)
    for pattern in (_DNSMASQ, _KRESD, _KNOT):
        m = pattern.search(line)
        if m is not None:
            return Query(m.group("name"), m.group("type").upper(), rd=pattern is not _KNOT)
    if line.lstrip().startswith((";", "#")):
        return None
    m = _LIST.match(line)
    if m is not None and _is_type(m.group("type")):
        return Query(m.group("name"), m.group("type").upper())
    return None


def _is_type(text: str) -> bool:
    import dns.rdatatype
    try:
        dns.rdatatype.from_text(text.upper())
    except Exception:  # noqa: BLE001 - dnspython raises several kinds for unknown mnemonics
        return False
    return True


def _bind_time(line: str) -> float:
    m = _BIND_TIME.match(line)
    if m is None:
        return 0.0
    try:
        when = dt.datetime.strptime(m.group(1).split(".")[0], "%d-%b-%Y %H:%M:%S")
    except ValueError:
        return 0.0
    return when.replace(tzinfo=dt.timezone.utc).timestamp()


def query_lines(path: str) -> Iterator[tuple[int, str]]:
    with open_maybe_gzip(path) as f:
        for number, raw in enumerate(f, 1):
            yield number, raw.decode("utf-8", "replace").rstrip("\r\n")


def sniff(head: bytes) -> bool:
    """True when most of the first lines are queries in one of the formats above."""
    lines = [ln for ln in head.decode("utf-8", "replace").splitlines()[:_SAMPLE_LINES]
             if ln.strip() and not ln.lstrip().startswith((";", "#"))]
    if len(lines) > 1 and not head.endswith(b"\n"):
        lines = lines[:-1]  # the sample may cut the last line
    if not lines:
        return False
    return sum(parse_line(ln) is not None for ln in lines) * 2 > len(lines)


def read_dnslog(path: str | os.PathLike[str], stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """Stream one exchange per logged query; `stats` counts queries and skipped lines by reason."""
    src = str(path)
    stats = {} if stats is None else stats
    reasons: Counter[str] = Counter()
    stats.setdefault("queries", 0)
    base = os.path.basename(src)
    try:
        for number, line in query_lines(src):
            query = parse_line(line)
            if query is None:
                reasons["not a query line" if line.strip() else "empty line"] += 1
                continue
            try:
                request = make_query_request(query.name, query.qtype, dnssec=query.dnssec,
                                             recursion=query.rd,
                                             transport="tcp" if query.tcp else "udp")
            except BadQuery as exc:
                reasons[str(exc).split(":")[0]] += 1
                continue
            stats["queries"] += 1
            yield Exchange(f"dnslog-{base}-{number}", request, None, f"dnslog:{base}:{number}",
                           query.seen_at)
    finally:
        reasons.pop("empty line", None)
        if reasons:
            stats["skipped_lines"] = stats.get("skipped_lines", 0) + sum(reasons.values())
            stats["skip_reasons"] = dict(reasons)


def is_query_log(path: str) -> bool:
    """Whether a file's first lines are DNS query log lines (by content)."""
    try:
        with open_maybe_gzip(path) as f:
            return sniff(f.read(16 * 1024))
    except READ_ERRORS:
        return False  # unreadable here: the reader says why, with the file's name
