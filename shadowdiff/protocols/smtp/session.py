"""SMTP plugin: one exchange per session step, endpoint templates, and the lifted reply tree.

A captured SMTP session cannot be replayed one command at a time (RCPT means nothing
without the EHLO and MAIL before it), yet ranking wants one endpoint per kind of command
(`RCPT TO:<{local}@example.com>`), because that is what mail logs count and what a mail
admin asks about ("which recipient domains does the new MTA now reject?"). So a session
of N commands becomes N + 1 exchanges (the greeting is step 0), and every one carries the
whole session script; the sender replays each session once per target and answers every
step from that one conversation (smtp_client.py). The request mapping is documented in
docs/smtp.md and docs/capture-format.md.

Lifting masks what differs between two runs of the same MTA (queue ids, dates, IP
addresses, the server's own name in the greeting), since no later stage knows SMTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shadowdiff.model import Request, Response
from shadowdiff.protocols.base import Tree

#: Server ports that carry SMTP (submission included) when the user names none.
DEFAULT_PORTS: tuple[int, ...] = (25, 587)
#: The response header that tells `lift` which command a reply answers.
COMMAND_HEADER = "smtp-command"
#: Commands whose replies are compared without side effects (DATA only with --smtp-deliver).
SAFE_COMMANDS = frozenset({"CONNECT", "HELO", "EHLO", "MAIL", "RCPT", "RSET", "VRFY", "EXPN",
                           "HELP", "NOOP", "QUIT", "STARTTLS"})

_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_PATH = re.compile(r"^(FROM|TO):\s*<([^>]*)>", re.IGNORECASE)
_VERB = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,15}$")
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s+)?\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|"
                r"Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{4}\s+\d{2}:\d{2}(?::\d{2})?(?:\s+[+-]\d{4})?"
                r"(?:\s+\([A-Z]{2,5}\))?"), "<date>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
     "<date>"),
    (re.compile(r"\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}\b"), "<queue-id>"),  # Exim
    (re.compile(r"(?i)(?<=queued as )[0-9A-Za-z]{6,}\b"), "<queue-id>"),               # Postfix
    (re.compile(r"(?i)(?<=\bid=)[^\s;]+"), "<queue-id>"),
    (re.compile(r"\[?\b(?:\d{1,3}\.){3}\d{1,3}\b\]?"), "<ip>"),
    (re.compile(r"\[(?:IPv6:)?[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+\]"), "<ip>"),
)


# -- the session script a request carries --------------------------------------------------


@dataclass(frozen=True)
class Script:
    """One captured session, as every step's request carries it."""

    session: str
    """The session's id in the capture (`smtp-3`)."""
    commands: tuple[str, ...]
    """Client command lines in order, without CRLF (DATA messages are not commands)."""
    groups: tuple[int, ...]
    """Pipelining: sizes of the groups of commands sent without waiting (sum = commands)."""
    messages: tuple[bytes, ...]
    """The message sent after each accepted DATA: dot-stuffed, ending with CRLF.CRLF."""
    step: int
    """Which step the request is about: 0 = the greeting, k = commands[k - 1]."""

    def key(self) -> tuple[Any, ...]:
        """Identifies the session itself (every step of it shares this)."""
        return (self.session, self.commands, self.groups, self.messages)


def verb_of(line: str) -> str:
    """The command verb, upper-cased: `rcpt TO:<a@b>` -> `RCPT`."""
    return line.split(" ", 1)[0].split(":", 1)[0].upper() if line else ""


def step_request(script: Script) -> Request:
    """The request of one step: method/target name the step, headers/body carry the session.

    >>> step_request(Script("smtp-1", ("EHLO c", "QUIT"), (1, 1), (), 1)).method
    'EHLO'
    """
    if script.step == 0:
        method, target = "CONNECT", ""
    else:
        line = script.commands[script.step - 1]
        method = verb_of(line)
        target = line[len(method):].lstrip(" ") if line[:len(method)].upper() == method else line
    headers: list[tuple[str, str]] = [(":session", script.session), (":step", str(script.step))]
    if any(size > 1 for size in script.groups):
        headers.append((":pipeline", " ".join(str(size) for size in script.groups)))
    headers.extend((verb_of(line) or "?", line) for line in script.commands)
    return Request("smtp", method, target, tuple(headers), b"".join(script.messages))


def script_of(request: Request) -> Script:
    """Read the session script back from a step's request. Raises ValueError when damaged."""
    pseudo = {k: v for k, v in request.headers if k.startswith(":")}
    commands = tuple(v for k, v in request.headers if not k.startswith(":"))
    if any("\r" in c or "\n" in c for c in commands):
        raise ValueError("a command line holds a line break (damaged capture?)")
    groups = tuple(int(n) for n in pseudo.get(":pipeline", "").split()) or (1,) * len(commands)
    if sum(groups) != len(commands) or any(n < 1 for n in groups):
        raise ValueError("':pipeline' group sizes do not add up to the commands")
    step = int(pseudo.get(":step", "0"))
    if not 0 <= step <= len(commands):
        raise ValueError(f"':step' {step} is outside the session's {len(commands)} commands")
    return Script(pseudo.get(":session", ""), commands, groups, split_messages(request.body), step)


def split_messages(body: bytes) -> tuple[bytes, ...]:
    """Cut concatenated DATA messages after each `.` line (dot-stuffing keeps it unambiguous).

    >>> split_messages(b"a\\r\\n.\\r\\n.\\r\\n")
    (b'a\\r\\n.\\r\\n', b'.\\r\\n')
    """
    out: list[bytes] = []
    start = pos = 0
    while pos < len(body):
        nl = body.find(b"\n", pos)
        end = len(body) if nl < 0 else nl + 1
        if body[pos:end] in (b".\r\n", b".\n"):
            out.append(body[start:end])
            start = end
        pos = end
    if start < len(body):  # an unterminated last message: terminate it
        rest = body[start:]
        out.append(rest + (b"" if rest.endswith(b"\n") else b"\r\n") + b".\r\n")
    return tuple(out)


# -- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One server reply (possibly multi-line)."""

    code: int
    lines: tuple[str, ...]
    """The text after `ddd-` / `ddd ` of each line."""

    def wire(self) -> bytes:
        """The reply as the server sent it (CRLF line ends)."""
        last = len(self.lines) - 1
        return b"".join(f"{self.code}{' ' if i == last else '-'}{text}\r\n".encode("utf-8", "replace")
                        for i, text in enumerate(self.lines))


def parse_reply_line(line: str) -> tuple[int, bool, str] | None:
    """(code, is_last, text) of one reply line, or None when it is not an SMTP reply line."""
    m = _REPLY_LINE.match(line.rstrip("\r\n"))
    if m is None or not "2" <= m.group(1)[0] <= "5":
        return None
    return int(m.group(1)), m.group(2) == " ", m.group(3)


def parse_replies(raw: bytes) -> list[Reply]:
    """Every complete reply in `raw`; unparseable lines end the list."""
    replies: list[Reply] = []
    lines: list[str] = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        parsed = parse_reply_line(line)
        if parsed is None:
            break
        code, last, text = parsed
        lines.append(text)
        if last:
            replies.append(Reply(code, tuple(lines)))
            lines = []
    return replies


def step_response(command: str, replies: list[Reply], elapsed_s: float = 0.0) -> Response:
    """The Response of one step: its final reply's code, all its replies' bytes as the body."""
    body = b"".join(r.wire() for r in replies)
    reason = replies[-1].lines[0] if replies and replies[-1].lines else ""
    return Response(replies[-1].code if replies else 0, ((COMMAND_HEADER, command),), body,
                    elapsed_s, reason)


# -- endpoint templates --------------------------------------------------------------------


def _address_template(address: str) -> str:
    address = address.strip()
    if address.startswith("@") and ":" in address:  # source route <@a,@b:user@d>
        address = address.split(":", 1)[1]
    if "@" not in address:
        return address.lower()  # <>, <postmaster>
    domain = address.rsplit("@", 1)[1].lower()
    if domain.startswith("["):
        domain = "[{ip}]"
    return "{local}@" + domain


def endpoint_for(method: str, target: str) -> str:
    """`RCPT` + `TO:<bob@Example.com> NOTIFY=NEVER` -> `RCPT TO:<{local}@example.com>`.

    >>> endpoint_for("MAIL", "FROM:<>")
    'MAIL FROM:<>'
    >>> endpoint_for("EHLO", "client.example")
    'EHLO {host}'
    """
    verb = method.upper() if _VERB.match(method) else "{unknown}"
    arg = target.strip()
    if verb in ("MAIL", "RCPT"):
        m = _PATH.match(arg)
        if m is None:
            return f"{verb} {{unparsed}}" if arg else verb
        return f"{verb} {m.group(1).upper()}:<{_address_template(m.group(2))}>"
    if verb in ("HELO", "EHLO"):
        return f"{verb} {{host}}" if arg else verb
    if verb in ("VRFY", "EXPN"):
        return f"{verb} {{{'address' if '@' in arg else 'name'}}}" if arg else verb
    if verb == "HELP":
        return f"HELP {arg.split()[0].upper()}" if arg and _VERB.match(arg.split()[0]) else verb
    return f"{verb} {{arg}}" if arg and verb not in ("DATA", "RSET", "NOOP", "QUIT") else verb


# -- lifting -------------------------------------------------------------------------------


def mask_text(text: str) -> str:
    """Volatile parts of reply text replaced by `<date>`, `<queue-id>`, `<ip>`."""
    for pattern, name in _MASKS:
        text = pattern.sub(name, text)
    return text


def _split_enhanced(lines: tuple[str, ...]) -> tuple[str | None, list[str]]:
    enhanced, texts = None, []
    for line in lines:
        m = _ENHANCED.match(line)
        if m is not None:
            enhanced = enhanced or m.group(1)
            line = line[m.end():]
        texts.append(line)
    return enhanced, texts


def capabilities(lines: tuple[str, ...]) -> dict[str, str]:
    """EHLO keywords (lower-case) -> parameters, sorted so they compare as a set."""
    caps: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if not keyword:
            continue
        if keyword.upper().startswith("AUTH="):  # the old `AUTH=LOGIN` spelling
            keyword, params = "AUTH", keyword[5:] + " " + params
        caps[keyword.lower()] = " ".join(sorted(params.split(), key=str.upper))
    return caps


def _greeting(text: str) -> str:
    # The first word of a banner or EHLO line is the server's own name: a host, not news.
    word, sep, rest = text.partition(" ")
    return ("<host>" + sep + rest) if "." in word or word.lower() == "localhost" else text


def lift_reply(command: str, body: bytes, status: int) -> Tree:
    """The lifted tree of one step's reply bytes (see docs/smtp.md)."""
    replies = parse_replies(body)
    if not replies:
        return {"status": status, "header": {}, "body": {"text": ""}}
    final = replies[-1]
    header = capabilities(final.lines) if command == "EHLO" and final.code == 250 else {}
    lines = final.lines[:1] if header else final.lines
    enhanced, texts = _split_enhanced(lines)
    if command in ("CONNECT", "EHLO", "HELO") and texts:
        texts[0] = _greeting(texts[0])
    out: dict[str, Any] = {"text": mask_text("\n".join(texts))}
    if enhanced is not None:  # an MTA without ENHANCEDSTATUSCODES: `field_missing`
        out["enhanced"] = enhanced
    if len(replies) > 1:  # DATA: 354, then the verdict on the message
        out["intermediate"] = [r.code for r in replies[:-1]]
    return {"status": final.code, "header": header, "body": out}

