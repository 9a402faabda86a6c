"""Both HTTP senders over TLS against a real nginx on loopback, certificates from a CA made
in the test: the production name goes out as SNI and Host to a pinned address, SNI picks
the virtual host, the name is verified, certificate problems are `tls` failures with
OpenSSL's reason, and mTLS works with a client certificate and fails without one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from factories import make_request
from shadowdiff.errors import ConfigError
from shadowdiff.model import Failure, Response
from shadowdiff.protocols.http.certs import compare_facts, probe
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.protocols.http.tls import TlsSettings
from shadowdiff.replay.options import ReplayConfig
from tls_servers import TestCA, VHost, tls_nginx

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Site:
    port: int
    ca: TestCA
    client: tuple[Path, Path]       # a client certificate the mTLS vhost accepts
    rogue_client: tuple[Path, Path]  # one from another CA
    folder: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("tls")
    ca, rogue = TestCA(folder / "ca"), TestCA(folder / "rogue", "rogue CA")
    vhosts = [VHost("default.test", ca.issue("default", ["default.test"]), "default"),
              VHost("shop.test www.shop.test", ca.issue("shop", ["shop.test", "www.shop.test"]), "shop"),
              VHost("expired.test", ca.issue("expired", ["expired.test"], expired=True), "expired"),
              VHost("rogue.test", rogue.issue("rogue", ["rogue.test"]), "rogue"),
              VHost("mtls.test", ca.issue("mtls", ["mtls.test"]), "mtls", client_ca=ca.pem)]
    with tls_nginx(folder / "nginx", vhosts) as port:
        yield Site(port, ca, ca.issue("client", ["client.test"], client=True),
                   rogue.issue("rogue-client", ["intruder.test"], client=True), folder)


@pytest.fixture(params=["fast", "aiohttp"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def send(client: str, url: str, tls: TlsSettings, n: int = 1) -> list[Response | Failure]:
    async def go() -> list[Response | Failure]:
        options = ReplayConfig(timeout_s=5, client=client, host_header="target", tls=tls)
        sender = PROTOCOL.open_sender(url, options)
        try:
            return [await sender.send(make_request("GET", "/")) for _ in range(n)]
        finally:
            await sender.close()
    return asyncio.run(go())


def pinned(site: Site, **kw: object) -> TlsSettings:
    return TlsSettings(**{"ca_bundle": str(site.ca.pem), "address": f"127.0.0.1:{site.port}", **kw})  # type: ignore[arg-type]


def answer(outcome: Response | Failure) -> dict[str, str]:
    assert isinstance(outcome, Response), outcome
    assert outcome.status == 200, (outcome.status, outcome.body[:200])
    return json.loads(outcome.body)  # type: ignore[no-any-return]


def test_the_production_name_goes_out_as_sni_and_host_to_the_pinned_address(site: Site,
                                                                            client: str) -> None:
    outcomes = send(client, f"https://shop.test:{site.port}", pinned(site), n=3)
    for body in map(answer, outcomes):   # three requests: the kept-alive connection too
        assert body == {"vhost": "shop", "host": "shop.test", "sni": "shop.test",
                        "proto": "HTTP/1.1", "client": ""}
    # Another name on the same address and port: SNI picks the other virtual host.
    assert answer(send(client, f"https://www.shop.test:{site.port}", pinned(site))[0])["vhost"] == "shop"
    assert answer(send(client, f"https://default.test:{site.port}", pinned(site))[0])["vhost"] == "default"


def test_curl_style_resolve_pins_the_name(site: Site, client: str) -> None:
    tls = TlsSettings(ca_bundle=str(site.ca.pem), resolve=(f"shop.test:{site.port}:127.0.0.1",))
    assert answer(send(client, f"https://shop.test:{site.port}", tls)[0])["sni"] == "shop.test"


@pytest.mark.parametrize("name, settings, reason", [
    ("wrong.test", {}, "Hostname mismatch"),                  # the default vhost's certificate
    ("expired.test", {}, "certificate has expired"),
    ("rogue.test", {}, "unable to get local issuer certificate"),
    ("shop.test", {"ca_bundle": None}, "unable to get local issuer certificate"),  # system store
])
def test_certificate_problems_are_tls_failures_with_the_reason(site: Site, client: str, name: str,
                                                               settings: dict, reason: str) -> None:
    tls = TlsSettings(**{"ca_bundle": str(site.ca.pem), "address": f"127.0.0.1:{site.port}",
                         **settings})
    outcome = send(client, f"https://{name}:{site.port}", tls)[0]
    assert isinstance(outcome, Failure) and outcome.kind == "tls", outcome
    assert outcome.detail.startswith("certificate verify failed: ") and reason in outcome.detail


def test_insecure_is_an_explicit_opt_out_of_verification(site: Site, client: str) -> None:
    body = answer(send(client, f"https://wrong.test:{site.port}", pinned(site, insecure=True))[0])
    assert body["vhost"] == "default" and body["sni"] == "wrong.test"
    assert answer(send(client, f"https://expired.test:{site.port}",
                       pinned(site, insecure=True))[0])["vhost"] == "expired"


def test_mtls_works_with_a_client_certificate_and_fails_without(site: Site, client: str) -> None:
    url = f"https://mtls.test:{site.port}"
    cert, key = site.client
    body = answer(send(client, url, pinned(site, client_cert=str(cert), client_key=str(key)))[0])
    assert body["vhost"] == "mtls" and body["client"] == "CN=client.test"
    for tls in (pinned(site), pinned(site, client_cert=str(site.rogue_client[0]),
                                        client_key=str(site.rogue_client[1]))):
        outcome = send(client, url, tls)[0]
        # nginx finishes the handshake and answers 400 itself ("No required SSL certificate
        # was sent" / "The SSL certificate error"): the application is never reached.
        assert isinstance(outcome, Response) and outcome.status == 400, outcome
        assert b"SSL certificate" in outcome.body


def test_an_unreadable_client_key_is_a_config_error(site: Site, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="client certificate"):
        PROTOCOL.open_sender(f"https://mtls.test:{site.port}",
                             ReplayConfig(tls=pinned(site, client_cert=str(site.client[0]),
                                                     client_key=str(bad))))


def test_probe_reads_the_certificate_and_what_the_target_offers(site: Site) -> None:
    cert = site.ca.issue("shop-h2", ["shop.test", "www.shop.test"], days=30)
    with tls_nginx(site.folder / "nginx-h2", [VHost("shop.test", cert, "shop")], http2=True,
                   protocols="TLSv1.2") as h2:
        shop = probe(f"https://shop.test:{h2}", pinned(site, address=f"127.0.0.1:{h2}"), 5)
        # the senders offer http/1.1 only, and get it from the same server
        assert answer(send("fast", f"https://shop.test:{h2}",
                           pinned(site, address=f"127.0.0.1:{h2}"))[0])["proto"] == "HTTP/1.1"
    assert shop["verified"] and shop["error"] is None and not shop["insecure"]
    assert shop["address"] == f"127.0.0.1:{h2}" and shop["server_name"] == "shop.test"
    assert shop["issuer"] == "O=shadowdiff tests, CN=shadowdiff test CA"
    assert shop["subject"] == "CN=shop.test"
    assert shop["subject_names"] == ["shop.test", "www.shop.test"]
    assert shop["tls_version"] == "TLSv1.2" and shop["alpn"] == "h2"
    assert shop["not_after"] > shop["not_before"] and len(shop["sha256"]) == 64
    old = probe(f"https://shop.test:{site.port}", pinned(site), 5)   # 90 days, no h2, TLS 1.3
    assert old["alpn"] == "http/1.1" and old["subject_names"] == shop["subject_names"]
    assert old["tls_version"] == "TLSv1.3"
    kinds = {d["kind"]: d for d in compare_facts(shop, old)}
    assert set(kinds) == {"tls_expiry_changed", "tls_alpn_changed", "tls_version_changed"}
    assert kinds["tls_alpn_changed"]["old"] == "h2" and kinds["tls_alpn_changed"]["new"] == "http/1.1"
    assert compare_facts(shop, shop) == []


def test_probe_of_a_failing_certificate_says_why_and_what_was_shown(site: Site) -> None:
    rogue = probe(f"https://rogue.test:{site.port}", pinned(site), 5)
    assert not rogue["verified"] and "unable to get local issuer certificate" in rogue["error"]
    assert rogue["issuer"] == "O=shadowdiff tests, CN=rogue CA"   # read without verification
    shop = probe(f"https://shop.test:{site.port}", pinned(site), 5)
    kinds = {d["kind"] for d in compare_facts(shop, rogue)}
    assert {"tls_verification_changed", "tls_issuer_changed"} <= kinds
    nothing = probe("https://shop.test:1", pinned(site, address="127.0.0.1:1"), 5)
    assert nothing["error"].startswith("cannot connect") and "issuer" not in nothing
    assert [d["kind"] for d in compare_facts(shop, nothing)] == ["tls_verification_changed"]


def test_without_cryptography_the_ssl_module_reads_the_same_facts(site: Site) -> None:
    import socket
    import ssl

    from cryptography import x509

    from shadowdiff.protocols.http import certs
    ctx = ssl.create_default_context(cafile=str(site.ca.pem))
    with socket.create_connection(("127.0.0.1", site.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="shop.test") as conn:
        decoded, der = conn.getpeercert(), conn.getpeercert(binary_form=True)
    by_ssl = certs._from_ssl(decoded)
    by_cryptography = certs._from_cryptography(x509.load_der_x509_certificate(der), x509)
    # the same strings either way, so a run's facts do not depend on what is installed
    assert by_ssl == by_cryptography
