"""Real TLS servers for tests: a certificate authority made in the test (cryptography) and
nginx serving name-based virtual hosts over TLS on one loopback port (RECIPES.md, "TLS
servers for tests"). Each virtual host answers JSON naming itself, so a test sees which
one SNI picked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import require_tool

_NOW = dt.datetime.now(dt.timezone.utc)


class TestCA:
    """A CA made in the test; `issue` writes a leaf certificate and key as PEM files."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, folder: Path, name: str = "shadowdiff test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shadowdiff tests"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(_NOW - dt.timedelta(days=1))
                     .not_valid_after(_NOW + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = folder / f"{name.replace(' ', '-')}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, label: str, names: Sequence[str], *, days: float = 90,
              expired: bool = False, client: bool = False) -> tuple[Path, Path]:
        """(certificate, key) files for `names` (DNS names or IP addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = _NOW - dt.timedelta(days=30 if expired else 1)
        end = _NOW - dt.timedelta(days=1) if expired else _NOW + dt.timedelta(days=days)
        alt = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
               for n in names]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = self.folder / f"{label}.crt", self.folder / f"{label}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


@dataclass(frozen=True)
class VHost:
    """One `server` block: its name, certificate, and what it answers."""

    name: str
    cert: tuple[Path, Path]
    body: str
    client_ca: Path | None = None     # set: ssl_verify_client on, certificates from this CA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_block(port: int, vhost: VHost, default: bool, http2: bool, protocols: str,
                  prefix: Path) -> str:
    cert, key = vhost.cert
    mtls = (f"ssl_client_certificate {vhost.client_ca}; ssl_verify_client on;"
            if vhost.client_ca else "")
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl{' http2' if http2 else ''}{' default_server' if default else ''};
        server_name {vhost.name};
        ssl_protocols {protocols};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {mtls}
        location /files/ {{ alias {prefix}/files/; }}
        location / {{
            default_type application/json;
            return 200 '{{"vhost": "{vhost.body}", "host": "$host", "sni": "$ssl_server_name", "proto": "$server_protocol", "client": "$ssl_client_s_dn"}}';
        }}
    }}"""


def nginx_conf(prefix: Path, port: int, vhosts: Sequence[VHost], http2: bool = False,
               protocols: str = "TLSv1.2 TLSv1.3", access_log: bool = False) -> str:
    """A private-prefix nginx (RECIPES.md) with `vhosts` on one port, the first the default.
    `http2` offers h2 by ALPN: Debian 12's nginx 1.22 sets it per port, not per vhost.
    `access_log` writes PREFIX/access.log, one `$server_protocol $request_method $request_uri
    $status` line a request: what protocol each request really came over. Every vhost serves
    PREFIX/files/ under /files/ (static files: Content-Length, ETag, Last-Modified)."""
    blocks = "".join(_server_block(port, v, i == 0, http2, protocols, prefix)
                     for i, v in enumerate(vhosts))
    log = (f"log_format proto '$server_protocol $request_method $request_uri $status';\n"
           f"    access_log {prefix}/access.log proto;" if access_log else "access_log off;")
    temps = "".join(f"    {name}_temp_path {prefix}/{name};\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {log}
{temps}    keepalive_requests 100000;
{blocks}
}}
"""


@contextmanager
def tls_nginx(prefix: Path, vhosts: Sequence[VHost], http2: bool = False,
              protocols: str = "TLSv1.2 TLSv1.3", access_log: bool = False) -> Iterator[int]:
    """nginx serving `vhosts` over TLS on a free loopback port; yields the port."""
    binary = require_tool("nginx")
    port = free_port()
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "files"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_conf(prefix, port, vhosts, http2, protocols,
                                                  access_log))
    log = prefix / "error.log"
    with open(prefix / "stderr.log", "wb") as stderr:  # config errors come before error_log
        proc = subprocess.Popen([binary, "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (prefix / "stderr.log").read_text() + (log.read_text() if log.exists() else "")
                raise AssertionError(f"nginx did not start: {said}")
            time.sleep(0.02)
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # this PID only (master_process off: nginx is this one process)
            proc.wait(5)


@dataclass(frozen=True)
class H2Servers:
    """Two nginx serving `shop.test`: `h2` offers h2 and http/1.1 by ALPN, `plain` http/1.1
    only; both log `$server_protocol` under `folder/<h2|plain>/access.log`."""

    h2: int
    plain: int
    ca: TestCA
    folder: Path

    def log(self, which: str) -> list[str]:
        """The access log of `which` ("h2" or "plain"), a line a request."""
        return (self.folder / which / "access.log").read_text().splitlines()

    def files(self, which: str) -> Path:
        """The folder `which` serves under /files/."""
        return self.folder / which / "files"


@contextmanager
def h2_and_http1_nginx(folder: Path) -> Iterator[H2Servers]:
    """H2Servers under `folder`, with one certificate for `shop.test` from a test CA."""
    ca = TestCA(folder / "ca")
    cert = ca.issue("shop", ["shop.test"])
    with tls_nginx(folder / "h2", [VHost("shop.test", cert, "shop")], http2=True,
                   access_log=True) as h2, \
         tls_nginx(folder / "plain", [VHost("shop.test", cert, "shop")], access_log=True) as plain:
        yield H2Servers(h2, plain, ca, folder)
