"""DNS sender against real loopback servers: UDP, TC -> TCP, dns+tcp, AXFR, and every fault."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace

import pytest

from testpaths import DATA
from shadowdiff.config import ReplayConfig
from shadowdiff.demo.dns_server import Behaviour, serving
from shadowdiff.errors import ConfigError
from shadowdiff.model import Failure, Request, Response
from shadowdiff.protocols.dns.plugin import PROTOCOL
from shadowdiff.protocols.dns.sender import DnsSender, parse_target
from shadowdiff.protocols.dns.wire import make_query_request, unframe
from dns_servers import a_record, garbage, silent, start_pair, start_udp

ZONE = (DATA / "dns" / "example.com.zone").read_text()


def _options(timeout: float = 2.0, allow: tuple[str, ...] = ()) -> ReplayConfig:
    base = ReplayConfig(timeout_s=timeout)
    return replace(base, dns=replace(base.dns, allow=allow))


async def _send(target: str, request: Request, **options: object) -> object:
    sender = DnsSender(target, _options(**options))  # type: ignore[arg-type]
    try:
        return await sender.send(request)
    finally:
        await sender.close()


@pytest.fixture(scope="module")
def server() -> object:
    with serving(ZONE, "example.com", Behaviour(shuffle=True)) as (srv, port):
        yield srv, port


def test_udp_answer_and_captured_id(server: tuple) -> None:
    _, port = server
    request = make_query_request("www.example.com", "A")
    out = asyncio.run(_send(f"dns://127.0.0.1:{port}", request))
    assert isinstance(out, Response) and out.header("transport") == "udp"
    (msg,) = list(unframe(out.body))
    assert msg[:2] == request.body[:2]  # the answer carries the captured id back
    assert set(PROTOCOL.lift(out)["body"]["answer"]["www.example.com. A"]["records"]) == {
        "192.0.2.10", "192.0.2.11", "192.0.2.12"}


def test_truncated_answer_is_asked_again_over_tcp(server: tuple) -> None:
    _, port = server
    out = asyncio.run(_send(f"dns://127.0.0.1:{port}", make_query_request("big.example.com", "TXT", edns=False)))
    assert isinstance(out, Response) and out.header("transport") == "tcp"
    assert len(PROTOCOL.lift(out)["body"]["answer"]["big.example.com. TXT"]["records"]) == 6


def test_dns_tcp_scheme_and_zone_transfer(server: tuple) -> None:
    _, port = server
    out = asyncio.run(_send(f"dns+tcp://127.0.0.1:{port}", make_query_request("www.example.com", "A")))
    assert isinstance(out, Response) and out.header("transport") == "tcp"
    axfr = make_query_request("example.com", "AXFR")
    refused = asyncio.run(_send(f"dns://127.0.0.1:{port}", axfr))
    assert isinstance(refused, Failure) and "--dns-allow axfr" in refused.detail
    zone = asyncio.run(_send(f"dns://127.0.0.1:{port}", axfr, allow=("axfr",)))
    assert isinstance(zone, Response)
    answer = PROTOCOL.lift(zone)["body"]["answer"]
    assert "example.com. SOA" in answer and "mail.example.com. A" in answer


def test_faults_become_failures() -> None:
    async def scenario() -> dict[str, object]:
        bad, bad_port = await start_udp(garbage)
        mute, mute_port = await start_udp(silent)
        tc, cut, tc_port = await start_pair(functools.partial(a_record, truncate=True), a_record,
                                            cut_after=9)
        tc2, tc2_port = await start_udp(functools.partial(a_record, truncate=True))
        request = make_query_request("www.example.com", "A")
        try:
            return {
                "garbage": await _send(f"dns://127.0.0.1:{bad_port}", request, timeout=1.0),
                "silent": await _send(f"dns://127.0.0.1:{mute_port}", request, timeout=0.3),
                "cut": await _send(f"dns://127.0.0.1:{tc_port}", request),
                "no_tcp": await _send(f"dns://127.0.0.1:{tc2_port}", request),
                "bad_query": await _send(f"dns://127.0.0.1:{mute_port}",
                                         Request("dns", "A", "x.", (), b"\x00\x01junk")),
            }
        finally:
            for t in (bad, mute, tc, tc2):
                t.close()
            cut.close()

    out = asyncio.run(scenario())
    kinds = {name: getattr(o, "kind", None) for name, o in out.items()}
    assert kinds == {"garbage": "invalid", "silent": "timeout", "cut": "reset",
                     "no_tcp": "refused", "bad_query": "invalid"}


@pytest.mark.parametrize("target", ["http://127.0.0.1:53", "dns://ns1.example.com:53", "dns://127.0.0.1:99999"])
def test_bad_targets_are_config_errors(target: str) -> None:
    with pytest.raises(ConfigError):
        parse_target(target)


def test_parse_target_defaults() -> None:
    assert parse_target("dns://192.0.2.1") == ("192.0.2.1", 53, False)
    assert parse_target("dns+tcp://[::1]:5353") == ("::1", 5353, True)
