"""DNS replay benchmark: exchanges/s of `shadowdiff run` beside a bare dnspython loop, same servers.

Two local name servers serve the same zone (tests/data/dns/example.com.zone): NSD (old) and
Knot (new) from Debian, or with `--python-servers` two of the demo's dnspython servers, each
in its own process. In one run this script measures, alternating, `--repeat` times:
  1. bare: an asyncio loop of `dns.asyncquery.udp` to old and new for every query (the same
     concurrency as the run), nothing else: the rate this client library allows here;
  2. shadowdiff: `shadowdiff run` on a capture of the same queries (replay, lift, judge,
     tally, reports), its `exchanges_per_s` (replay phase) and the wall time of the command;
and prints the best of each and their ratio (target: >= 0.7x the bare loop).
An exchange is one query sent to both servers (two queries).

    .venv/bin/python benchmarks/dns_replay.py [--queries N] [--concurrency C] [--repeat K] [--python-servers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is called dns.py: its directory on sys.path would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import dns.asyncquery  # noqa: E402
import dns.exception  # noqa: E402
import dns.message  # noqa: E402

from shadowdiff.capture.jsonl import CaptureWriter  # noqa: E402
from shadowdiff.model import Exchange  # noqa: E402
from shadowdiff.protocols.dns.wire import make_query_request  # noqa: E402

ZONE = HERE.parent / "tests" / "data" / "dns" / "example.com.zone"
MIX = [("www.example.com", "A"), ("mail.example.com", "A"), ("api.example.com", "A"),
       ("example.com", "MX"), ("nope.example.com", "A"), ("www.example.com", "MX"),
       ("www.example.com", "AAAA"), ("other.org", "A")]


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def start_real(d: Path) -> list[tuple[subprocess.Popen[bytes], int]]:
    old, new = free_port(), free_port()
    (d / "knot").mkdir()
    (d / "example.com.zone").write_text(ZONE.read_text())
    (d / "nsd.conf").write_text(
        f'server:\n  ip-address: 127.0.0.1@{old}\n  username: ""\n  chroot: ""\n  zonesdir: "{d}"\n'
        f'  database: ""\n  pidfile: "{d}/nsd.pid"\n  xfrdfile: "{d}/xfrd.state"\n'
        f'  zonelistfile: "{d}/zone.list"\n  server-count: 1\n'
        f'  rrl-ratelimit: 0\nremote-control:\n  control-enable: no\n'
        f'zone:\n  name: example.com\n  zonefile: "{d}/example.com.zone"\n')
    (d / "knot.conf").write_text(
        f'server:\n  listen: 127.0.0.1@{new}\n  rundir: "{d}/knot"\n  background-workers: 1\n'
        f'  udp-workers: 1\n  tcp-workers: 1\ncontrol:\n  listen: "{d}/knot/knot.sock"\n'
        f'database:\n  storage: "{d}/knot/db"\nzone:\n  - domain: example.com\n'
        f'    file: "{d}/example.com.zone"\n    zonefile-sync: -1\n    journal-content: none\n')
    log = open(d / "servers.log", "wb")
    return [(subprocess.Popen([shutil.which("nsd") or "nsd", "-d", "-c", str(d / "nsd.conf")],
                              stdout=log, stderr=log), old),
            (subprocess.Popen([shutil.which("knotd") or "knotd", "-c", str(d / "knot.conf")],
                              stdout=log, stderr=log), new)]


_PY_SERVER = """
import sys, time
from shadowdiff.demo.dns_server import serving, Behaviour
with serving(open(sys.argv[1]).read(), "example.com", Behaviour(ns_in_authority=sys.argv[2] == "new")) as (_, port):
    print(port, flush=True)
    time.sleep(3600)
"""


def start_python(d: Path) -> list[tuple[subprocess.Popen[bytes], int]]:
    out = []
    for role in ("old", "new"):
        proc = subprocess.Popen([sys.executable, "-c", _PY_SERVER, str(ZONE), role],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        out.append((proc, int(proc.stdout.readline())))
    return out


def wait_answering(port: int) -> None:
    q = dns.message.make_query("example.com", "SOA")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            asyncio.run(dns.asyncquery.udp(q, "127.0.0.1", timeout=0.5, port=port))
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} does not answer")


async def bare(queries: list[dns.message.Message], ports: list[int], concurrency: int) -> float:
    """Exchanges/s of the plainest client: each task sends its next query to both servers."""
    it = iter(queries)
    lost = 0

    async def one(q: dns.message.Message, port: int) -> None:
        nonlocal lost
        try:
            await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=port)
        except dns.exception.Timeout:
            lost += 1  # a lost datagram: counted, as shadowdiff counts a timeout

    async def worker() -> None:
        for q in it:
            await asyncio.gather(*(one(q, p) for p in ports))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if lost:
        print(f"  bare loop: {lost} queries timed out", file=sys.stderr)
    return len(queries) / (time.perf_counter() - started)


def ours(capture: Path, ports: list[int], concurrency: int, d: Path) -> tuple[float, float]:
    out = d / f"run-{time.monotonic_ns()}"
    started = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).parent / "shadowdiff"), "run", str(capture),
                          "--old", f"dns://127.0.0.1:{ports[0]}", "--new", f"dns://127.0.0.1:{ports[1]}",
                          "--concurrency", str(concurrency), "--out", str(out), "-q"],
                         capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode not in (0, 1):
        raise SystemExit(run.stderr)
    summary = json.loads((out / "summary.json").read_text())
    failed = summary["totals"]["failed"]
    if failed["old"] or failed["new"]:
        print(f"  shadowdiff run: failures {failed}", file=sys.stderr)
    return summary["totals"]["exchanges_per_s"], summary["totals"]["replayed"] / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python-servers", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        real = not args.python_servers and shutil.which("nsd") and shutil.which("knotd")
        servers = start_real(d) if real else start_python(d)
        try:
            ports = [port for _, port in servers]
            for port in ports:
                wait_answering(port)
            requests = [make_query_request(*MIX[i % len(MIX)]) for i in range(args.queries)]
            capture = d / "queries.jsonl"
            with CaptureWriter(capture, source="benchmark") as w:
                w.write_all(Exchange(f"q{i}", r) for i, r in enumerate(requests))
            messages = [dns.message.from_wire(r.body) for r in requests]
            report(d, capture, messages, ports, args, "NSD + Knot" if real else "dnspython servers")
        finally:
            for proc, _ in servers:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)


def report(d: Path, capture: Path, messages: list[dns.message.Message], ports: list[int],
           args: argparse.Namespace, servers: str) -> None:
    bare_rates, replay_rates, wall_rates = [], [], []
    for _ in range(args.repeat):
        bare_rates.append(asyncio.run(bare(messages, ports, args.concurrency)))
        replay, wall = ours(capture, ports, args.concurrency, d)
        replay_rates.append(replay)
        wall_rates.append(wall)
    b, r, w = max(bare_rates), max(replay_rates), max(wall_rates)
    print(f"servers: {servers}; {args.queries} exchanges (2 queries each), concurrency "
          f"{args.concurrency}, best of {args.repeat}")
    print(f"bare dnspython loop : {b:8.0f} exchanges/s   (all: {', '.join(f'{x:.0f}' for x in bare_rates)})")
    print(f"shadowdiff run      : {r:8.0f} exchanges/s   replay phase, ratio {r / b:.2f}x "
          f"(all: {', '.join(f'{x:.0f}' for x in replay_rates)})")
    print(f"shadowdiff run wall : {w:8.0f} exchanges/s   whole command incl. start and reports, "
          f"ratio {w / b:.2f}x")


if __name__ == "__main__":
    main()
