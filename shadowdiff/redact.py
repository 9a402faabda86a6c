"""What reports may show: secrets (credentials, cookies, tokens) are replaced before any
example of a request or response is kept, unless the user asks to see them.

Every stage that keeps captured values for people to read goes through this one policy
(the tally's examples today), so a secret header named once is hidden everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
SECRET_HEADERS: tuple[str, ...] = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token",
)
_SECRET_QUERY = re.compile(
    r"([?&](?:[\w.-]*(?:token|secret|password|passwd|api[_-]?key|apikey|signature|sig|auth)"
    r"[\w.-]*)=)[^&#]*", re.I)


@dataclass(frozen=True)
class ReportConfig:
    """What reports may show (the `[report]` section)."""

    show_secrets: bool = False
    secret_headers: tuple[str, ...] = SECRET_HEADERS
    max_body_chars: int = 20_000


def redact_headers(headers: tuple[tuple[str, str], ...], policy: ReportConfig) -> list[list[str]]:
    """Header pairs with secrets replaced, unless the user asked to see them."""
    if policy.show_secrets:
        return [[k, v] for k, v in headers]
    secret = policy.secret_headers
    return [[k, REDACTED if k.lower() in secret else v] for k, v in headers]


def redact_target(target: str, policy: ReportConfig) -> str:
    """The request target with secret-looking query values replaced."""
    if policy.show_secrets or "?" not in target:
        return target
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, target)


def redact_values(location: str, old: Any, new: Any, policy: ReportConfig) -> tuple[Any, Any]:
    """A divergence's values, hidden when they sit in a secret header."""
    if not policy.show_secrets and location.startswith("header."):
        if location[7:] in policy.secret_headers:
            return (REDACTED if old is not None else None, REDACTED if new is not None else None)
    return old, new


HIDDEN = "***"
_TOKEN_SEGMENT = 16  # webhook tokens are path segments of 24+ characters (Slack, Mattermost...)


def redact_url(url: str) -> str:
    """A URL fit to print or store: user info, the query, the fragment and every long path
    segment (where webhook services put their token) hidden. mailto: keeps its addresses.

    >>> redact_url("https://hooks.slack.com/services/T01/B02/abcdefghijklmnopqrstuvwx?x=1")
    'https://hooks.slack.com/services/T01/B02/***?***'
    """
    if url[:7].lower() == "mailto:":
        return url.partition("?")[0]
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # not a URL at all (a bad port, say): show only its scheme
        return url.partition(":")[0] + ":" + HIDDEN
    host = f"[{host}]" if ":" in host else host
    netloc = (HIDDEN + "@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    path = "/".join(HIDDEN if len(seg) >= _TOKEN_SEGMENT else seg for seg in parts.path.split("/"))
    tail = ("?" + HIDDEN if parts.query else "") + ("#" + HIDDEN if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{path}{tail}"


def url_secrets(url: str) -> list[str]:
    """The parts of `url` that redact_url hides, longest first, so that a message quoting the
    URL (an HTTP library's error, say) can have them replaced too."""
    if url[:7].lower() == "mailto:":
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.netloc.rpartition("@")[0], parts.query, parts.fragment]
    found += [seg for seg in parts.path.split("/") if len(seg) >= _TOKEN_SEGMENT]
    return sorted({f for f in found if f}, key=len, reverse=True)
