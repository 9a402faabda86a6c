"""`shadowdiff mirror` and `shadowdiff collect`: live capture on the command line.

`mirror` serves old through mitmproxy and copies requests to new (live.py, live_queue.py);
`collect` is a sink for proxies that already mirror, nginx and Envoy (collect.py). Both write
a capture file, flushed with its counters on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import click

from shadowdiff.cli.capture import SECRET_OPTIONS
from shadowdiff.cli.tls import tls_options


_SAFE = "GET,HEAD,OPTIONS"


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (loopback: 127.0.0.1) -> (host, port).

    Every interface only when asked for by name (`0.0.0.0:PORT`, `[::]:PORT`): a sink that
    records credentials must not face the network by accident (docs/security.md).
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _redact(config_path: str | None, keep_secrets: bool) -> object:
    from shadowdiff.config import load_config
    return load_config(config_path).redact.keeping(keep_secrets)


#: The TLS options that concern the copies to new (old is mitmproxy's upstream, not ours).
_NEW_TLS = ("new_address", "resolve", "ca_bundle", "client_cert", "client_key", "insecure")


def _new_tls_options(func: Callable[..., None]) -> Callable[..., None]:
    return tls_options(func, only=_NEW_TLS)  # type: ignore[no-any-return]


def _secret_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(SECRET_OPTIONS):
        func = option(func)
    return func


def _ready(what: str) -> Callable[[str, int], None]:
    def announce(host: str, port: int) -> None:
        # Tests and supervisors read this line to learn the port when --listen asked for 0.
        click.echo(f"{what} listening on {host}:{port}")
        sys.stdout.flush()
    return announce


@click.command()
@click.option("--listen", required=True, metavar="HOST:PORT",
              help="Where clients connect; :PORT is loopback, 0.0.0.0:PORT every interface "
              "(port 0: any free port).")
@click.option("--old", required=True, metavar="URL", help="The system in production: clients get its answers.")
@click.option("--new", required=True, metavar="URL", help="The system under test: gets a copy of each request.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Capture file to write (.jsonl, or .jsonl.gz to compress); written on exit.")
@click.option("--sample", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Fraction of clients mirrored, chosen by a hash of the client address.")
@click.option("--sample-header", default="", metavar="NAME",
              help="Take the client from this header's first value (X-Forwarded-For behind a balancer).")
@click.option("--queue", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Copies waiting for new; when full, copies are dropped and counted.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Copies in flight to new.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds new gets per copy.")
@click.option("--methods", default=_SAFE, show_default=True,
              help="Methods copied to new; others only reach old. Copying POST can change data.")
@click.option("--drain", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="At exit, seconds copies in flight may still take.")
@click.option("--confdir", default="~/.mitmproxy", show_default=True,
              help="mitmproxy's configuration directory (it keeps its CA there).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=10 * 1024 * 1024, show_default=True,
              help="A larger request body streams to old untouched and is neither kept nor copied; "
              "a larger answer of new is a too_large failure.")
@_secret_options
@_new_tls_options
def mirror(listen: str, old: str, new: str, output: str, sample: float, sample_header: str,
           queue: int, concurrency: int, timeout: float, methods: str, drain: float,
           confdir: str, max_body_bytes: int, keep_secrets: bool, config_path: str | None,
           **tls: Any) -> None:
    """Serve OLD on --listen and mirror each request to NEW; record both answers until Ctrl-C.

    An HTTPS NEW is reached with the TLS options (`--new-address`, `--ca-bundle`, ...) and
    `[tls]` / `[tls.new]` of --config, as `run` reaches it."""
    import logging

    from shadowdiff.config import load_config
    from shadowdiff.config.tls import tls_flags
    from shadowdiff.live.mirror import run_mirror
    from shadowdiff.live.queue import MirrorSettings, describe
    # mitmproxy reports through `logging`: show its warnings and errors (old unreachable, a
    # client refused) on stderr, not its per-connection chatter.
    logging.basicConfig(level=logging.WARNING, format="shadowdiff mirror: %(levelname)s: %(message)s")
    host, port = parse_listen(listen)
    config = load_config(config_path)
    settings = MirrorSettings(
        new=new, output=output, sample=sample, queue=queue, timeout_s=timeout,
        methods=tuple(m.strip().upper() for m in methods.split(",") if m.strip()),
        concurrency=concurrency, sample_header=sample_header, drain_s=drain,
        source=f"mirror:{old}->{new}", max_body_bytes=max_body_bytes, keep_secrets=keep_secrets,
        redact=config.redact.keeping(keep_secrets),
        tls=tls_flags(config.replay, tls).for_role("new").tls)  # [tls], [tls.new], the flags
    stats = asyncio.run(run_mirror(host, port, old, settings, confdir=confdir,
                                   on_ready=_ready("mirror")))
    click.echo(f"wrote {stats['recorded']} exchanges to {output} ({describe(stats)})")


@click.command()
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where the proxy sends its mirror (port 0: any free port).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Capture file to write (.jsonl, or .jsonl.gz to compress); written on exit.")
@click.option("--max-body-bytes", type=click.IntRange(min=0), default=10 * 1024 * 1024, show_default=True,
              help="A larger request body is refused (413) and not kept (the exchange is marked "
              "request_body_missing).")
@click.option("--keep-shadow-host", is_flag=True,
              help="Keep Envoy's '-shadow' Host suffix instead of stripping it.")
@click.option("--require-token", "token_env", metavar="ENV_VAR",
              help="Record only requests whose --token-header equals this environment variable's "
              "value (others get 401); the proxy adds the header.")
@click.option("--token-header", default="X-Shadowdiff-Token", show_default=True,
              help="The header that carries the shared token (not recorded).")
@_secret_options
def collect(listen: str, output: str, max_body_bytes: int, keep_shadow_host: bool,
            token_env: str | None, token_header: str, keep_secrets: bool,
            config_path: str | None) -> None:
    """Record every request sent to --listen (an nginx or Envoy mirror) and answer 204 at once."""
    import os

    from shadowdiff.live.collect import CollectorSettings, describe, run_collector
    host, port = parse_listen(listen)
    token = None
    if token_env is not None:
        token = os.environ.get(token_env)
        if not token:
            raise click.BadParameter(f"environment variable {token_env} is not set (or empty)",
                                     param_hint="--require-token")
    settings = CollectorSettings(output=output, max_body_bytes=max_body_bytes,
                                 strip_shadow_suffix=not keep_shadow_host,
                                 source=f"collect:{host}:{port}", token=token,
                                 token_header=token_header,
                                 redact=_redact(config_path, keep_secrets))
    stats = asyncio.run(run_collector(host, port, settings, on_ready=_ready("collect")))
    click.echo(f"wrote {stats['requests']} exchanges to {output} ({describe(stats)})")
