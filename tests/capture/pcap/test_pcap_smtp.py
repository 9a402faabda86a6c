"""One pcap, two protocols (capture/dispatch.py): `read_pcap`, `capture pcap` and `run` tell
HTTP and SMTP apart per connection, by port (25, 587) and by who speaks first."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner
from pcapflow import REQ1, RESP1, Flow, read_all, write
from smtp_servers import MailHandler, serve_smtp

from shadowdiff.capture.jsonl import read_capture
from shadowdiff.capture.pcap.frames import segments
from shadowdiff.capture.pcap.tcp import Counters
from shadowdiff.cli.main import main

BANNER = b"220 mx.test ESMTP Postfix\r\n"
EHLO_REPLY = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"


def _mail(port: int, cport: int, *, mss: int = 65000) -> Flow:
    """A short SMTP session: the server greets first, then EHLO, RCPT, QUIT."""
    flow = Flow(sport=port, cport=cport).handshake()
    flow.send(False, BANNER, mss=mss)
    for command, reply in ((b"EHLO c.test\r\n", EHLO_REPLY),
                           (b"MAIL FROM:<a@sender.test>\r\n", b"250 2.1.0 Ok\r\n"),
                           (b"RCPT TO:<bob@example.com>\r\n", b"250 2.1.5 Ok\r\n"),
                           (b"QUIT\r\n", b"221 2.0.0 Bye\r\n")):
        flow.send(True, command, mss=mss)
        flow.send(False, reply, mss=mss)
    return flow.close()


def _web(port: int, cport: int) -> Flow:
    flow = Flow(sport=port, cport=cport).handshake()
    flow.send(True, REQ1)
    flow.send(False, RESP1)
    return flow.close()


def _mixed(tmp_path: Path) -> Path:
    """HTTP on 8080, SMTP on 25, SMTP on 2525 (content only, greeting cut into 1-byte
    segments), and HTTP on port 2526 whose client speaks first."""
    pkts = (_web(8080, 40000).pkts + _mail(25, 40001).pkts + _mail(2525, 40002, mss=1).pkts
            + _web(2526, 40003).pkts)
    return write(tmp_path / "mixed.pcap", pkts)


def test_read_pcap_yields_http_and_smtp_by_connection(tmp_path: Path) -> None:
    exchanges, stats = read_all(_mixed(tmp_path))
    http = [ex for ex in exchanges if ex.request.protocol == "http"]
    smtp = [ex for ex in exchanges if ex.request.protocol == "smtp"]
    assert [(ex.request.method, ex.request.target) for ex in http] == [("GET", "/users/1?full=1")] * 2
    assert [ex.id for ex in smtp] == [f"smtp-{s}.{i}" for s in (1, 2) for i in range(5)]
    assert [ex.recorded.status for ex in smtp if ex.recorded] == [220, 250, 250, 250, 221] * 2
    assert stats["smtp_sessions"] == 2 and stats["requests"] == 2
    assert stats["non_http_connections"] == 0 and stats["non_smtp_connections"] == 0


def test_port_25_is_smtp_whatever_it_carries_and_ports_narrow(tmp_path: Path) -> None:
    pcap = write(tmp_path / "p.pcap", _web(25, 40000).pkts + _mail(2525, 40001).pkts)
    exchanges, stats = read_all(pcap)
    assert {ex.request.protocol for ex in exchanges} == {"smtp"}
    assert stats["non_smtp_connections"] == 1 and stats["requests"] == 0
    only, _ = read_all(pcap, ports=[25])
    assert only == []


def test_http_only_pcaps_get_no_smtp_counts(tmp_path: Path) -> None:
    _, stats = read_all(write(tmp_path / "h.pcap", _web(8080, 40000).pkts))
    assert stats["requests"] == 1 and "smtp_sessions" not in stats


def test_segments_is_the_public_per_packet_iterator(tmp_path: Path) -> None:
    counters = Counters()
    got = list(segments(write(tmp_path / "s.pcap", _web(8080, 40000).pkts), counters))
    assert counters.packets == len(got) == 10
    assert all(seg is not None and seg.dport in (8080, 40000) for seg, _ in got)


def test_capture_pcap_command_writes_both_protocols(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["capture", "pcap", str(_mixed(tmp_path)), "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    protocols = [ex.request.protocol for ex in read_capture(out)]
    assert protocols.count("smtp") == 10 and protocols.count("http") == 2


def test_run_on_a_mixed_pcap_replays_the_smtp_steps_only(tmp_path: Path) -> None:
    old_mta, new_mta = MailHandler(), MailHandler(unknown=frozenset({"bob"}))
    with serve_smtp(old_mta, "mx.old.test") as old, serve_smtp(new_mta, "mx.new.test") as new:
        result = CliRunner().invoke(main, ["run", str(_mixed(tmp_path)), "--old", old, "--new", new,
                                           "--out", str(tmp_path / "run"), "-q"],
                                    catch_exceptions=False)
    assert result.exit_code == 1, result.output
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert summary["totals"]["skipped_by_reason"] == {
        "protocol http (the targets speak smtp)": 2}
    keys = [s["key"] for s in summary["signatures"]]
    assert keys == ["RCPT TO:<{local}@example.com> status status_changed",
                    "RCPT TO:<{local}@example.com> body.enhanced value_changed",
                    "RCPT TO:<{local}@example.com> body.text value_changed"]
    assert old_mta.delivered == new_mta.delivered == []
