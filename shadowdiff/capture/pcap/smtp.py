"""Capture stage, SMTP from pcaps: TCP conversations -> one exchange per session step.

    pcap.py frames ──> packet.py Segment ──> tcp.py TcpTable ──> SmtpSession (here)
                                                                  └─> Exchange per step

The TCP reassembly is the HTTP importer's (`tcp.py`), used as a library; this module is
its SMTP consumer. A connection is SMTP when its server speaks first with a 2xx/5xx reply
and the client's first line is an SMTP verb, whatever the port; `ports` only narrows the
connections looked at (25 and 587 unless told). The session script, its pipelining groups
(a command sent before the previous reply arrived joins that command's group) and the
recorded replies become exchanges as protocols/smtp.py defines them (docs/smtp.md).

A session that switches to TLS (STARTTLS accepted) is kept up to and including STARTTLS;
one that authenticates is kept up to before AUTH (credentials are never stored); BDAT
(CHUNKING) ends it too. Each is marked. A gap in either direction ends the session where
the capture lost data (`smtp:gap`); steps without a recorded reply are `no_response`.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.capture.pcap.frames import segments
from shadowdiff.capture.pcap.order import drain
from shadowdiff.capture.pcap.tcp import Counters, TcpTable
from shadowdiff.model import Exchange
from shadowdiff.protocols.smtp.session import (
    DEFAULT_PORTS,
    Reply,
    Script,
    parse_reply_line,
    step_request,
    step_response,
    verb_of,
)

#: Client verbs that make a first line look like SMTP (RFC 5321 and common extensions).
SMTP_VERBS = frozenset({"HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "RSET", "VRFY", "EXPN",
                        "HELP", "NOOP", "QUIT", "STARTTLS", "AUTH", "BDAT", "ETRN", "XCLIENT"})
#: Bytes kept per direction of one connection; past this the session is cut (`smtp:gap`).
MAX_STREAM = 64 << 20
_STOPPERS = {"AUTH": "smtp:auth", "BDAT": "smtp:bdat"}


class _Stream:
    """One direction's bytes, with the capture time at which each byte arrived."""

    __slots__ = ("cut", "data", "ends", "times")

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends: list[int] = []     # end offset of each delivered chunk
        self.times: list[float] = []  # its capture time
        self.cut = False              # bytes are missing after `data`

    def feed(self, data: bytes, ts: float, seq: int, ack: int | None) -> None:
        if self.cut:
            return
        if len(self.data) + len(data) > MAX_STREAM:
            self.cut = True
            return
        self.data += data
        self.ends.append(len(self.data))
        self.times.append(ts)

    def gap(self, ts: float) -> None:
        self.cut = True

    def eof(self, ts: float) -> None:
        pass

    def close(self, ts: float) -> None:
        pass

    def time_at(self, end: int) -> float:
        """When the byte just before offset `end` was captured."""
        i = bisect.bisect_left(self.ends, end)
        return self.times[min(i, len(self.times) - 1)] if self.times else 0.0


@dataclass
class Conversation:
    """One parsed SMTP session: its script and, per step, the replies recorded."""

    commands: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    replies: list[list[Reply]] = field(default_factory=list)   # step 0 = the greeting
    times: list[float] = field(default_factory=list)           # when each step was sent
    marks: set[str] = field(default_factory=set)


def _server_replies(stream: _Stream) -> tuple[list[Reply], list[float], bool]:
    """Every complete reply, when each ended, and whether the stream is clean SMTP."""
    replies: list[Reply] = []
    times: list[float] = []
    lines: list[str] = []
    data, pos, code = bytes(stream.data), 0, 0
    while (nl := data.find(b"\n", pos)) >= 0:
        parsed = parse_reply_line(data[pos:nl + 1].decode("utf-8", "replace"))
        pos = nl + 1
        if parsed is None or (lines and parsed[0] != code):
            return replies, times, False
        code = parsed[0]
        lines.append(parsed[2])
        if parsed[1]:
            replies.append(Reply(code, tuple(lines)))
            times.append(stream.time_at(pos))
            lines = []
    return replies, times, True


def parse_conversation(client: _Stream, server: _Stream) -> Conversation | None:
    """The session in two reassembled streams; None when it is not SMTP."""
    replies, reply_times, clean = _server_replies(server)
    if not replies or replies[0].code not in (220, 421, 554):
        return None
    conv = Conversation(replies=[[replies[0]]], times=[reply_times[0]])
    if not clean:
        conv.marks.add("smtp:bad_reply")
    data, pos, r = bytes(client.data), 0, 1
    reply_sent: list[float] = [reply_times[0]]  # when the reply each step waited for arrived
    while (nl := data.find(b"\n", pos)) >= 0:
        line = data[pos:nl].rstrip(b"\r").decode("utf-8", "replace")
        verb = verb_of(line)
        if not conv.commands and verb not in SMTP_VERBS:
            return None
        if verb in _STOPPERS:
            conv.marks.add(_STOPPERS[verb])
            break
        pos = nl + 1
        sent = client.time_at(pos)
        _group(conv, sent, reply_sent[-1])
        conv.commands.append(line)
        conv.times.append(sent)
        step = replies[r:r + 1]
        r += 1
        if verb == "DATA":
            pos, r, step = _data(conv, data, pos, step, replies, r)
        conv.replies.append(step)
        reply_sent.append(reply_times[r - 1] if step and r - 1 < len(reply_times) else float("inf"))
        if verb == "STARTTLS" and step and step[0].code == 220:
            conv.marks.add("smtp:starttls")
            break
        if verb == "QUIT" or pos < 0:
            break
    if client.cut or server.cut:
        conv.marks.add("smtp:gap")
    return conv


def _group(conv: Conversation, sent: float, previous_reply: float) -> None:
    """Pipelined: sent before the reply to the previous command arrived."""
    if conv.groups and sent < previous_reply:
        conv.groups[-1] += 1
    else:
        conv.groups.append(1)


def _data(conv: Conversation, data: bytes, pos: int, step: list[Reply], replies: list[Reply],
          r: int) -> tuple[int, int, list[Reply]]:
    """After DATA: the message (when 354 came) and the verdict reply; pos -1 = cut short."""
    if not step or step[0].code != 354:
        conv.messages.append(b".\r\n")  # one message per DATA, empty when none was sent
        return pos, r, step
    if data.startswith(b".\r\n", pos):
        end = pos + 3
    else:
        found = data.find(b"\r\n.\r\n", pos)
        end = found + 5 if found >= 0 else -1
    if end < 0:
        conv.messages.append(b".\r\n")
        conv.marks.add("smtp:truncated")
        return -1, r, []  # no verdict on the message was recorded
    conv.messages.append(data[pos:end])
    return end, r + 1, step + replies[r:r + 1]


class SmtpSession:
    """tcp.py's consumer for one connection: collects both streams, parses at the end."""

    __slots__ = ("client", "importer", "mid_stream", "number", "server")

    def __init__(self, importer: SmtpImporter, mid_stream: bool) -> None:
        self.client, self.server = _Stream(), _Stream()
        self.mid_stream = mid_stream
        self.importer = importer
        self.number = importer.next_number()

    def finish(self, ts: float) -> None:
        self.importer.finished(self)


class SmtpImporter:
    """Turns finished sessions into exchanges, counting what it saw."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.ready: list[Exchange] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ("smtp_sessions", "smtp_steps", "smtp_no_response", "non_smtp_connections",
             "smtp_mid_stream", "smtp_starttls", "smtp_auth", "smtp_gap", "smtp_pipelined"), 0)
        self._numbers = 0

    def next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    def finished(self, session: SmtpSession) -> None:
        if session.mid_stream:  # no greeting, no EHLO: nothing that replays faithfully
            self.stats["smtp_mid_stream"] += 1
            return
        conv = parse_conversation(session.client, session.server)
        if conv is None:
            self.stats["non_smtp_connections"] += 1
            return
        self.stats["smtp_sessions"] += 1
        for mark, key in (("smtp:starttls", "smtp_starttls"), ("smtp:auth", "smtp_auth"),
                          ("smtp:gap", "smtp_gap")):
            self.stats[key] += mark in conv.marks
        self.stats["smtp_pipelined"] += any(size > 1 for size in conv.groups)
        self.ready.extend(session_exchanges(conv, f"smtp-{session.number}", self.source,
                                            self.stats))


def session_exchanges(conv: Conversation, session_id: str, source: str,
                      stats: dict[str, int] | None = None) -> Iterator[Exchange]:
    """One exchange per step (0 = the greeting), each carrying the whole script."""
    commands = tuple(conv.commands)
    groups, messages = tuple(conv.groups), tuple(conv.messages)
    marks = tuple(sorted(conv.marks))
    for step, replies in enumerate(conv.replies):
        verb = "CONNECT" if step == 0 else verb_of(commands[step - 1])
        request = step_request(Script(session_id, commands, groups, messages, step))
        recorded = step_response(verb, replies) if replies else None
        if stats is not None:
            stats["smtp_steps"] += 1
            stats["smtp_no_response"] += recorded is None
        yield Exchange(f"{session_id}.{step}", request, recorded,
                       f"{source}#{session_id}.{step}", conv.times[step], 1,
                       marks=marks + (("no_response",) if recorded is None else ()))


def read_smtp_pcap(path: str | os.PathLike[str], *,
                   ports: Collection[int] | None = DEFAULT_PORTS,
                   stats: dict[str, Any] | None = None, idle_s: float = 300.0
                   ) -> Iterator[Exchange]:
    """Stream the SMTP session steps of a pcap/pcapng file.

    `ports`: server ports to look at (None: every connection, recognised by content).
    Exchanges come out when their session ends (FIN, RST, idle flush or end of file).

    >>> for ex in read_smtp_pcap("mail.pcap", ports=[25, 2525]): ...  # doctest: +SKIP
    """
    src = str(path)
    counters = Counters()
    importer = SmtpImporter(f"pcap:{os.path.basename(src)}")
    new_session: Callable[[bool], SmtpSession] = lambda mid: SmtpSession(importer, mid)
    table = TcpTable(new_session, counters, ports=ports, idle_s=idle_s)  # type: ignore[arg-type]
    last_ts = 0.0
    try:
        for seg, ts in segments(src, counters):
            if seg is None or not table.segment(seg, ts):
                counters.skipped_packets += 1
            if importer.ready:
                yield from drain(importer.ready)
            last_ts = ts
        table.close_all(last_ts)
        yield from drain(importer.ready)
    finally:
        if stats is not None:
            counts = counters.as_dict()
            stats.update({k: counts[k] for k in ("packets", "skipped_packets", "connections",
                                                 "gaps", "truncated_packets")})
            stats.update(importer.stats)


def import_smtp_pcap(path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                     ports: Collection[int] | None = DEFAULT_PORTS) -> dict[str, Any]:
    """Write a pcap's SMTP steps as a capture file; returns the counts."""
    from shadowdiff.capture.jsonl import CaptureWriter

    stats: dict[str, Any] = {}
    with CaptureWriter(out, source=f"pcap:{os.path.basename(str(path))}") as writer:
        writer.write_all(read_smtp_pcap(path, ports=ports, stats=stats))
        writer.stats.update(stats)
    return stats
