"""`shadowdiff run` over HTTPS with the production name pinned per role: two real nginx
instances both serve `shop.test`, old with a certificate from one CA, new from another with
a later expiry and HTTP/2 offered; the answers are the same, the certificates are not, and
the run must say so as certificate divergences (and fail the default gate on them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from factories import make_exchange
from runs import run
from shadowdiff.capture.jsonl import write_capture
from tls_servers import TestCA, VHost, tls_nginx

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pair:
    old: int
    new: int
    bundle: Path
    folder: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("tlsrun")
    old_ca, new_ca = TestCA(folder / "old-ca", "old CA"), TestCA(folder / "new-ca", "new CA")
    bundle = folder / "bundle.pem"
    bundle.write_bytes(old_ca.pem.read_bytes() + new_ca.pem.read_bytes())
    # the same body on both: only the certificates differ
    with tls_nginx(folder / "old", [VHost("shop.test", old_ca.issue("old", ["shop.test"], days=20),
                                          "shop")]) as old, \
         tls_nginx(folder / "new", [VHost("shop.test", new_ca.issue("new", ["shop.test"], days=200),
                                          "shop")], http2=True) as new:
        yield Pair(old, new, bundle, folder)


def _capture(path: Path, port: int) -> Path:
    write_capture(path, [make_exchange("GET", f"/item/{i}", headers=(("Host", f"shop.test:{port}"),))
                         for i in range(20)], source="test")
    return path


def _targets(pair: Pair, port: int) -> list[str]:
    # One URL for both roles, as in production: only the addresses differ. nginx listens on
    # two ports here, so the URL's port is old's and new's address moves the port too.
    return ["--old", f"https://shop.test:{port}", "--old-address", f"127.0.0.1:{pair.old}",
            "--new", f"https://shop.test:{port}", "--new-address", f"127.0.0.1:{pair.new}"]


def test_same_answers_different_certificates_is_a_divergence(pair: Pair, tmp_path: Path) -> None:
    capture = _capture(tmp_path / "c.jsonl", pair.old)
    result, summary = run(capture, tmp_path / "out", *_targets(pair, pair.old),
                          "--ca-bundle", str(pair.bundle))
    assert summary["totals"]["identical"] == 20 and summary["signatures"] == []
    tls = summary["tls"]
    assert tls["insecure"] == []
    old, new = tls["targets"]["old"], tls["targets"]["new"]
    assert old["address"] == f"127.0.0.1:{pair.old}" and new["address"] == f"127.0.0.1:{pair.new}"
    assert old["server_name"] == new["server_name"] == "shop.test"
    assert old["verified"] and new["verified"] and old["replayed_over"] == "HTTP/1.1"
    assert (old["alpn"], new["alpn"]) == ("http/1.1", "h2")
    kinds = {d["kind"]: d for d in tls["divergences"]}
    assert set(kinds) == {"tls_issuer_changed", "tls_expiry_changed", "tls_alpn_changed"}
    assert kinds["tls_issuer_changed"]["new"] == "O=shadowdiff tests, CN=new CA"
    assert summary["exit_code"] == 1 and result.exit_code == 1
    assert "3 certificate divergences" in summary["verdict"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Certificates" in md and "tls_issuer_changed" in md and "CN=new CA" in md
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="certificates"' in html and "tls_alpn_changed" in html


def test_new_certificate_unknown_to_the_trust_store_fails_every_request(pair: Pair,
                                                                        tmp_path: Path) -> None:
    old_ca_only = pair.folder / "old-ca" / "old-CA.pem"
    capture = _capture(tmp_path / "c.jsonl", pair.old)
    _, summary = run(capture, tmp_path / "out", *_targets(pair, pair.old),
                     "--ca-bundle", str(old_ca_only))
    failures = [f for f in summary["failures"] if f["role"] == "new"]
    assert [(f["kind"], f["count"]) for f in failures] == [("tls", 20)]
    assert "unable to get local issuer certificate" in failures[0]["detail"]
    new = summary["tls"]["targets"]["new"]
    assert not new["verified"] and new["issuer"] == "O=shadowdiff tests, CN=new CA"
    assert "tls_verification_changed" in {d["kind"] for d in summary["tls"]["divergences"]}


def test_insecure_is_stated_in_every_report(pair: Pair, tmp_path: Path) -> None:
    capture = _capture(tmp_path / "c.jsonl", pair.old)
    _, summary = run(capture, tmp_path / "out", *_targets(pair, pair.old), "--insecure")
    assert summary["totals"]["identical"] == 20     # unknown CAs, yet answered: not verified
    assert summary["tls"]["insecure"] == ["old", "new"]
    assert not summary["tls"]["targets"]["new"]["verified"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "> **Not verified**: Certificate verification was OFF for old, new (--insecure)" in md
    assert "Not verified:</strong> Certificate verification was OFF" in (
        tmp_path / "out" / "report.html").read_text()


def test_load_pins_each_role_and_verifies_like_run(pair: Pair, tmp_path: Path) -> None:
    import json
    from dataclasses import replace as with_

    from click.testing import CliRunner

    from shadowdiff.cli.main import main

    capture = tmp_path / "c.jsonl"
    write_capture(capture, [with_(make_exchange("GET", f"/item/{i}"), seen_at=1_700_000_000 + i * 0.05)
                            for i in range(20)])
    old_ca_only = str(pair.folder / "old-ca" / "old-CA.pem")
    for bundle, new_errors in ((str(pair.bundle), 0), (old_ca_only, 1)):
        out = tmp_path / f"out-{new_errors}"
        result = CliRunner().invoke(main, [
            "load", str(capture), *_targets(pair, pair.old), "--ca-bundle", bundle,
            "--steps", "1", "--step-seconds", "0.4", "--pause", "0", "--out", str(out)])
        steps = {s["role"]: s for s in json.loads((out / "load.json").read_text())["steps"]}
        assert steps["old"]["error_rate"] == 0, result.output
        assert steps["new"]["error_rate"] == new_errors, result.output   # unknown CA: all fail
