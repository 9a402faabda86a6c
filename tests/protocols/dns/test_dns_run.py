"""`shadowdiff run` with dns:// targets on the command line: faults end in exit 0/1 with failures
recorded, bad DNS flags in exit 2, and never a traceback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from testpaths import DATA
from shadowdiff.capture.jsonl import CaptureWriter
from shadowdiff.cli.main import main
from shadowdiff.demo.dns_server import Behaviour, serving
from shadowdiff.model import Exchange, Request
from shadowdiff.protocols.dns.plugin import PROTOCOL
from shadowdiff.protocols.dns.lift import lift_answer
from shadowdiff.protocols.dns.logs import parse_line, sniff
from shadowdiff.protocols.dns.wire import make_query_request
from dns_servers import garbage, silent, start_udp

ZONE = (DATA / "dns" / "example.com.zone").read_text()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dns-run") / "q.jsonl"
    requests = [make_query_request("www.example.com", "A"), make_query_request("example.com", "MX"),
                make_query_request("example.com", "AXFR"),
                Request("dns", "A", "junk.", (("transport", "udp"),), b"\x00\x01junk")]
    with CaptureWriter(path, source="test") as w:
        w.write_all(Exchange(f"q{i}", r) for i, r in enumerate(requests))
    return path


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[dict[str, int]]:
    """A silent and a garbage-answering UDP server in a thread of their own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[list, dict[str, int]]:
        (mute, mute_port), (bad, bad_port) = await start_udp(silent), await start_udp(garbage)
        return [mute, bad], {"silent": mute_port, "garbage": bad_port}

    transports, ports = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield ports

    async def stop() -> None:
        for t in transports:
            t.close()
        await asyncio.sleep(0)  # a transport closes its socket on the loop's next turn

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _run(capture: Path, out: Path, old: str, new: str, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["run", str(capture), "--old", old, "--new", new, "--out",
                                       str(out), "--timeout", "0.5", "-q", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return result.exit_code, summary


def test_silent_and_garbage_servers_are_failures_not_crashes(capture: Path, tmp_path: Path,
                                                             misbehaving: dict[str, int]) -> None:
    with serving(ZONE, "example.com", Behaviour()) as (_, port):
        code, summary = _run(capture, tmp_path / "a", f"dns://127.0.0.1:{port}",
                             f"dns://127.0.0.1:{misbehaving['silent']}")
        assert code == 1
        # new times out on both queries; the junk request is invalid on both sides
        assert summary["totals"]["failed"]["new"] == 3 and summary["totals"]["failed"]["old"] == 1
        assert summary["totals"]["skipped_by_reason"] == {"method AXFR": 1}
        code, summary = _run(capture, tmp_path / "b", f"dns://127.0.0.1:{misbehaving['garbage']}",
                             f"dns://127.0.0.1:{misbehaving['garbage']}")
        # the same failure on both sides verifies nothing: failed, never identical
        assert code in (0, 1) and summary["totals"]["failed_both"] == 3
        assert summary["totals"]["identical"] == 0


def test_identical_servers_exit_0_and_axfr_opt_in(capture: Path, tmp_path: Path) -> None:
    with serving(ZONE, "example.com", Behaviour()) as (_, a), \
            serving(ZONE, "example.com", Behaviour(shuffle=True, nsid=b"x")) as (_, b):
        code, summary = _run(capture, tmp_path / "c", f"dns://127.0.0.1:{a}", f"dns+tcp://127.0.0.1:{b}",
                             "--dns-allow", "axfr")
    assert code == 0
    assert summary["totals"]["identical"] == 3 and summary["totals"]["skipped"] == 0


def test_bad_dns_flags_and_targets_exit_2(capture: Path, tmp_path: Path) -> None:
    for extra in (["--dns-allow", "update"], []):
        new = "dns://ns.example.com:53" if not extra else "dns://127.0.0.1:53"
        result = CliRunner().invoke(main, ["run", str(capture), "--old", "dns://127.0.0.1:53",
                                           "--new", new, "--out", str(tmp_path / "d"), "-q", *extra])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


@given(st.binary(max_size=600))
def test_lift_never_raises(data: bytes) -> None:
    tree = lift_answer(data, 0)
    assert set(tree) == {"status", "header", "body"}


@given(st.text(max_size=300))
def test_log_parsing_never_raises(text: str) -> None:
    parse_line(text)
    sniff(text.encode("utf-8", "replace"))


def test_endpoint_key_of_any_request_never_raises() -> None:
    for method, target in [("", ""), ("A", "...."), ("TYPE65280", "x" * 300), ("UPDATE", "")]:
        assert isinstance(PROTOCOL.endpoint_key(Request("dns", method, target)), str)
