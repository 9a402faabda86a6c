"""TLS and name pinning for the HTTP senders: the hosts-file trick without a hosts file.

A target keeps its production URL (`https://shop.example.com`), so the name is what goes out
as SNI and Host and what the certificate is verified against; `address` (or a curl-style
`resolve` entry) says where to connect instead of resolving the name. The senders (fast.py,
aiohttp_sender.py, h2_sender.py) and the certificate probe (certs.py) use these settings the
same way, so a cutover can be rehearsed against the new system's real name, certificate and
virtual host (docs/cutover.md).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from shadowdiff.errors import ConfigError

#: ALPN offered by the HTTP/1.1 senders; the HTTP/2 sender offers h2 too (h2_sender.H2_ALPN).
HTTP1_ALPN = ("http/1.1",)


@dataclass(frozen=True)
class TlsSettings:
    """How one role's target is reached and its certificate checked ([tls], [tls.<role>])."""

    ca_bundle: str | None = None
    """PEM file of trusted CAs, instead of the system store (curl's --cacert)."""
    client_cert: str | None = None
    """PEM client certificate for mTLS (may hold the key too)."""
    client_key: str | None = None
    """PEM private key of `client_cert`, when it is a file of its own."""
    insecure: bool = False
    """No certificate verification at all: an explicit opt-in the report states."""
    server_name: str | None = None
    """SNI and the name verified; default: the target URL's host."""
    address: str | None = None
    """`HOST:PORT` (or `HOST`) to connect to instead of resolving the URL's host."""
    resolve: tuple[str, ...] = ()
    """curl --resolve entries, `NAME:PORT:ADDR`: where `NAME:PORT` is really reached."""


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """`10.0.0.5:443`, `10.0.0.5`, `[::1]:8443`, `host.internal:443` -> (host, port).

    >>> parse_address("10.0.0.5", 443)
    ('10.0.0.5', 443)
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") > 1:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be 1..65535")
    return host, int(port_text)


def parse_resolve(entry: str) -> tuple[str, int, str]:
    """curl's `NAME:PORT:ADDR[,ADDR...]` -> (name, port, first address); `*` names every host.

    >>> parse_resolve("shop.example.com:443:10.0.0.5")
    ('shop.example.com', 443, '10.0.0.5')
    """
    name, sep1, rest = entry.strip().partition(":")
    port_text, sep2, addresses = rest.partition(":")
    if not (sep1 and sep2 and name and addresses):
        raise ValueError(f"{entry!r} is not NAME:PORT:ADDRESS (curl's --resolve syntax)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{entry!r}: the port must be 1..65535")
    first = addresses.split(",")[0].strip()
    if first.startswith("[") and first.endswith("]"):
        first = first[1:-1]
    try:
        ipaddress.ip_address(first)
    except ValueError:
        raise ValueError(f"{entry!r}: {first!r} is not an IP address") from None
    return name.lower(), int(port_text), first


def connect_to(settings: TlsSettings, host: str, port: int) -> tuple[str, int]:
    """Where a connection for `host:port` really goes: `address`, a matching `resolve`
    entry (exact name first, then `*`), or the URL's own host."""
    if settings.address:
        return parse_address(settings.address, port)
    entries = [parse_resolve(e) for e in settings.resolve]
    for wanted in (host.lower(), "*"):
        for name, entry_port, address in entries:
            if name == wanted and entry_port == port:
                return address, port
    return host, port


def client_context(settings: TlsSettings, alpn: tuple[str, ...] = HTTP1_ALPN) -> ssl.SSLContext:
    """The SSL context of one role: system CAs or `ca_bundle`, a client certificate for
    mTLS, no verification only when `insecure`. Unreadable files are a ConfigError (exit 2)."""
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA bundle {settings.ca_bundle}: {exc}",
                          key="tls.ca_bundle") from exc
    if settings.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        try:
            ctx.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load client certificate {settings.client_cert}"
                              f"{' / key ' + settings.client_key if settings.client_key else ''}: {exc}",
                              key="tls.client_cert") from exc
    elif settings.client_key:
        raise ConfigError("a client key needs its certificate (client_cert)", key="tls.client_key")
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_reason(exc: ssl.SSLError) -> str:
    """The cause of a failed handshake in words: OpenSSL's verify message for certificate
    problems (expired, wrong name, unknown CA), else its reason code."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason}"
    return f"TLS handshake failed: {exc.reason or exc}"
