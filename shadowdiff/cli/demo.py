"""`shadowdiff demo`: start the bundled old and new shop services (and a second old instance,
the replica that measures noise) and run the whole pipeline.

The services run on loopback ports chosen at run time, in a thread with their own event
loop, so the demo exercises exactly the code path `shadowdiff run` takes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rich.console import Console

import shadowdiff
import shadowdiff.demo
from shadowdiff.config import load_config
from shadowdiff.replay.options import Targets
from shadowdiff.nightly.config import HistoryConfig
from shadowdiff.errors import ShadowdiffError

#: The demo services' bundled files (shadowdiff/demo/data).
DATA = Path(shadowdiff.demo.__file__).parent / "data"


def demo_files(capture_name: str = "demo.jsonl",
               log_name: str = "demo-access.log") -> tuple[Path, Path]:
    """The bundled capture and production log (captures/ in the source tree)."""
    for root in (Path(shadowdiff.__file__).resolve().parents[1], Path.cwd()):
        capture, log = root / "captures" / capture_name, root / "captures" / log_name
        if capture.exists() and log.exists():
            return capture, log
    raise ShadowdiffError(f"the demo's captures/{capture_name} and captures/{log_name} were not "
                          "found: run the demo from a clone of the shadowdiff repository")


@contextmanager
def demo_servers() -> Iterator[tuple[str, str, str]]:
    """Old, new and old's replica on 127.0.0.1, port 0, for the duration of the block."""
    from shadowdiff.demo.apps import start_demo_servers_with_replica

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-servers", daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(start_demo_servers_with_replica(), loop)
    old, new, replica, stop = started.result(30)
    try:
        yield old, new, replica
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def demo_history(out: Path) -> Path:
    """The demo's history store: beside its run directory, apart from real runs'."""
    return out.parent / "demo-history.sqlite"


def run_demo(out: Path, *, quiet: bool = False) -> int:
    """Run the demo end to end; 0 when the report was written as intended."""
    from shadowdiff.cli.console import execute

    capture, log = demo_files()
    console = Console(stderr=True)
    config = load_config(DATA / "shadowdiff.toml")
    with demo_servers() as (old, new, replica):
        if not quiet:
            console.print(f"[bold]shadowdiff demo[/]: old shop at {old}, new shop at {new}, "
                          f"old's replica at {replica} (measures noise)")
            console.print(f"replaying {capture.name}, ranking by {log.name}")
        # Its own history beside the report: demo runs must never be the "last run" a
        # real nightly job compares with. Run the demo twice to see "since last run".
        config = replace(config, targets=Targets(old=old, new=new, old_replica=replica),
                         history=HistoryConfig(path=str(demo_history(out))))
        code = execute((str(capture),), config, out_dir=out, usage_logs=(str(log),), quiet=quiet)
    return _demo_exit(code, out, quiet)


def _demo_exit(code: int, out: Path, quiet: bool) -> int:
    """The demo's divergences are the point: 1 ("diverged") is success here; 2 is a real error."""
    if code in (0, 1):
        if not quiet:
            Console(stderr=True).print(f"[green]demo ran as intended[/]: the divergences above are "
                                       f"deliberate; open {out / 'report.html'}")
        return 0
    return code


def run_smtp_demo(out: Path, *, quiet: bool = False) -> int:
    """`demo --smtp`: replay the bundled mail sessions to two MTAs; 0 when it ran as intended."""
    from shadowdiff.demo.mail import mail_servers

    with mail_servers() as (old, new, _):
        return replay_smtp_demo(out, old, new, quiet=quiet)


def replay_smtp_demo(out: Path, old: str, new: str, *, quiet: bool = False) -> int:
    """The SMTP demo's run against given MTAs, with the defaults a user gets (no DATA sent)."""
    from shadowdiff.config import Config
    from shadowdiff.replay.options import ReplayConfig
    from shadowdiff.cli.console import execute

    capture, log = demo_files("demo-smtp.jsonl", "demo-maillog.log")
    if not quiet:
        Console(stderr=True).print(f"[bold]shadowdiff demo --smtp[/]: old MTA at {old}, new MTA "
                                   f"at {new}; replaying {capture.name}, ranking by {log.name}")
    # Its own history, apart from real runs' and the HTTP demo's.
    config = Config(targets=Targets(old=old, new=new, replay_old_twice=True),
                    replay=ReplayConfig(timeout_s=5.0),
                    history=HistoryConfig(path=str(out.parent / "demo-smtp-history.sqlite")))
    code = execute((str(capture),), config, out_dir=out, usage_logs=(str(log),), quiet=quiet)
    return _demo_exit(code, out, quiet)


def run_dns_demo(out: Path, *, quiet: bool = False) -> int:
    """`demo --dns`: replay the bundled queries to two name servers; 0 when it ran as intended."""
    from shadowdiff.demo.dns import dns_servers

    with dns_servers() as (old, new, _):
        return replay_dns_demo(out, old, new, quiet=quiet)


def replay_dns_demo(out: Path, old: str, new: str, *, quiet: bool = False) -> int:
    """The DNS demo's run against given name servers, with the defaults a user gets."""
    from shadowdiff.config import Config, ReplayConfig
    from shadowdiff.cli.console import execute
    from shadowdiff.demo.dns import TTL_TOLERANCE
    from shadowdiff.protocols.dns.config import DnsConfig

    capture, log = demo_files("demo-dns-queries.txt", "demo-dns-querylog.log")
    if not quiet:
        Console(stderr=True).print(f"[bold]shadowdiff demo --dns[/]: old name server at {old}, new "
                                   f"at {new}; replaying {capture.name}, ranking by {log.name}")
    config = Config(targets=Targets(old=old, new=new, replay_old_twice=True),
                    replay=ReplayConfig(timeout_s=5.0,
                                        dns=DnsConfig(ttl_tolerance=TTL_TOLERANCE,
                                                      zones=("example.com",))),
                    history=HistoryConfig(path=str(out.parent / "demo-dns-history.sqlite")))
    code = execute((str(capture),), config, out_dir=out, usage_logs=(str(log),), quiet=quiet)
    return _demo_exit(code, out, quiet)
