"""Misbehaving name servers on loopback, for the faults that well-behaved servers never show.

Each runs inside the test's own event loop (start with `await start_*()`), on 127.0.0.1 with a
port chosen by the kernel, and answers with: garbage, nothing at all, an always-truncated UDP
answer, or a TCP stream cut in the middle of a message.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rrset

Answer = Callable[[bytes], list[bytes]]


def garbage(_: bytes) -> list[bytes]:
    """Not DNS at all."""
    return [b"\x13\x37 this is not a DNS message"]


def silent(_: bytes) -> list[bytes]:
    """Never answers (a firewall dropping packets)."""
    return []


def a_record(wire: bytes, *, truncate: bool = False) -> list[bytes]:
    """A proper answer with one A record; with `truncate`, TC set and no records."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if truncate:
        response.flags |= dns.flags.TC
    else:
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7"))
    return [response.to_wire()]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for wire in self.answer(data):
            assert self.transport is not None
            self.transport.sendto(wire, addr)


async def start_udp(answer: Answer) -> tuple[asyncio.DatagramTransport, int]:
    """A UDP server answering with `answer`: (transport to close, port)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(answer),
                                                       local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]  # type: ignore[return-value]


async def start_tcp(answer: Answer, *, cut_after: int | None = None,
                    port: int = 0) -> tuple[asyncio.base_events.Server, int]:
    """A TCP server; with `cut_after`, it sends that many bytes of the framed answer and closes."""
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            query = await reader.readexactly(size)
            out = b"".join(struct.pack("!H", len(m)) + m for m in answer(query))
            writer.write(out if cut_after is None else out[:cut_after])
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", port)
    return server, server.sockets[0].getsockname()[1]


async def start_pair(udp_answer: Answer, tcp_answer: Answer, *, cut_after: int | None = None,
                     tries: int = 20) -> tuple[asyncio.DatagramTransport, asyncio.base_events.Server, int]:
    """A UDP and a TCP server on one port (a resolver retries a TC answer over TCP on the same
    port). The kernel picks a free UDP port; its TCP twin may be taken: then try another."""
    for attempt in range(tries):
        udp, port = await start_udp(udp_answer)
        try:
            tcp, _ = await start_tcp(tcp_answer, cut_after=cut_after, port=port)
        except OSError:
            udp.close()
            await asyncio.sleep(0)  # let the transport finish closing
            if attempt == tries - 1:
                raise
            continue
        return udp, tcp, port
    raise AssertionError("unreachable")
