"""The records every stage passes along: one vocabulary from capture to report.

They are frozen plain values (no sockets, no clients), so they pickle, compare and go
into fixtures easily. Capture produces `Exchange`s, replay turns each into a `Trial`,
diff turns a trial into `Divergence`s, rank groups those by `Signature`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

Headers = tuple[tuple[str, str], ...]

#: Where usage figures can come from, and how reports name each. Production logs of any
#: protocol are alike to ranking; only these words differ.
USAGE_SOURCES: dict[str, str] = {"access_log": "access logs", "mail_log": "mail logs",
                                 "capture": "the capture"}

#: The roles a request is replayed to. `old_replica` only measures noise.
ROLES: tuple[str, ...] = ("old", "new", "old_replica")

#: Failure kinds, as documented in docs/report-schema.md.
FAILURE_KINDS: tuple[str, ...] = ("timeout", "refused", "reset", "invalid", "too_large", "error")

#: Divergence kinds, as documented in docs/report-schema.md.
DIVERGENCE_KINDS: tuple[str, ...] = (
    "status_changed",
    "header_changed",
    "header_missing",
    "header_added",
    "field_missing",
    "field_added",
    "type_changed",
    "value_changed",
    "length_changed",
    "order_changed",
    "body_changed",
    "failure",
)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as captured, protocol-neutral."""

    protocol: str
    """`http` now; `smtp`, `dns` later."""
    method: str
    """HTTP verb (SMTP command, DNS qtype)."""
    target: str
    """Path and query for HTTP, as sent on the request line."""
    headers: Headers = ()
    """Ordered (name, value) pairs, duplicates kept."""
    body: bytes = b""
    """Raw body bytes, exactly as captured."""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return first_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Response:
    """What one system answered."""

    status: int
    """Status code (HTTP status, SMTP reply code)."""
    headers: Headers = ()
    """Ordered (name, value) pairs, duplicates kept."""
    body: bytes = b""
    """Raw body bytes as received (still content-encoded)."""
    elapsed_s: float = 0.0
    """Seconds from sending the request to reading the whole body."""
    reason: str = ""
    """Reason phrase, informative only."""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return first_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that got no usable response: data, never an exception."""

    kind: str
    """One of FAILURE_KINDS."""
    detail: str = ""
    """Human-readable cause."""
    elapsed_s: float = 0.0
    """Seconds spent before giving up."""


Outcome = Union[Response, Failure]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One captured request, with production's answer when the capture has it."""

    id: str
    """Unique within a capture; stable across re-imports of the same input."""
    request: Request
    """What the client sent."""
    recorded: Response | None = None
    """Production's response, when captured."""
    source: str = ""
    """Where it came from, e.g. `har:checkout.har#41`."""
    seen_at: float = 0.0
    """Epoch seconds when it was seen in production."""
    count: int = 1
    """How many identical requests this one stands for (after de-duplication)."""
    observed: tuple[tuple[str, Outcome], ...] = ()
    """Outcomes already observed per role (a live mirror records old and new)."""
    marks: tuple[str, ...] = ()
    """Importer notes such as `incomplete`, `no_response`, `error:...`."""


@dataclass(frozen=True, slots=True)
class Trial:
    """An exchange plus what each role answered."""

    exchange: Exchange
    """The replayed exchange."""
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    """Role name -> outcome."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """One difference between old and new on one exchange."""

    endpoint: str
    """Endpoint template, e.g. `GET /users/{id}`."""
    location: str
    """Where, with concrete indices, e.g. `body.items[3].price`."""
    kind: str
    """One of DIVERGENCE_KINDS."""
    old: Any = None
    """The old value (plain, JSON-serializable)."""
    new: Any = None
    """The new value (plain, JSON-serializable)."""

    @property
    def signature(self) -> Signature:
        """What the report groups by: indices folded into `[*]`."""
        return Signature(self.endpoint, signature_location(self.location), self.kind)


@dataclass(frozen=True, slots=True, order=True)
class Signature:
    """(endpoint, location with `[*]`, kind): the unit the report ranks."""

    endpoint: str
    location: str
    kind: str

    @property
    def key(self) -> str:
        """A single stable string, used in reports and on the command line."""
        return f"{self.endpoint} {self.location} {self.kind}"


_INDEX = re.compile(r"\[\d+\]")


def signature_location(location: str) -> str:
    """Fold list indices: `body.items[3].price` -> `body.items[*].price`."""
    return _INDEX.sub("[*]", location)


def first_header(headers: Headers, name: str) -> str | None:
    """The first value of `name` in ordered header pairs, case-insensitively."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None
