"""Capture stage, SMTP from MTA logs: one synthesized session per logged message.

    mainlog / maillog (plain or .gz) ──> _Message per queue id ──> Exchange per step

For users with mail logs and no pcaps. A log says who sent a message, to whom, how big it
was and what became of it, but not the conversation, so the session is rebuilt from
those facts: `EHLO <the client's HELO, or a placeholder>`, `MAIL FROM:<sender> SIZE=n`,
one `RCPT TO:` per envelope recipient, `DATA` (with a stand-in message: logs hold no
content; skipped by default like any DATA), `QUIT`. A recipient rejected before any was
accepted (Postfix `NOQUEUE: reject: RCPT`, Exim `rejected RCPT`) becomes a session of its
own, without DATA. Every exchange is marked `synthesized`; RCPT steps also carry the
logged outcome (`logged:delivered`, `logged:rejected`, ...). There are no recorded
replies: replay compares the targets with each other. Messages that did not arrive over
SMTP (local submission, Exim's own bounces) are counted and skipped.

The line grammar is usage/maillog.py's (the same lines give usage), so the endpoints of
these sessions are keyed exactly like the usage counts of the same log.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.model import Exchange
from shadowdiff.protocols.smtp.session import Script, step_request
from shadowdiff.protocols.smtp.maillog import (
    _EXIM,
    _EXIM_EVENT,
    _EXIM_OUTCOME,
    _EXIM_REJECT,
    _FIELD,
    _PF_FROM,
    _PF_REJECT,
    _PF_STATUS,
    _PF_TO,
    _POSTFIX,
    _read_lines,
    SNIFF_LINES,
    sniff_maillog,
)

#: The EHLO argument when the log does not name the client's HELO (Postfix never does
#: for accepted mail). `.invalid` can never be a real host (RFC 2606).
PLACEHOLDER_HELO = "synthesized.invalid"
_PF_ORIG_TO = re.compile(r"\borig_to=<([^>]*)>")
_PF_HELO = re.compile(r"\bhelo=<([^>]*)>")
_PF_SIZE = re.compile(r"\bsize=(\d+)")
_EXIM_HOST = re.compile(r"\bH=(?:([^\s(\[]\S*) )?(?:\(([^)]*)\) )?\[")
_EXIM_SIZE = re.compile(r"\bS=(\d+)")
_EXIM_FROM = re.compile(r"\bF=<([^>]*)>")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})")


@dataclass
class _Message:
    """What the log said about one message (or one rejected attempt)."""

    line: int
    seen_at: float
    fmt: str                     # postfix | exim
    smtp: bool = False           # received over SMTP (Postfix client=, Exim H=)
    helo: str | None = None
    sender: str | None = None    # None until the log names it
    size: int | None = None
    accepted: bool = False       # the message itself was taken (DATA happened)
    recipients: dict[str, str] = field(default_factory=dict)  # address -> last outcome


def sniff(head: bytes) -> bool:
    """True when the head of a file looks like a Postfix maillog or an Exim mainlog."""
    lines = head.decode("utf-8", "replace").splitlines()[:SNIFF_LINES]
    return sniff_maillog(lines) is not None


def _when(line: str) -> float:
    """Epoch seconds of an ISO-dated line (Exim, RFC 5424 syslog), read as UTC; BSD
    syslog stamps have no year, so those messages get 0 (unknown)."""
    m = _ISO.match(line)
    if m is None:
        return 0.0
    stamp = dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}")
    return stamp.replace(tzinfo=dt.timezone.utc).timestamp()


class _Reader:
    """Collects messages by queue id; a message is done at Postfix `removed` / Exim
    `Completed`, or at the end of the file."""

    def __init__(self) -> None:
        self.open: dict[str, _Message] = {}
        self.done: list[_Message] = []
        self.fmt = "postfix"

    def message(self, qid: str, number: int, line: str) -> _Message:
        if qid not in self.open:
            self.open[qid] = _Message(number, _when(line), self.fmt)
        return self.open[qid]

    def finish(self, qid: str) -> None:
        if qid in self.open:
            self.done.append(self.open.pop(qid))

    def rejected(self, number: int, line: str, helo: str | None, sender: str | None,
                 verb: str, address: str) -> None:
        """A rejection with no accepted message around it: a session of its own."""
        attempt = _Message(number, _when(line), self.fmt, smtp=True, helo=helo, sender=sender)
        if verb == "RCPT":
            attempt.recipients[address] = "rejected"
        elif sender is None:
            attempt.sender = address
        self.done.append(attempt)

    def postfix(self, number: int, line: str, program: str, text: str) -> None:
        self.fmt = "postfix"
        qid, _, rest = text.partition(": ")
        reject = _PF_REJECT.match(text)
        if reject is not None:
            return self._postfix_reject(number, line, qid, reject)
        if not re.fullmatch(r"[0-9A-Za-z]{6,}", qid) or qid.islower():  # not `warning: ...`
            return
        if rest == "removed":
            return self.finish(qid)
        msg = self.message(qid, number, line)
        if program.endswith("smtpd") and rest.startswith("client="):
            msg.smtp = True
        elif (sender := _PF_FROM.match(text)) is not None and program.endswith("qmgr"):
            msg.accepted = True
            if msg.sender is None:
                msg.sender = sender.group(2)
                size = _PF_SIZE.search(rest)
                msg.size = int(size.group(1)) if size else None
        elif (rcpt := _PF_TO.match(text)) is not None:
            orig = _PF_ORIG_TO.search(rest)
            address = orig.group(1) if orig else rcpt.group(2)
            msg.recipients[address] = _PF_STATUS.get(rcpt.group(3), rcpt.group(3))

    def _postfix_reject(self, number: int, line: str, qid: str, m: re.Match[str]) -> None:
        """A RCPT rejected inside a queued message joins it; others are their own sessions."""
        fields = dict(_FIELD.findall(m.group(5)))
        helo = _PF_HELO.search(m.group(5))
        if m.group(2) == "RCPT" and "to" in fields and qid in self.open:
            self.open[qid].recipients[fields["to"]] = "rejected"
        elif m.group(2) in ("RCPT", "MAIL") and ("to" in fields or "from" in fields):
            address = fields.get("to", fields.get("from", ""))
            self.rejected(number, line, helo.group(1) if helo else None, fields.get("from"),
                          m.group(2), address)

    def exim(self, number: int, line: str, text: str) -> None:
        self.fmt = "exim"
        event = _EXIM_EVENT.match(text)
        if event is None:
            if text.endswith(" Completed") and " " not in text[:-10]:
                self.finish(text[:-10])
            elif (reject := _EXIM_REJECT.search(text)) is not None:
                sender = _EXIM_FROM.search(text)
                self.rejected(number, line, _exim_helo(text), sender.group(1) if sender else None,
                              *reject.groups())
            return
        sign, address, original = event.groups()
        msg = self.message(text.split(" ", 1)[0], number, line)
        if sign == "<=":
            size = _EXIM_SIZE.search(text)
            msg.accepted, msg.smtp = True, _EXIM_HOST.search(text) is not None
            msg.sender = "" if address == "<>" else address
            msg.helo, msg.size = _exim_helo(text), int(size.group(1)) if size else None
        else:
            msg.recipients[original or address.rstrip(":")] = _EXIM_OUTCOME[sign]


def _exim_helo(text: str) -> str | None:
    """`H=host (helo) [ip]` -> helo; `H=host [ip]` -> host (Exim omits a HELO equal to it)."""
    m = _EXIM_HOST.search(text)
    return (m.group(2) or m.group(1)) if m is not None else None


def _script(msg: _Message, session: str) -> tuple[list[str], tuple[bytes, ...]]:
    """The commands a client would have sent for this message, and its stand-in message."""
    size = f" SIZE={msg.size}" if msg.size else ""
    commands = [f"EHLO {msg.helo or PLACEHOLDER_HELO}", f"MAIL FROM:<{msg.sender or ''}>{size}"]
    commands += [f"RCPT TO:<{address}>" for address in msg.recipients]
    messages: tuple[bytes, ...] = ()
    if msg.accepted:
        commands.append("DATA")
        messages = ((f"From: <{msg.sender or 'MAILER-DAEMON'}>\r\n"
                     f"Subject: shadowdiff session {session}, synthesized from a mail log "
                     f"(logged size {msg.size or 'unknown'})\r\n\r\n"
                     "A mail log holds no message content.\r\n.\r\n").encode("utf-8"),)
    return commands + ["QUIT"], messages


def _exchanges(msg: _Message, session: str, source: str) -> Iterator[Exchange]:
    commands, messages = _script(msg, session)
    outcomes = list(msg.recipients.values())
    for step in range(len(commands) + 1):
        marks = ("synthesized", f"maillog:{msg.fmt}")
        if step >= 3 and step - 3 < len(outcomes):  # RCPT steps follow EHLO and MAIL
            marks += (f"logged:{outcomes[step - 3]}",)
        request = step_request(Script(session, tuple(commands), (1,) * len(commands),
                                      messages, step))
        yield Exchange(f"{session}.{step}", request, None, f"{source}#{session}.{step}",
                       msg.seen_at, 1, marks=marks)


def read_maillog(path: str | os.PathLike[str], stats: dict[str, Any] | None = None
                 ) -> Iterator[Exchange]:
    """Stream synthesized SMTP sessions from a Postfix maillog or Exim mainlog (or .gz).

    >>> for ex in read_maillog("/var/log/exim4/mainlog"): ...  # doctest: +SKIP
    """
    stats = {} if stats is None else stats
    for key in ("lines", "smtp_sessions", "smtp_steps", "maillog_rejected", "maillog_not_smtp"):
        stats.setdefault(key, 0)
    name = os.path.basename(str(path))
    reader = _Reader()
    for number, line in enumerate(_read_lines(str(path)), 1):
        stats["lines"] += 1
        if (pf := _POSTFIX.search(line)) is not None:
            reader.postfix(number, line, pf.group(1), pf.group(2))
        elif (ex := _EXIM.match(line)) is not None:
            reader.exim(number, line, ex.group(1))
        if reader.done:  # stream finished messages: memory holds only the open ones
            yield from _emit(reader.done, name, stats)
            reader.done = []
    yield from _emit(sorted(reader.open.values(), key=lambda m: m.line), name, stats)


def _emit(messages: list[_Message], name: str, stats: dict[str, Any]) -> Iterator[Exchange]:
    for msg in messages:
        if not msg.smtp or msg.sender is None or (msg.accepted and not msg.recipients):
            stats["maillog_not_smtp"] += 1  # local submission, a bounce, or a partial log
            continue
        stats["smtp_sessions"] += 1
        stats["maillog_rejected"] += not msg.accepted
        for exchange in _exchanges(msg, f"{name}:{msg.line}", f"maillog:{name}"):
            stats["smtp_steps"] += 1
            yield exchange
