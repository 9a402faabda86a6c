"""The TLS and name-pinning options `run` and `load` share (docs/configuration.md, `[tls]`);
`shadowdiff.config.tls.tls_flags` lays them over the file's settings."""

from __future__ import annotations

from typing import Any

import click

_NAMED = [  # (parameter name, option)
    ("old_address", click.option(
        "--old-address", metavar="HOST:PORT",
        help="Connect to old here, keeping the URL's name as SNI, Host and the name "
        "the certificate must match (the hosts-file trick; docs/cutover.md).")),
    ("new_address", click.option(
        "--new-address", metavar="HOST:PORT",
        help="Connect to new here, keeping the URL's name as SNI, Host and verified name.")),
    ("old_replica_address", click.option("--old-replica-address", metavar="HOST:PORT",
                                         help="The same for the replica.")),
    ("resolve", click.option(
        "--resolve", multiple=True, metavar="[ROLE=]NAME:PORT:ADDR",
        help="curl's --resolve: NAME:PORT is reached at ADDR, for every role or, "
        "prefixed old=, new= or old_replica=, for one (repeatable).")),
    ("ca_bundle", click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False),
                               metavar="PEM", help="Trust these CAs instead of the system store.")),
    ("client_cert", click.option("--client-cert", type=click.Path(exists=True, dir_okay=False),
                                 metavar="PEM",
                                 help="Client certificate for mTLS (may hold the key too).")),
    ("client_key", click.option("--client-key", type=click.Path(exists=True, dir_okay=False),
                                metavar="PEM", help="The client certificate's private key.")),
    ("insecure", click.option(
        "--insecure", is_flag=True,
        help="Do not verify certificates (the report says so in its header).")),
    ("http2", click.option(
        "--http2", type=click.Choice(["auto", "off"]),
        help="auto: exchanges captured as HTTP/2 go over HTTP/2 to an HTTPS target "
        "that offers h2 by ALPN; off: everything over HTTP/1.1 [auto].")),
]
TLS_OPTIONS = [option for _, option in _NAMED]


def tls_options(func: Any, only: tuple[str, ...] | None = None) -> Any:
    """Decorate a command with TLS_OPTIONS, or with those whose parameters `only` names."""
    for name, option in reversed(_NAMED):
        if only is None or name in only:
            func = option(func)
    return func
