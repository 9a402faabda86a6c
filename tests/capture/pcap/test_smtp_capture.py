"""SMTP sessions from pcaps (capture/smtp.py): steps, replies, pipelining groups, STARTTLS
and AUTH cut-offs, non-SMTP streams, truncation and gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pcapflow import Flow, write

from shadowdiff.capture.jsonl import read_capture
from shadowdiff.capture.pcap.smtp import import_smtp_pcap, read_smtp_pcap
from shadowdiff.model import Exchange
from shadowdiff.protocols.smtp.plugin import PROTOCOL
from shadowdiff.protocols.smtp.session import script_of

BANNER = b"220 mx.test ESMTP Postfix\r\n"
EHLO_REPLY = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
MESSAGE = b"Subject: t\r\n\r\nhello\r\n..dots\r\n.\r\n"


def _read(path: Path, **kw: Any) -> tuple[list[Exchange], dict[str, Any]]:
    stats: dict[str, Any] = {}
    return list(read_smtp_pcap(path, stats=stats, **kw)), stats


def _talk(flow: Flow, pairs: list[tuple[bytes, bytes]], *, mss: int = 65000) -> Flow:
    flow.handshake()
    flow.send(False, BANNER)
    for command, reply in pairs:
        flow.send(True, command, mss=mss)
        if reply:
            flow.send(False, reply, mss=mss)
    return flow


def _classic(mss: int = 65000) -> Flow:
    return _talk(Flow(sport=25), [
        (b"EHLO client.test\r\n", EHLO_REPLY),
        (b"MAIL FROM:<alice@sender.test> SIZE=40\r\n", b"250 2.1.0 Ok\r\n"),
        (b"RCPT TO:<bob@example.com>\r\n", b"550 5.1.1 <bob@example.com>: User unknown\r\n"),
        (b"RCPT TO:<carol@example.com>\r\n", b"250 2.1.5 Ok\r\n"),
        (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (MESSAGE, b"250 2.0.0 Ok: queued as 4FJ3kL1abcz\r\n"),
        (b"QUIT\r\n", b"221 2.0.0 Bye\r\n"),
    ], mss=mss).close()


def _assert_classic(exchanges: list[Exchange]) -> None:
    assert [ex.id for ex in exchanges] == [f"smtp-1.{i}" for i in range(7)]
    assert [PROTOCOL.endpoint_key(ex.request) for ex in exchanges] == [
        "CONNECT", "EHLO {host}", "MAIL FROM:<{local}@sender.test>",
        "RCPT TO:<{local}@example.com>", "RCPT TO:<{local}@example.com>", "DATA", "QUIT"]
    assert [ex.recorded.status for ex in exchanges if ex.recorded] == [220, 250, 250, 550, 250, 250, 221]
    script = script_of(exchanges[3].request)
    assert script.messages == (MESSAGE,) and script.groups == (1,) * 6 and script.step == 3
    assert PROTOCOL.lift(exchanges[1].recorded)["header"] == {  # type: ignore[arg-type]
        "pipelining": "", "size": "10240000", "8bitmime": ""}
    assert PROTOCOL.lift(exchanges[5].recorded)["body"]["intermediate"] == [354]  # type: ignore[arg-type]
    assert all(not ex.marks for ex in exchanges)


def test_a_plain_session_becomes_one_exchange_per_step(tmp_path: Path) -> None:
    exchanges, stats = _read(write(tmp_path / "a.pcap", _classic().pkts))
    _assert_classic(exchanges)
    assert stats["smtp_sessions"] == 1 and stats["smtp_steps"] == 7


def test_small_segments_and_the_capture_format(tmp_path: Path) -> None:
    pcap = write(tmp_path / "a.pcap", _classic(mss=5).pkts)
    stats = import_smtp_pcap(pcap, tmp_path / "a.jsonl")
    _assert_classic(list(read_capture(tmp_path / "a.jsonl")))
    assert stats["smtp_steps"] == 7


def test_pipelined_commands_form_one_group(tmp_path: Path) -> None:
    flow = _talk(Flow(sport=25), [(b"EHLO c.test\r\n", EHLO_REPLY)])
    flow.send(True, b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n"
                    b"DATA\r\n")
    flow.send(False, b"250 Ok\r\n250 Ok\r\n550 no\r\n354 go\r\n")
    flow.send(True, MESSAGE)
    flow.send(False, b"250 queued\r\n")
    flow.send(True, b"QUIT\r\n")
    flow.send(False, b"221 Bye\r\n")
    exchanges, stats = _read(write(tmp_path / "p.pcap", flow.close().pkts))
    assert script_of(exchanges[0].request).groups == (1, 4, 1)
    assert [ex.recorded.status for ex in exchanges if ex.recorded] == [220, 250, 250, 250, 550, 250, 221]
    assert stats["smtp_pipelined"] == 1


def test_starttls_and_auth_cut_the_session_and_mark_it(tmp_path: Path) -> None:
    tls = _talk(Flow(sport=587), [(b"EHLO c.test\r\n", EHLO_REPLY),
                                  (b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n"),
                                  (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x16\x03\x03")])
    auth = _talk(Flow(sport=587, cport=40001), [
        (b"EHLO c.test\r\n", EHLO_REPLY), (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", b"235 ok\r\n"),
        (b"MAIL FROM:<a@s.test>\r\n", b"250 ok\r\n")])
    exchanges, stats = _read(write(tmp_path / "t.pcap", tls.close().pkts + auth.close().pkts))
    by_session: dict[str, list[Exchange]] = {}
    for ex in exchanges:
        by_session.setdefault(ex.id.split(".")[0], []).append(ex)
    tls_steps, auth_steps = by_session["smtp-1"], by_session["smtp-2"]
    assert [ex.request.method for ex in tls_steps] == ["CONNECT", "EHLO", "STARTTLS"]
    assert tls_steps[-1].marks == ("smtp:starttls",)
    assert [ex.request.method for ex in auth_steps] == ["CONNECT", "EHLO"]
    assert auth_steps[0].marks == ("smtp:auth",)
    assert not any("AGFsaWNl" in v for ex in auth_steps for _, v in ex.request.headers)
    assert stats["smtp_starttls"] == stats["smtp_auth"] == 1


def test_non_smtp_on_port_25_is_counted_not_imported(tmp_path: Path) -> None:
    flow = Flow(sport=25).handshake()
    flow.send(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    flow.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    silent = Flow(sport=25, cport=40002).handshake()
    silent.send(True, b"\x00\x01binary")
    exchanges, stats = _read(write(tmp_path / "n.pcap", flow.close().pkts + silent.close().pkts))
    assert exchanges == [] and stats["non_smtp_connections"] == 2


def test_truncated_session_keeps_what_was_seen(tmp_path: Path) -> None:
    flow = _talk(Flow(sport=25), [(b"EHLO c.test\r\n", EHLO_REPLY),
                                  (b"MAIL FROM:<a@s.test>\r\n", b"250 ok\r\n"),
                                  (b"RCPT TO:<b@example.com>\r\n", b"250 ok\r\n"),
                                  (b"DATA\r\n", b"354 go\r\n"), (b"Subject: cut", b"")])
    unanswered = _talk(Flow(sport=25, cport=40001), [(b"EHLO c.test\r\n", b"")])
    # no FIN: the capture ends inside the message, and before the second EHLO's reply
    exchanges, stats = _read(write(tmp_path / "t.pcap", flow.pkts + unanswered.pkts))
    first = [ex for ex in exchanges if ex.id.startswith("smtp-1.")]
    assert [ex.request.method for ex in first] == ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA"]
    assert first[4].recorded is None and "no_response" in first[4].marks
    assert "smtp:truncated" in first[0].marks
    assert "no_response" in exchanges[-1].marks and exchanges[-1].request.method == "EHLO"
    assert stats["smtp_no_response"] == 2


def test_a_gap_ends_the_session_where_data_went_missing(tmp_path: Path) -> None:
    flow = _talk(Flow(sport=25), [(b"EHLO c.test\r\n", EHLO_REPLY)])
    flow.cseq += 30  # 30 client bytes the capture never saw, acknowledged by the server
    flow.send(True, b"RCPT TO:<b@example.com>\r\n")
    exchanges, stats = _read(write(tmp_path / "g.pcap", flow.close().pkts))
    assert [ex.request.method for ex in exchanges] == ["CONNECT", "EHLO"]
    assert exchanges[0].marks == ("smtp:gap",) and stats["smtp_gap"] == 1


def test_ports_narrow_the_connections_looked_at(tmp_path: Path) -> None:
    pkts = _talk(Flow(sport=2525), [(b"QUIT\r\n", b"221 bye\r\n")]).close().pkts
    pcap = write(tmp_path / "p.pcap", pkts)
    assert _read(pcap)[0] == []
    assert len(_read(pcap, ports=[2525])[0]) == 2
    assert len(_read(pcap, ports=None)[0]) == 2  # every port, recognised by content
