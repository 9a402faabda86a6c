"""Loopback SMTP servers for tests: aiosmtpd "old" and "new" MTAs that differ on purpose,
misbehaving raw peers, and a helper that turns a scripted conversation into exchanges.

Every server listens on 127.0.0.1 port 0 in a background event loop and stops when its
block ends.
"""

from __future__ import annotations

import asyncio
import itertools
import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from servers import background_loop, tcp_peer

from shadowdiff.capture.pcap.smtp import Conversation, session_exchanges
from shadowdiff.model import Exchange
from shadowdiff.protocols.smtp.session import parse_replies, verb_of

_ids = itertools.count(1)


class MailHandler:
    """An MTA's policy: local domains, unknown users, capabilities; records deliveries."""

    def __init__(self, *, unknown: frozenset[str] = frozenset(), pipelining: bool = False,
                 vrfy_known: bool = False) -> None:
        self.unknown = unknown
        self.pipelining = pipelining
        self.vrfy_known = vrfy_known
        self.delivered: list[bytes] = []
        self.commands: list[str] = []
        self.envelopes: list[tuple[str, str, bool]] = []  # (MAIL FROM, RCPT TO, over TLS)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.envelopes.append((envelope.mail_from, address, session.ssl is not None))
        local, _, domain = address.rpartition("@")
        if domain.lower() != "example.com":
            return f"554 5.7.1 <{address}>: Relay access denied"
        if local.lower() in self.unknown:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_VRFY(self, server: Any, session: Any, envelope: Any, address: str) -> str:
        return f"250 2.1.5 <{address}>" if self.vrfy_known else "252 2.0.0 Cannot VRFY"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append(envelope.content)
        return f"250 2.0.0 Ok: queued as {next(_ids):08X}"


@contextmanager
def serve_smtp(handler: MailHandler, hostname: str, *, size: int = 33554432,
               tls: ssl.SSLContext | None = None, **options: Any) -> Iterator[str]:
    """Run an aiosmtpd server on 127.0.0.1:0; yields its smtp:// URL. With `tls` it
    offers STARTTLS; `options` go to aiosmtpd's SMTP (an `authenticator`, say)."""
    with background_loop() as loop:
        async def start() -> asyncio.AbstractServer:
            return await loop.create_server(
                lambda: SMTP(handler, hostname=hostname, ident="ESMTP test", data_size_limit=size,
                             tls_context=tls, **options),
                "127.0.0.1", 0)

        server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            yield f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            async def stop() -> None:
                server.close()
                await server.wait_closed()
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)


def self_signed_context(directory: Path, host: str = "mx.tls.test") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for `host` (test MTAs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextmanager
def raw_smtp(behaviour: str) -> Iterator[str]:
    """A TCP peer that is not a good MTA: `silent` (never answers), `huge` (a 1 MB reply
    line), `garbage` (a non-SMTP banner), `drop` (banner, then closes at the first command)."""

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if behaviour == "huge":
                conn.sendall(b"220 " + b"x" * (1 << 20) + b"\r\n")
            elif behaviour == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            elif behaviour == "drop":
                conn.sendall(b"220 drop.test ESMTP\r\n")
                conn.recv(1024)
                conn.close()
        except OSError:
            pass

    with tcp_peer(handle, "smtp") as url:
        yield url


def scripted_session(session_id: str, commands: list[str], server: bytes = b"",
                     groups: list[int] | None = None,
                     messages: list[bytes] | None = None) -> list[Exchange]:
    """The exchanges an importer would write for this conversation (replies optional)."""
    replies = parse_replies(server)
    conv = Conversation(commands=list(commands), groups=groups or [1] * len(commands),
                        messages=messages or [b".\r\n" for c in commands if verb_of(c) == "DATA"],
                        times=[0.0] * (len(commands) + 1))
    conv.replies = [[r] for r in replies[:len(commands) + 1]]
    conv.replies += [[] for _ in range(len(commands) + 1 - len(conv.replies))]
    return list(session_exchanges(conv, session_id, "test"))
