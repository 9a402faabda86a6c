"""Certificate facts of an HTTPS target, and what changed between old's and new's.

One handshake per target before the replay (`probe`), to the same pinned address, with the
same name and trust settings as the senders (tls.py), offering `h2` and `http/1.1` so the
report shows what each target would speak. A cutover that changes the certificate (another
issuer, other names, a nearer expiry, an older TLS version, no HTTP/2) is a divergence in its
own right (`compare_facts`), even when every response is byte for byte the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from shadowdiff.protocols.http.tls import TlsSettings, client_context, connect_to, tls_reason

#: The facts compared old vs new, and the divergence kind each gives (docs/report-schema.md).
FACT_KINDS: tuple[tuple[str, str], ...] = (
    ("error", "tls_verification_changed"), ("issuer", "tls_issuer_changed"),
    ("subject_names", "tls_names_changed"), ("not_after", "tls_expiry_changed"),
    ("tls_version", "tls_version_changed"), ("alpn", "tls_alpn_changed"),
)
TLS_DIVERGENCE_KINDS: tuple[str, ...] = tuple(kind for _, kind in FACT_KINDS)

_PROBE_ALPN = ("h2", "http/1.1")
_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L"}


def probe(target: str, settings: TlsSettings, timeout_s: float) -> dict[str, Any]:
    """The facts of `target`'s certificate and handshake, or why there is none.

    A certificate that fails verification is looked at once more without verification, so
    the report can say what was presented (issuer, names, expiry) beside why it failed.
    """
    parts = urlsplit(target)
    host, port = parts.hostname or "", parts.port or 443
    name = settings.server_name or host
    address = connect_to(settings, host, port)
    facts: dict[str, Any] = {"address": _join(address), "server_name": name,
                             "verified": False, "insecure": settings.insecure, "error": None}
    try:
        facts.update(_handshake(address, name, client_context(settings, _PROBE_ALPN), timeout_s))
        facts["verified"] = not settings.insecure
    except ssl.SSLCertVerificationError as exc:
        facts["error"] = tls_reason(exc)
        unverified = client_context(replace(settings, insecure=True), _PROBE_ALPN)
        try:
            facts.update(_handshake(address, name, unverified, timeout_s))
        except (OSError, ssl.SSLError):
            pass  # the reason above stands
    except ssl.SSLError as exc:
        facts["error"] = tls_reason(exc)
    except OSError as exc:
        facts["error"] = f"cannot connect: {exc}"
    return facts


def _join(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _handshake(address: tuple[str, int], name: str, ctx: ssl.SSLContext,
               timeout_s: float) -> dict[str, Any]:
    with socket.create_connection(address, timeout=timeout_s) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as conn:
            der = conn.getpeercert(binary_form=True) or b""
            facts = {"tls_version": conn.version(), "alpn": conn.selected_alpn_protocol(),
                     "cipher": (conn.cipher() or ("",))[0]}
            facts.update(_certificate(der, conn.getpeercert()))
    return facts


def _certificate(der: bytes, decoded: dict[str, Any] | None) -> dict[str, Any]:
    """Issuer, subject, names and validity, read by `cryptography` when it is installed
    (it also reads certificates that failed verification), else by the ssl module
    (verified certificates only)."""
    facts: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest() if der else None}
    try:
        from cryptography import x509
    except ImportError:
        x509 = None  # type: ignore[assignment]
    if x509 is not None and der:
        return {**facts, **_from_cryptography(x509.load_der_x509_certificate(der), x509)}
    if decoded:
        return {**facts, **_from_ssl(decoded)}
    return {**facts, "issuer": None, "subject": None, "subject_names": None, "not_before": None,
            "not_after": None}


def _from_cryptography(cert: Any, x509: Any) -> dict[str, Any]:
    def name(n: Any) -> str:
        return ", ".join(f"{a.rfc4514_attribute_name}={a.value}" for a in n)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(str(v) for v in sans.get_values_for_type(x509.DNSName)) + sorted(
            str(v) for v in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = []
    return {"issuer": name(cert.issuer), "subject": name(cert.subject), "subject_names": names,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat()}


def _from_ssl(cert: dict[str, Any]) -> dict[str, Any]:
    def name(rdns: Any) -> str:
        return ", ".join(f"{_SHORT.get(k, k)}={v}" for rdn in rdns for k, v in rdn)

    def when(text: str) -> str:
        return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.timezone.utc).isoformat()
    sans = cert.get("subjectAltName", ())
    names = sorted(v for k, v in sans if k == "DNS") + sorted(v for k, v in sans if k == "IP Address")
    return {"issuer": name(cert.get("issuer", ())), "subject": name(cert.get("subject", ())),
            "subject_names": names, "not_before": when(cert["notBefore"]),
            "not_after": when(cert["notAfter"])}


def compare_facts(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One divergence per fact that differs old vs new (docs/report-schema.md, `tls`).

    Facts a side could not read (it never connected) are not compared, except the error.
    """
    both = "tls_version" in old and "tls_version" in new   # each side saw a certificate
    out = []
    for fact, kind in FACT_KINDS:
        a, b = old.get(fact), new.get(fact)
        if a == b or (fact != "error" and not both):
            continue
        out.append({"key": f"(tls) tls.{fact} {kind}", "kind": kind, "fact": fact,
                    "old": a, "new": b})
    return out
