"""`shadowdiff mirror` to an HTTPS new under its production name: the copies go to the
pinned address, with SNI and the verified name from the URL, trusting the given CA, as
`run` reaches new (issue 14: TLS for every sender)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from factories import make_request
from shadowdiff.capture import read_exchanges
from shadowdiff.config.tls import tls_flags
from shadowdiff.live.queue import Mirror, MirrorSettings
from shadowdiff.model import Failure, Response
from shadowdiff.protocols.http.tls import TlsSettings
from shadowdiff.replay.options import ReplayConfig
from tls_servers import TestCA, VHost, tls_nginx

pytestmark = pytest.mark.integration


def _mirror_once(out: Path, tls: TlsSettings) -> object:
    """Mirror one GET to https://shop.test with `tls`; new's recorded outcome."""
    async def scenario() -> None:
        m = Mirror(MirrorSettings(new="https://shop.test", output=str(out), drain_s=2.0,
                                  tls=tls))
        await m.start()
        job = m.offer(make_request(target="/", headers=(("Host", "shop.test"),)), "127.0.0.1")
        assert job is not None
        m.old_outcome(job, Response(200, (), b"shop"))
        await m.stop()

    asyncio.run(scenario())
    [exchange] = list(read_exchanges(out))
    return dict(exchange.observed)["new"]


def _new_tls(flags: dict[str, object]) -> TlsSettings:
    """new's settings from the command line's TLS flags, as `shadowdiff mirror` makes them."""
    return tls_flags(ReplayConfig(), flags).for_role("new").tls


def test_mirror_reaches_an_https_new_by_name_at_its_pinned_address(tmp_path: Path) -> None:
    ca, stranger = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "other CA")
    with tls_nginx(tmp_path / "new", [VHost("shop.test", ca.issue("new", ["shop.test"]),
                                            "new shop")]) as port:
        flags = {"new_address": f"127.0.0.1:{port}", "ca_bundle": str(ca.pem)}
        new = _mirror_once(tmp_path / "ok.jsonl", _new_tls(flags))
        assert isinstance(new, Response) and new.status == 200
        answer = json.loads(new.body)  # the vhost that answered, and the SNI it was asked by
        assert (answer["vhost"], answer["host"], answer["sni"]) == ("new shop", "shop.test",
                                                                    "shop.test")
        # the same name and address, but a CA that did not sign new's certificate
        wrong = _mirror_once(tmp_path / "bad.jsonl",
                             _new_tls({**flags, "ca_bundle": str(stranger.pem)}))
        assert isinstance(wrong, Failure) and wrong.kind == "tls"
        assert "certificate verify failed" in wrong.detail
