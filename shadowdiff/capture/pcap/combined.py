"""Capture stage, pcap files as `run` and `capture pcap` read them: TCP (HTTP, SMTP), then DNS.

    read_pcap_all(path) = capture/pcap.read_pcap (HTTP/1.x, SMTP over TCP)
                        + protocols/dns/pcap.read_dns_pcap (DNS over UDP and TCP)

Two passes over the file rather than one shared loop: the TCP importer's hot path is
compiled (setup.py) and stays untouched by DNS, and a pcap that holds no DNS costs the
second pass only its packet-header checks. Each exchange is tagged with its protocol, and
`run` replays those its targets speak.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from typing import Any

from shadowdiff.capture.pcap.reader import read_pcap, sniff
from shadowdiff.model import Exchange

__all__ = ["read_pcap_all", "sniff"]


def read_pcap_all(path: str | os.PathLike[str], *, ports: Collection[int] | None = None,
                  stats: dict[str, Any] | None = None, idle_s: float = 300.0,
                  dns_ports: Collection[int] | None = None) -> Iterator[Exchange]:
    """HTTP and SMTP exchanges (`ports` limits those), then DNS ones (53 and `dns_ports`)."""
    from shadowdiff.capture.pcap.dns import read_dns_pcap

    yield from read_pcap(path, ports=ports, stats=stats, idle_s=idle_s)
    yield from read_dns_pcap(path, ports=dns_ports, stats=stats)
