"""[tls], [tls.<role>] and the TLS flags: per-role settings, curl's --resolve, pinned addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowdiff.cli.main import build_config
from shadowdiff.config import config_from_dict
from shadowdiff.errors import ConfigError
from shadowdiff.protocols.http.tls import TlsSettings, connect_to, parse_address, parse_resolve


def test_role_tables_lie_over_the_common_one(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = config_from_dict({"tls": {"ca_bundle": str(ca), "resolve": ["shop.test:443:10.0.0.5"],
                                    "new": {"address": "10.0.0.6:8443", "server_name": "shop.test",
                                            "resolve": ["api.test:443:10.0.0.7"]}}})
    new, old = cfg.replay.for_role("new").tls, cfg.replay.for_role("old").tls
    assert new == TlsSettings(ca_bundle=str(ca), server_name="shop.test", address="10.0.0.6:8443",
                              resolve=("shop.test:443:10.0.0.5", "api.test:443:10.0.0.7"))
    assert old == TlsSettings(ca_bundle=str(ca), resolve=("shop.test:443:10.0.0.5",))


@pytest.mark.parametrize("table, key", [
    ({"new": {"adress": "1.2.3.4"}}, "tls.new.adress"),
    ({"address": "1.2.3.4"}, "tls.address"),            # an address belongs to one role
    ({"ca_bundle": "/no/such/file.pem"}, "tls.ca_bundle"),
    ({"resolve": ["shop.test:443"]}, "tls.resolve"),
    ({"resolve": ["shop.test:443:not-an-ip"]}, "tls.resolve"),
    ({"old": {"address": "10.0.0.5:99999"}}, "tls.old.address"),
    ({"insecure": "yes"}, "tls.insecure"),
])
def test_bad_tls_settings_name_the_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"tls": table}, "shadowdiff.toml")
    assert err.value.key == key and "shadowdiff.toml" in str(err.value)


def test_a_client_key_needs_its_certificate(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="needs its certificate"):
        config_from_dict({"tls": {"client_key": str(key)}})


def test_flags_pin_each_role_and_resolve_per_role() -> None:
    cfg = build_config(None, old="https://shop.test", new="https://shop.test",
                       old_address="10.0.0.5:443", insecure=True,
                       resolve=("new=shop.test:443:10.0.0.6", "cdn.test:443:10.0.0.9"))
    old, new = cfg.replay.for_role("old").tls, cfg.replay.for_role("new").tls
    assert connect_to(old, "shop.test", 443) == ("10.0.0.5", 443)
    assert connect_to(new, "shop.test", 443) == ("10.0.0.6", 443)
    assert connect_to(new, "shop.test", 8443) == ("shop.test", 8443)   # another port: not pinned
    assert connect_to(new, "CDN.test", 443) == ("10.0.0.9", 443)
    assert connect_to(old, "cdn.test", 443) == ("10.0.0.5", 443)   # the address wins: one target
    assert old.insecure and new.insecure
    with pytest.raises(ConfigError, match="role before '='"):
        build_config(None, resolve=("staging=shop.test:443:10.0.0.6",))
    with pytest.raises(ConfigError, match="NAME:PORT:ADDRESS") as err:
        build_config(None, resolve=("new=shop.test:10.0.0.6",))
    assert err.value.key == "--resolve"


def test_address_and_resolve_syntax() -> None:
    assert parse_address("[::1]:8443", 443) == ("::1", 8443)
    assert parse_address("::1", 443) == ("::1", 443)
    assert parse_address("backend.internal", 8080) == ("backend.internal", 8080)
    assert parse_resolve("Shop.Test:443:[::1],10.0.0.5") == ("shop.test", 443, "::1")
    assert connect_to(TlsSettings(resolve=("*:443:10.0.0.8",)), "any.test", 443) == ("10.0.0.8", 443)
    assert connect_to(TlsSettings(), "shop.test", 443) == ("shop.test", 443)


def test_http2_is_auto_off_in_the_file_or_by_flag() -> None:
    assert config_from_dict({}).replay.http2 == "auto"
    assert config_from_dict({"replay": {"http2": "off"}}).replay.http2 == "off"
    assert build_config(None, http2="off").replay.http2 == "off"
    with pytest.raises(ConfigError, match="auto, off") as err:
        config_from_dict({"replay": {"http2": "on"}})
    assert err.value.key == "replay.http2"


def test_the_probes_alpn_reaches_each_roles_options() -> None:
    from dataclasses import replace

    from shadowdiff.pipeline.judging import with_alpn
    cfg = build_config(None, old="https://shop.test", new="https://shop.test")
    tls = {"targets": {"old": {"tls_version": "TLSv1.3", "alpn": "h2"},
                       "new": {"tls_version": "TLSv1.3", "alpn": None},
                       "old_replica": {"error": "cannot connect: refused"}}}
    learned = with_alpn(cfg, tls).replay
    assert learned.for_role("old").alpn == "h2" and learned.for_role("new").alpn == ""
    assert learned.for_role("old_replica").alpn is None      # no handshake: not known
    assert with_alpn(cfg, None) is cfg and replace(cfg.replay).alpn is None
