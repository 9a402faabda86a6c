"""`shadowdiff demo --smtp`: two small MTAs (aiosmtpd), OLD and NEW, that differ on purpose.

The demo replays `captures/demo-smtp.jsonl` (written by scripts/make_demo_smtp.py) to both
and ranks by `captures/demo-maillog.log`, a Postfix maillog, exactly as `shadowdiff run
mail.jsonl --old smtp://.. --new smtp://.. --usage maillog` would. Both MTAs accept mail
for `example.com`, refuse to relay elsewhere and reject unknown users alike; NEW differs
in the ways `EXPECTED_SMTP_DIVERGENCES` lists. Both record what they would deliver in
`MailPolicy.delivered`, so a test can prove the default replay delivered nothing.

aiosmtpd is imported here only, when the SMTP demo runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from shadowdiff.model import Signature

Version = Literal["old", "new"]

#: Domains both MTAs deliver for (NEW no longer takes the partner's).
LOCAL_DOMAINS: dict[Version, frozenset[str]] = {
    "old": frozenset({"example.com", "partner.test"}),
    "new": frozenset({"example.com"}),
}
#: Local parts no MTA knows.
UNKNOWN_USERS = frozenset({"nobody", "former-employee"})
#: Largest message each accepts (NEW lowered it): the SIZE capability in the EHLO reply.
SIZE_LIMIT: dict[Version, int] = {"old": 20 * 1024 * 1024, "new": 10 * 1024 * 1024}
NEW_HELP = "Help: see https://wiki.example.com/mail"
IDENT = "ESMTP demo"

#: Every deliberate old/new difference, as the report should name it.
EXPECTED_SMTP_DIVERGENCES: tuple[Signature, ...] = (
    # NEW rejects the partner domain it used to accept.
    Signature("RCPT TO:<{local}@partner.test>", "status", "status_changed"),
    # NEW disabled VRFY (502) where OLD answered 252.
    Signature("VRFY {name}", "status", "status_changed"),
    # NEW advertises a lower message size limit.
    Signature("EHLO {host}", "header.size", "header_changed"),
    # NEW's HELP points to the wiki.
    Signature("HELP", "body.text", "value_changed"),
)


class MailPolicy:
    """One MTA's answers (aiosmtpd handler hooks); records messages it would deliver."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.delivered: list[bytes] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        local, _, domain = address.rpartition("@")
        domain = domain.lower()
        if domain == "partner.test" and domain not in LOCAL_DOMAINS[self.version]:
            return f"550 5.7.1 <{address}>: Recipient domain not accepted here"
        if domain not in LOCAL_DOMAINS[self.version]:
            return f"554 5.7.1 <{address}>: Relay access denied"
        if local.lower() in UNKNOWN_USERS:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_VRFY(self, server: Any, session: Any, envelope: Any, address: str) -> str:
        if self.version == "new":
            return "502 5.5.1 VRFY command is disabled"
        return "252 2.0.0 Cannot VRFY user, but will accept message"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append(envelope.content)
        return "250 2.0.0 Ok: queued"


def _smtp_class(version: Version) -> Any:
    """aiosmtpd's SMTP, with NEW's own HELP text."""
    from aiosmtpd.smtp import SMTP

    if version == "old":
        return SMTP

    class NewSMTP(SMTP):  # type: ignore[misc]
        async def smtp_HELP(self, arg: str) -> None:
            await self.push(f"250 {NEW_HELP}")

    return NewSMTP


async def _start(version: Version, policy: MailPolicy, host: str) -> tuple[asyncio.AbstractServer, str]:
    cls = _smtp_class(version)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: cls(policy, hostname=f"mx.{version}.demo", ident=IDENT,
                    data_size_limit=SIZE_LIMIT[version]), host, 0)
    return server, f"smtp://{host}:{server.sockets[0].getsockname()[1]}"


@contextmanager
def mail_servers(host: str = "127.0.0.1") -> Iterator[tuple[str, str, dict[Version, MailPolicy]]]:
    """OLD and NEW MTAs on loopback ports chosen at run time, for the duration of the block.

    Yields their smtp:// URLs and their policies (whose `delivered` lists stay empty unless
    DATA was replayed).
    """
    try:
        import aiosmtpd  # noqa: F401
    except ImportError as exc:
        from shadowdiff.errors import ShadowdiffError
        raise ShadowdiffError("the SMTP demo needs aiosmtpd: pip install aiosmtpd") from exc
    policies: dict[Version, MailPolicy] = {"old": MailPolicy("old"), "new": MailPolicy("new")}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-mta", daemon=True)
    thread.start()
    servers: list[asyncio.AbstractServer] = []
    try:
        urls = []
        for version in ("old", "new"):
            server, url = asyncio.run_coroutine_threadsafe(
                _start(version, policies[version], host), loop).result(30)  # type: ignore[arg-type]
            servers.append(server)
            urls.append(url)
        yield urls[0], urls[1], policies
    finally:
        async def stop() -> None:
            for server in servers:
                server.close()
                await server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
