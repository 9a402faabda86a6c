"""Rank stage, mail logs: Exim mainlog and Postfix maillog -> production use of SMTP endpoints.

    mainlog / maillog (plain or .gz) ──> read_mail_usage() ──> MailUsage ──> (rank.routing) Usage

An MTA logs messages, not commands, so each line is mapped onto the endpoint the same
command has in a capture (`protocols.smtp.endpoint_for`, so both sides always agree):
a message accepted from a sender counts one `MAIL FROM:<{local}@domain>`, each recipient
delivered, bounced or rejected one `RCPT TO:<{local}@domain>`, each logged connection
one `CONNECT`. Outcomes (accepted, delivered, bounced, rejected, deferred) are kept per
endpoint. Deferrals are retried and logged again, so they are outcomes but not counts,
and Postfix's qmgr line (repeated on every retry) counts once per queue id.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shadowdiff.files import open_maybe_gzip
from shadowdiff.protocols.smtp.session import endpoint_for

_POSTFIX = re.compile(r"\bpostfix(?:-[\w.-]+)?/([\w/-]+)\[\d+\]: (.*)$")
_PF_REJECT = re.compile(r"^(?:NOQUEUE|\w+): (reject|discard|hold): (RCPT|MAIL|DATA|VRFY|EHLO|"
                        r"HELO|CONNECT|END-OF-MESSAGE) from \S+: (\d{3})\b([^;]*);(.*)$")
_PF_FROM = re.compile(r"^(\w+): from=<([^>]*)>")
_PF_TO = re.compile(r"^(\w+): to=<([^>]*)>.*?\bstatus=(\w+)")
# Postfix >= 3.0 ends each session with per-command counts: `ehlo=1 vrfy=0/1 quit=1`.
_PF_COMMANDS = re.compile(r"\b(ehlo|helo|vrfy|expn|help|noop|rset|quit|starttls)=(\d+)(?:/(\d+))?")
_PF_COMMAND_ARGS = {"ehlo": "host", "helo": "host", "vrfy": "name", "expn": "name"}
_FIELD = re.compile(r"\b(from|to)=<([^>]*)>")
_EXIM = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?(?: [+-]\d{4})?(?: \[\d+\])? (.*)$")
_EXIM_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}"
_EXIM_EVENT = re.compile(rf"^{_EXIM_ID} (<=|=>|->|\*>|\*\*|==) (\S+)(?: <([^>]*)>)?")
_EXIM_REJECT = re.compile(r"\brejected (RCPT|MAIL) <([^>]*)>")
_EXIM_CONNECT = re.compile(r"^SMTP connection from ")
_EXIM_OUTCOME = {"<=": "accepted", "=>": "delivered", "->": "delivered", "*>": "delivered",
                 "**": "bounced", "==": "deferred"}
_PF_STATUS = {"sent": "delivered", "bounced": "bounced", "expired": "bounced",
              "deferred": "deferred"}


@dataclass
class MailUsage:
    """Production use of SMTP endpoints, read from MTA logs."""

    counts: Counter[str] = field(default_factory=Counter)
    """endpoint -> how often production used it."""
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """endpoint -> outcome (accepted, delivered, bounced, rejected, deferred) -> count."""
    lines: int = 0
    """Lines read."""
    matched: int = 0
    """Lines that said something about a message, a recipient or a connection."""
    files: list[str] = field(default_factory=list)
    """Files read, in order."""
    formats: list[str] = field(default_factory=list)
    """`postfix` or `exim` per file (`unknown` when no line matched)."""

    def add(self, endpoint: str, outcome: str, *, counted: bool = True, n: int = 1) -> None:
        """`n` events: counted towards usage unless they are retries (deferred)."""
        if counted:
            self.counts[endpoint] += n
        self.outcomes[endpoint][outcome] += n

    def note(self) -> str:
        """How the counts were made, for the report (rank.routing.mail_usage wraps them)."""
        unmatched = [f for f, kind in zip(self.files, self.formats) if kind == "unknown"]
        note = ("mail logs: MAIL per message accepted, RCPT per recipient, CONNECT per "
                "logged connection")
        if unmatched:
            note += f"; no mail log line recognised in {', '.join(unmatched)}"
        return note


def _rcpt(address: str) -> str:
    return endpoint_for("RCPT", f"TO:<{address}>")


def _mail(address: str) -> str:
    return endpoint_for("MAIL", f"FROM:<{address}>")


class _Postfix:
    """Postfix's maillog: smtpd rejects and connects, qmgr senders, delivery agents."""

    def __init__(self, out: MailUsage) -> None:
        self.out = out
        self.queued: set[str] = set()  # queue ids whose sender was counted, until `removed`

    def line(self, program: str, text: str) -> bool:
        if program.endswith("smtpd") and text.startswith("connect from "):
            self.out.add("CONNECT", "accepted")
            return True
        if program.endswith("smtpd") and text.startswith("disconnect from "):
            return self._commands(text)
        reject = _PF_REJECT.match(text)
        if reject is not None:
            return self._reject(reject)
        if text.endswith(": removed"):
            self.queued.discard(text.split(":", 1)[0])
            return True
        sender = _PF_FROM.match(text)
        if sender is not None and program.endswith("qmgr"):
            first = sender.group(1) not in self.queued
            self.queued.add(sender.group(1))
            self.out.add(_mail(sender.group(2)), "accepted", counted=first)
            return True
        rcpt = _PF_TO.match(text)
        if rcpt is not None:
            outcome = _PF_STATUS.get(rcpt.group(3), rcpt.group(3))
            self.out.add(_rcpt(rcpt.group(2)), outcome, counted=outcome != "deferred")
            return True
        return False

    def _commands(self, text: str) -> bool:
        """EHLO, VRFY, HELP, ... per session (MAIL, RCPT and DATA are counted elsewhere)."""
        for name, ok, total in _PF_COMMANDS.findall(text):
            endpoint = endpoint_for(name.upper(), _PF_COMMAND_ARGS.get(name, ""))
            good, all_ = int(ok), int(total or ok)
            if good:
                self.out.add(endpoint, "accepted", n=good)
            if all_ > good:
                self.out.add(endpoint, "rejected", n=all_ - good)
        return True

    def _reject(self, m: re.Match[str]) -> bool:
        fields = dict(_FIELD.findall(m.group(5)))
        if m.group(2) == "RCPT" and "to" in fields:
            self.out.add(_rcpt(fields["to"]), "rejected")
        elif m.group(2) == "MAIL" and "from" in fields:
            self.out.add(_mail(fields["from"]), "rejected")
        else:
            self.out.add(m.group(2) if m.group(2) != "END-OF-MESSAGE" else "DATA", "rejected")
        return True


def _exim_line(out: MailUsage, text: str) -> bool:
    event = _EXIM_EVENT.match(text)
    if event is not None:
        sign, address, original = event.groups()
        address = address.rstrip(":")  # `** addr: reason`
        if sign == "<=":
            out.add(_mail("" if address == "<>" else address), "accepted")
            return True
        if "@" not in address and original:  # a pipe or file delivery names its address after
            address = original
        outcome = _EXIM_OUTCOME[sign]
        out.add(_rcpt(address), outcome, counted=outcome != "deferred")
        return True
    reject = _EXIM_REJECT.search(text)
    if reject is not None:
        verb, address = reject.groups()
        out.add(_rcpt(address) if verb == "RCPT" else _mail(address), "rejected")
        return True
    if _EXIM_CONNECT.match(text):
        out.add("CONNECT", "accepted")
        return True
    return False


def _read_lines(path: str) -> Iterable[str]:
    with open_maybe_gzip(path) as f:
        for raw in f:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")


def read_mail_usage(paths: Sequence[str | os.PathLike[str]]) -> MailUsage:
    """Count SMTP endpoint use in Exim mainlogs and Postfix maillogs (plain or gzip).

    >>> read_mail_usage(["/var/log/exim4/mainlog"]).counts  # doctest: +SKIP
    """
    out = MailUsage()
    for path in paths:
        postfix, kinds = _Postfix(out), Counter[str]()
        for line in _read_lines(str(path)):
            out.lines += 1
            pf = _POSTFIX.search(line)
            if pf is not None and postfix.line(pf.group(1), pf.group(2)):
                kinds["postfix"] += 1
            elif pf is None and (m := _EXIM.match(line)) is not None and _exim_line(out, m.group(1)):
                kinds["exim"] += 1
            else:
                continue
            out.matched += 1
        out.files.append(str(path))
        out.formats.append(kinds.most_common(1)[0][0] if kinds else "unknown")
    return out


#: Lines looked at to recognise a mail log: an Exim mainlog may open with connection lines
#: before its first message event.
SNIFF_LINES = 200


def is_mail_log(path: str | os.PathLike[str]) -> bool:
    """Whether a file (plain or gzip) opens like a Postfix maillog or an Exim mainlog.

    So `--usage` takes mail logs and access logs alike and tells them apart by content.
    """
    lines: list[str] = []
    try:
        for line in _read_lines(str(path)):
            lines.append(line)
            if len(lines) >= SNIFF_LINES:
                break
    except (OSError, EOFError, zlib.error):
        return False  # the access-log reader reports an unreadable file, with its position
    return sniff_maillog(lines) is not None


def sniff_maillog(lines: Sequence[str]) -> str | None:
    """`postfix` or `exim` when these first lines of a file look like that MTA's log."""
    if any(_POSTFIX.search(line) for line in lines):
        return "postfix"
    if any((m := _EXIM.match(line)) and re.match(_EXIM_ID, m.group(1)) for line in lines):
        return "exim"
    return None
