"""How to replay and where to: the `[targets]` and `[replay]` settings as the replay stage
takes them (parsed and checked by shadowdiff.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from shadowdiff.protocols.dns.config import DnsConfig
from shadowdiff.protocols.http.tls import TlsSettings
from shadowdiff.replay.breaker import BreakerConfig
from shadowdiff.protocols.smtp.config import SmtpConfig


CLIENTS: tuple[str, ...] = ("fast", "aiohttp")
HTTP2_MODES: tuple[str, ...] = ("auto", "off")


SAFE_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Targets:
    """Where to replay: URLs whose scheme picks the protocol."""

    old: str | None = None
    new: str | None = None
    old_replica: str | None = None
    replay_old_twice: bool = False
    """Without a replica: send every request to old twice, the second under `old_replica`."""

    @property
    def noise_source(self) -> str | None:
        """`old_replica`, `replay_old_twice`, or None when noise is not measured."""
        if self.old_replica:
            return "old_replica"
        return "replay_old_twice" if self.replay_old_twice and self.old else None


@dataclass(frozen=True)
class ReplayConfig:
    """How to replay."""

    concurrency: int = 32
    rate: float = 0.0                       # exchanges per second; 0 = unlimited
    timeout_s: float = 10.0
    methods: tuple[str, ...] = SAFE_METHODS
    host_header: str = "original"           # "original" | "target" | a literal host
    headers: tuple[tuple[str, str], ...] = ()   # set on every replayed request
    max_body_bytes: int = 10 * 1024 * 1024
    client: str = "fast"                     # "fast" | "aiohttp"
    smtp_deliver: bool = False              # SMTP targets are sinks: send DATA and the message
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    """The `[smtp]` section (config_smtp.py), here so every sender gets it with these options."""
    dns: DnsConfig = field(default_factory=DnsConfig)
    """The `[dns]` section (protocols/dns/config.py), likewise."""
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    """The circuit breaker per target (`breaker*` keys, `--breaker`; replay/breaker.py)."""
    auth: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """`[auth.<role>]`: headers set on requests to that target only (over `headers`)."""
    tls: TlsSettings = field(default_factory=TlsSettings)
    """`[tls]`: CA bundle, client certificate, insecure; after `for_role`, the role's own."""
    tls_roles: tuple[tuple[str, TlsSettings], ...] = ()
    """`[tls.<role>]` and `--old-address`...: each role's settings, `tls` already laid under."""
    http2: str = "auto"
    """`[replay] http2`, `--http2`: "auto" replays exchanges captured as HTTP/2 over HTTP/2
    to an HTTPS target that offers h2 by ALPN; "off" sends everything over HTTP/1.1."""
    alpn_roles: tuple[tuple[str, str], ...] = ()
    """What the pre-run probe learned: each HTTPS role's ALPN choice ("" for none), so a
    sender needs no handshake of its own to know whether the target speaks h2."""
    alpn: str | None = None
    """After `for_role`, the role's entry of `alpn_roles`; None when it was not probed."""

    def for_role(self, role: str) -> ReplayConfig:
        """These options with the role's `[auth]` headers laid over `headers`, and the
        role's TLS settings and pinned address as `tls`."""
        own_tls = dict(self.tls_roles).get(role)
        cfg = replace(self, tls=own_tls, tls_roles=()) if own_tls is not None else self
        if self.alpn_roles:
            cfg = replace(cfg, alpn=dict(self.alpn_roles).get(role), alpn_roles=())
        extra = dict(self.auth).get(role, ())
        if not extra:
            return cfg
        names = {k.lower() for k, _ in extra}
        kept = tuple((k, v) for k, v in cfg.headers if k.lower() not in names)
        return replace(cfg, headers=kept + extra)


class ReplaySettings(Protocol):
    """What the replay stage reads of a run's configuration (the Config is one)."""

    @property
    def targets(self) -> Targets: ...

    @property
    def replay(self) -> ReplayConfig: ...
