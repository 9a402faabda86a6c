"""DNS plugin, pure parts: wire mapping, lift, endpoints, [dns] config, rules through the judge."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rrset
import pytest

from shadowdiff.config import config_from_dict, plugin_configured
from shadowdiff.errors import ConfigError
from shadowdiff.compare.judge import judge
from shadowdiff.model import Exchange, Response, Trial
from shadowdiff.protocols.base import get_protocol, protocol_for_url
from shadowdiff.protocols.dns.plugin import PROTOCOL, query_methods
from shadowdiff.protocols.dns.endpoints import dns_endpoint, name_template
from shadowdiff.protocols.dns.lift import lift_answer
from shadowdiff.protocols.dns.wire import (
    BadQuery,
    answer_response,
    make_query_request,
    query_request,
    unframe,
)


def _answer(query: dns.message.Message, *, answer: list[str] = (), authority: list[str] = (),
            rcode: int = 0, aa: bool = True, options: list = ()) -> dns.message.Message:
    r = dns.message.make_response(query)
    if aa:
        r.flags |= dns.flags.AA
    r.set_rcode(rcode)
    for text in answer:
        r.answer.append(dns.rrset.from_text(*text.split(" ", 4)))
    for text in authority:
        r.authority.append(dns.rrset.from_text(*text.split(" ", 4)))
    if options:
        r.use_edns(0, options=list(options))
    return r


def _response(r: dns.message.Message, captured_id: int = 7) -> Response:
    return answer_response([r.to_wire()], captured_id)


def _query(name: str = "www.example.com", qtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    q.id = 7
    return q


def test_registered_for_both_schemes() -> None:
    assert get_protocol("dns") is PROTOCOL
    assert protocol_for_url("dns://127.0.0.1:5300") is PROTOCOL
    assert protocol_for_url("dns+tcp://127.0.0.1:5300") is PROTOCOL


def test_query_request_keeps_the_wire_bytes_and_names_the_kind() -> None:
    q = dns.message.make_query("Www.Example.com", "AAAA", use_edns=0, want_dnssec=True)
    wire = q.to_wire()
    req = query_request(wire, "tcp")
    assert (req.protocol, req.method, req.target, req.body) == ("dns", "AAAA", "Www.Example.com.", wire)
    assert req.header("transport") == "tcp" and req.header("opcode") == "QUERY"


def test_update_and_notify_are_named_by_opcode_and_never_replayed() -> None:
    import dns.update
    update = dns.update.UpdateMessage("example.com")
    update.add("x", 300, "A", "192.0.2.1")
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert query_request(update.to_wire()).method == "UPDATE"
    assert query_request(notify.to_wire()).method == "NOTIFY"
    safe = PROTOCOL.replay_methods(None)
    assert {"A", "ANY", "TYPE65280"} <= safe
    assert not {"UPDATE", "NOTIFY", "AXFR", "IXFR"} & safe
    assert {"AXFR", "IXFR"} <= query_methods(True)


@pytest.mark.parametrize("wire, reason", [
    (b"\x00\x01\x00", "truncated header"),
    (dns.message.make_query("a.example", "A").to_wire()[:-3], "malformed"),
    (dns.message.make_query("a.example", "A").to_wire() + b"xx", "trailing"),
    (dns.message.make_response(dns.message.make_query("a.example", "A")).to_wire(), "a response"),
])
def test_bad_queries_say_why(wire: bytes, reason: str) -> None:
    with pytest.raises(BadQuery, match=reason):
        query_request(wire)


def test_answer_body_is_framed_with_the_captured_id() -> None:
    q = _query()
    q.id = 999
    r = _response(_answer(q, answer=["www.example.com. 300 IN A 192.0.2.1"]), captured_id=7)
    (msg,) = list(unframe(r.body))
    assert msg[:2] == b"\x00\x07" and r.status == 0


def test_lift_sets_are_order_and_case_insensitive() -> None:
    q = _query()
    a = _answer(q, answer=["www.example.com. 300 IN A 192.0.2.1", "www.example.com. 300 IN A 192.0.2.2"])
    b = _answer(q, answer=["WWW.example.COM. 300 IN A 192.0.2.2", "www.example.com. 300 IN A 192.0.2.1"],
                authority=["example.com. 300 IN NS NS1.Example.com."])
    ta, tb = PROTOCOL.lift(_response(a)), PROTOCOL.lift(_response(b))
    assert ta["body"]["answer"] == tb["body"]["answer"]
    assert list(ta["body"]["answer"]["www.example.com. A"]["records"]) == ["192.0.2.1", "192.0.2.2"]
    assert tb["body"]["authority"] == {"example.com. NS": {"ttl": 300, "records": {"ns1.example.com.": True}}}
    assert ta["status"] == "NOERROR" and ta["header"]["aa"] is True and ta["header"]["tc"] is False


def test_lift_rcode_ede_and_opt() -> None:
    q = _query()
    ede = dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED, "no")
    nsid = dns.edns.GenericOption(dns.edns.NSID, b"srv-1")
    tree = PROTOCOL.lift(_response(_answer(q, rcode=5, aa=False, options=[ede, nsid])))
    assert tree["status"] == "REFUSED"
    assert tree["body"]["ede"] == {"18": "no"}
    assert tree["body"]["opt"]["nsid"] == b"srv-1".hex()
    assert tree["body"]["edns"] == {"version": 0, "do": False}


def test_lift_never_raises_on_garbage() -> None:
    tree = lift_answer(b"\x00\x05garbage-and-more", 0)
    assert "malformed" in tree["body"]
    assert lift_answer(b"", 3) == {"status": "NXDOMAIN", "header": {}, "body": {}}


def _trial(old: Response, new: Response, name: str = "www.example.com") -> Trial:
    return Trial(Exchange("x", make_query_request(name, "A")), {"old": old, "new": new})


def _configured(table: dict) -> tuple:
    config = config_from_dict({"dns": table})
    return plugin_configured(PROTOCOL, config)


def test_ttl_tolerance_opt_volatility_and_real_changes_through_the_judge() -> None:
    q = _query()
    nsid_a = [dns.edns.GenericOption(dns.edns.NSID, b"a")]
    nsid_b = [dns.edns.GenericOption(dns.edns.NSID, b"b")]
    old = _response(_answer(q, answer=["www.example.com. 300 IN A 192.0.2.1"], options=nsid_a))
    near = _response(_answer(q, answer=["www.example.com. 330 IN A 192.0.2.1"], options=nsid_b))
    far = _response(_answer(q, answer=["www.example.com. 900 IN A 192.0.2.1"], options=nsid_b))
    moved = _response(_answer(q, answer=["www.example.com. 300 IN A 192.0.2.9"], options=nsid_a))
    protocol, config = _configured({"ttl_tolerance": 60})
    assert judge(_trial(old, near), protocol, config).state == "identical"
    far_verdict = judge(_trial(old, far), protocol, config)
    assert [(d.location, d.kind) for d in far_verdict.divergences] == [
        ('body.answer["www.example.com. A"].ttl', "value_changed")]
    kinds = {(d.location, d.kind) for d in judge(_trial(old, moved), protocol, config).divergences}
    assert kinds == {('body.answer["www.example.com. A"].records["192.0.2.1"]', "field_missing"),
                     ('body.answer["www.example.com. A"].records["192.0.2.9"]', "field_added")}
    protocol, config = _configured({"ttl": "ignore", "compare_opt": True})
    locations = [d.location for d in judge(_trial(old, far), protocol, config).divergences]
    assert locations == ["body.opt.nsid"]


def test_endpoints_fold_hosts_and_keep_zones() -> None:
    assert dns_endpoint("A", "www.example.com.") == "A {host}.example.com"
    assert dns_endpoint("mx", "Example.COM.") == "MX example.com"
    assert dns_endpoint("SRV", "_sip._tcp.example.com.") == "SRV _sip._tcp.example.com"
    assert dns_endpoint("PTR", "4.3.2.192.in-addr.arpa.") == "PTR {ip}.in-addr.arpa"
    assert name_template("www.shop.co.uk") == "{host}.shop.co.uk"
    assert name_template("a.b.corp.example", zones=["corp.example"]) == "{host}.b.corp.example"
    assert name_template(".") == "."
    protocol, _ = _configured({"zones": ["b.corp.example"]})
    assert protocol.endpoint_key(make_query_request("x.b.corp.example", "A")) == "A {host}.b.corp.example"


@pytest.mark.parametrize("table, key", [
    ({"ttl_tolerance": -1}, "dns.ttl_tolerance"), ({"ttl": "sometimes"}, "dns.ttl"),
    ({"allow": ["update"]}, "dns.allow"), ({"zone": []}, "dns.zone"),
    ({"compare_opt": "yes"}, "dns.compare_opt"),
])
def test_bad_dns_config_names_the_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict({"dns": table}, "x.toml")
