"""`shadowdiff demo --dns`: two small name servers (dnspython, demo/dns_server.py) that differ on purpose.

Both serve demo/data/dns-demo.zone. The demo replays `captures/demo-dns-queries.txt` (a
`name type` list) to both and ranks by `captures/demo-dns-querylog.log` (a BIND query log),
exactly as `shadowdiff run queries.txt --old dns://.. --new dns://.. --usage querylog` would.
NEW differs in the ways `EXPECTED_DNS_DIVERGENCES` lists, and also in ways the report must
NOT show: it shuffles record order, adds 30 s to every TTL (inside `[dns] ttl_tolerance`) and
sends an NSID (the OPT record's per-server fields are volatile by default). Zone transfers in
the capture are skipped and counted, as they are without `--dns-allow axfr`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from shadowdiff.demo.dns_server import Behaviour, ZoneServer, serving
from shadowdiff.model import Signature

ZONE_FILE = Path(__file__).parent / "data" / "dns-demo.zone"
ORIGIN = "example.com"
#: Seconds of TTL difference the demo tolerates (NEW's TTLs are 30 s longer).
TTL_TOLERANCE = 60

OLD = Behaviour()
NEW = Behaviour(
    ns_in_authority=True,                      # NS and glue on positive answers
    any_minimal=True,                          # RFC 8482: one HINFO for ANY
    shuffle=True, ttl_delta=30, nsid=b"new-ns-1",   # noise the report must not show
    overrides={("mail.example.com.", "A"): ("192.0.2.26",),   # mail moved
               ("_dmarc.example.com.", "TXT"): ()},          # DMARC record forgotten
)

#: Every deliberate old/new difference, as the report should name it.
EXPECTED_DNS_DIVERGENCES: tuple[Signature, ...] = (
    Signature("A {host}.example.com", 'body.answer["mail.example.com. A"].records["192.0.2.25"]',
              "field_missing"),
    Signature("A {host}.example.com", 'body.answer["mail.example.com. A"].records["192.0.2.26"]',
              "field_added"),
    Signature("A {host}.example.com", 'body.authority["example.com. NS"]', "field_added"),
    Signature("ANY example.com", 'body.answer["example.com. HINFO"]', "field_added"),
    Signature("TXT _dmarc.example.com", 'body.answer["_dmarc.example.com. TXT"]', "field_missing"),
)


@contextmanager
def dns_servers() -> Iterator[tuple[str, str, dict[str, ZoneServer]]]:
    """OLD and NEW on 127.0.0.1 (UDP and TCP, free ports): their dns:// URLs and the servers."""
    zone = ZONE_FILE.read_text()
    with ExitStack() as stack:
        old, old_port = stack.enter_context(_serving(zone, OLD))
        new, new_port = stack.enter_context(_serving(zone, NEW))
        yield (f"dns://127.0.0.1:{old_port}", f"dns://127.0.0.1:{new_port}",
               {"old": old, "new": new})


@contextmanager
def _serving(zone: str, behaviour: Behaviour) -> Iterator[tuple[ZoneServer, int]]:
    with serving(zone, ORIGIN, behaviour) as served:
        yield served
