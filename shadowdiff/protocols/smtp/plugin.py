"""The SMTP plugin object: the `Protocol` contract wired to the session vocabulary
(`session.py`: steps, replies, endpoint names, the lifted tree) and the sender
(`client.py`), which imports the vocabulary and is imported only when a target opens.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from shadowdiff.model import Request, Response
from shadowdiff.protocols.base import Sender, Tree
from shadowdiff.protocols.smtp.session import (
    COMMAND_HEADER,
    SAFE_COMMANDS,
    endpoint_for,
    lift_reply,
    script_of,
)


class SmtpProtocol:
    """The SMTP plugin object registered as `smtp`."""

    name = "smtp"
    schemes = ("smtp",)

    def endpoint_key(self, request: Request) -> str:
        """`RCPT TO:<{local}@example.com>`, `EHLO {host}`, `CONNECT` (the greeting)."""
        return endpoint_for(request.method, request.target)

    def lift(self, response: Response) -> Tree:
        """{"status": reply code, "header": EHLO capabilities, "body": {text, enhanced?}}."""
        command = (response.header(COMMAND_HEADER) or "").upper()
        return lift_reply(command, response.body, response.status)

    def session_of(self, request: Request) -> tuple[Hashable, int]:
        """(the session, its number of steps): a partitioned run keeps a session's steps
        together, because the sender replays each session as one conversation."""
        script = script_of(request)
        return script.key(), len(script.commands) + 1

    def replay_methods(self, options: Any) -> frozenset[str]:
        """The steps safe to replay: DATA only when the targets are sinks (`smtp_deliver`)."""
        deliver = bool(getattr(options, "smtp_deliver", False))
        return SAFE_COMMANDS | {"DATA"} if deliver else SAFE_COMMANDS

    def open_sender(self, target: str, options: Any) -> Sender:
        """A sender that replays each session once to `target` (smtp://host:port)."""
        from shadowdiff.protocols.smtp.client import SmtpSender
        return SmtpSender(target, options)


PROTOCOL = SmtpProtocol()
