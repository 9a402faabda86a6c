"""TLS replay benchmark: requests/s of each HTTP sender against one local nginx, over plain
HTTP and over HTTPS with the production name pinned (SNI + verification against a CA made
here with `cryptography`), keep-alive, `--concurrency` requests in flight.

    .venv/bin/python benchmarks/tls.py [--requests N] [--concurrency C] [--rounds K] [--pairs-only]

Then pairs/s over HTTPS as a replay sends them (each exchange to old and to new at once, both
senders to the same nginx): the fast sender (HTTP/1.1, a keep-alive pool) against the HTTP/2
sender (exchanges captured as HTTP/2, one multiplexed connection per target), and their ratio.

The senders run in this process on one event loop (uvloop when installed, as `run` does);
nginx runs one worker. On a 2-core machine both share the cores: the figures are relative
(plain vs TLS, fast vs aiohttp, HTTP/1.1 vs HTTP/2), not a capacity. The best of K rounds is
kept.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shadowdiff.model import Request, Response  # noqa: E402
from shadowdiff.pipeline.judging import run_loop  # noqa: E402
from shadowdiff.protocols.http.plugin import PROTOCOL  # noqa: E402
from shadowdiff.protocols.http.tls import TlsSettings  # noqa: E402
from shadowdiff.replay.options import ReplayConfig  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """(CA pem, shop.test cert, key): a CA made here, a leaf for shop.test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def build(subject: str, issuer: x509.Name | None, key: object, signer: object,
              ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
             .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("bench CA", None, ca_key, ca_key, True)
    leaf = build("shop.test", ca.subject, leaf_key, ca_key, False)
    paths = folder / "ca.pem", folder / "shop.crt", folder / "shop.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return paths


def start_nginx(work: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    plain, tls = free_port(), free_port()
    temps = "".join(f"{n}_temp_path {work}/{n};\n" for n in ("client_body", "proxy", "fastcgi",
                                                             "uwsgi", "scgi"))
    body = '{"items": [1, 2, 3], "name": "shop", "ok": true}'
    (work / "nginx.conf").write_text(f"""daemon off; master_process off; pid {work}/nginx.pid;
error_log {work}/error.log warn; events {{ worker_connections 1024; }}
http {{ access_log off; {temps} keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{plain}; location / {{ default_type application/json; return 200 '{body}'; }} }}
  server {{ listen 127.0.0.1:{tls} ssl http2; server_name shop.test; ssl_certificate {cert};
           ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
           location / {{ default_type application/json; return 200 '{body}'; }} }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", tls)) == 0:
                return proc, plain, tls
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"nginx did not start: {(work / 'error.log').read_text()}")


async def rate(url: str, options: ReplayConfig, n: int, concurrency: int) -> float:
    sender = PROTOCOL.open_sender(url, options)
    request = Request("http", "GET", "/item", (("Host", "shop.test"),))
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            outcome = await sender.send(request)
            if not isinstance(outcome, Response) or outcome.status != 200:
                raise SystemExit(f"{url}: {outcome}")
    try:
        await sender.send(request)  # open the first connection outside the timing
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)
    finally:
        await sender.close()


async def pair_rate(url: str, options: ReplayConfig, request: Request, n: int,
                    concurrency: int) -> float:
    """Exchanges/s with each sent to two senders (old and new) at once, as replay does."""
    old, new = PROTOCOL.open_sender(url, options), PROTOCOL.open_sender(url, options)
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            for outcome in await asyncio.gather(old.send(request), new.send(request)):
                if not isinstance(outcome, Response) or outcome.status != 200:
                    raise SystemExit(f"{url}: {outcome}")
    try:
        await asyncio.gather(old.send(request), new.send(request))  # connect outside the timing
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)
    finally:
        await asyncio.gather(old.close(), new.close())


def measure(url: str, options: ReplayConfig, args: argparse.Namespace,
            request: Request | None = None) -> float:
    best = 0.0
    for _ in range(args.rounds):
        out: list[float] = []

        async def one() -> None:
            if request is None:
                out.append(await rate(url, options, args.requests, args.concurrency))
            else:
                out.append(await pair_rate(url, options, request, args.requests, args.concurrency))
        run_loop(one())
        best = max(best, out[0])
    return best


def pairs(url: str, options: ReplayConfig, args: argparse.Namespace) -> None:
    """The fast sender and the HTTP/2 sender, pairs/s over TLS to the same nginx, and the ratio."""
    h1 = Request("http", "GET", "/item", (("Host", "shop.test"),))
    h2 = replace(h1, http_version="HTTP/2")
    print(f"\n{'sender':>8} {'pairs/s':>11}   (HTTPS, {args.requests:,} exchanges to old and new, "
          f"{args.concurrency} in flight, best of {args.rounds})")
    fast = measure(url, options, args, h1)
    print(f"{'fast':>8} {fast:>11,.0f}   HTTP/1.1", flush=True)
    multiplexed = measure(url, options, args, h2)
    print(f"{'h2':>8} {multiplexed:>11,.0f}   HTTP/2", flush=True)
    print(f"h2 / fast = {multiplexed / fast:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs-only", action="store_true",
                        help="only the HTTP/1.1 vs HTTP/2 pairs/s over HTTPS")
    args = parser.parse_args()
    if not shutil.which("nginx"):
        raise SystemExit("benchmarks/tls.py needs nginx (apt-get install nginx-light)")
    work = Path(tempfile.mkdtemp(prefix="shadowdiff-tls-bench-"))
    work.chmod(0o755)
    ca, cert, key = make_certs(work)
    proc, plain, tls_port = start_nginx(work, cert, key)
    try:
        pinned = TlsSettings(ca_bundle=str(ca), address=f"127.0.0.1:{tls_port}")
        https = f"https://shop.test:{tls_port}"
        if args.pairs_only:
            pairs(https, ReplayConfig(concurrency=args.concurrency, host_header="target",
                                      tls=pinned, alpn="h2"), args)
            return
        print(f"{'client':>8} {'scheme':>6} {'requests/s':>11}   ({args.requests:,} requests, "
              f"{args.concurrency} in flight, best of {args.rounds})")
        for client in ("fast", "aiohttp"):
            options = ReplayConfig(concurrency=args.concurrency, client=client, host_header="target")
            for scheme, url, opts in (("http", f"http://127.0.0.1:{plain}", options),
                                      ("https", f"https://shop.test:{tls_port}",
                                       ReplayConfig(**{**options.__dict__, "tls": pinned}))):
                print(f"{client:>8} {scheme:>6} {measure(url, opts, args):>11,.0f}", flush=True)
        pairs(https, ReplayConfig(concurrency=args.concurrency, host_header="target", tls=pinned,
                                  alpn="h2"), args)   # alpn: as the pre-run probe would say
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
