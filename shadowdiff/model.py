"""The records every stage passes along: one vocabulary from capture to report.

They are frozen plain values (no sockets, no clients), so they pickle, compare and go
into fixtures easily. Capture produces `Exchange`s, replay turns each into a `Trial`,
diff turns a trial into `Divergence`s, rank groups those by `Signature`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, dataclass, field, fields
from types import MemberDescriptorType
from typing import Any, TypeVar, Union

Headers = tuple[tuple[str, str], ...]

#: Where usage figures can come from, and how reports name each. Production logs of any
#: protocol are alike to ranking; only these words differ.
USAGE_SOURCES: dict[str, str] = {"access_log": "access logs", "mail_log": "mail logs",
                                 "query_log": "DNS query logs",
                                 "capture": "the capture"}

#: The roles a request is replayed to. `old_replica` only measures noise.
ROLES: tuple[str, ...] = ("old", "new", "old_replica")

#: Failure kinds, as documented in docs/report-schema.md.
FAILURE_KINDS: tuple[str, ...] = ("timeout", "refused", "reset", "invalid", "too_large", "tls",
                                  "error")

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


_C = TypeVar("_C", bound=type)


def fast_init(cls: _C) -> _C:
    """Give the frozen slotted dataclass `cls` a cheaper `__init__`; put it above `@dataclass`.

    Why: the pcap importer builds ~3 records per captured exchange (~100k a second). A frozen
    dataclass's own `__init__` stores each field with `object.__setattr__(self, name, value)`,
    which finds the slot by name every time; this one calls each slot's member descriptor's
    `__set__`, bound once here, which stores the same value in the same slot (~40% cheaper).
    Only `__init__` changes, and it must have the very same signature (names, defaults,
    `<factory>` markers, annotations) or this raises. Everything else stays the dataclass's
    own: frozen assignment, eq, hash, repr, replace, pickling, `__match_args__`. Classes with
    `__post_init__`, `InitVar`s or `init=False` fields are refused rather than half-handled.
    """
    flds = fields(cls)  # raises TypeError unless `cls` is a dataclass
    names = [f.name for f in flds]
    own: Any = cls.__dict__.get("__init__", object.__init__)  # the dataclass's own, if any
    sig = inspect.signature(own)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if (not params.frozen or not params.init or hasattr(cls, "__post_init__")
            or sorted(list(sig.parameters)[1:]) != sorted(names)):
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen dataclass of init fields")
    env: dict[str, Any] = {}
    body = []
    self_name = next(iter(sig.parameters))  # "self", unless a field is called that
    for i, f in enumerate(flds):
        slot = inspect.getattr_static(cls, f.name, None)
        if not isinstance(slot, MemberDescriptorType):
            raise TypeError(f"fast_init: {cls.__name__}.{f.name} is not a slot")
        env[f"_set{i}"], value = slot.__set__, f.name
        if f.default_factory is not MISSING:  # the default is dataclass's `<factory>` marker
            env[f"_new{i}"], env[f"_unset{i}"] = f.default_factory, sig.parameters[f.name].default
            value = f"_new{i}() if {f.name} is _unset{i} else {f.name}"
        body.append(f"  _set{i}({self_name}, {value})")
    if env.keys() & set(names):
        raise TypeError(f"fast_init: a field of {cls.__name__} shadows a helper name")
    cls.__init__ = _init_like(own, sig, env, body)  # type: ignore[misc]
    return cls


def _init_like(own: Any, sig: inspect.Signature, env: dict[str, Any], body: list[str]) -> Any:
    """A function with `own`'s signature and the statements `body`, closing over `env`."""
    params: list[str] = []
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        params.append(p.name)
    src = (f"def make({', '.join(env)}):\n def __init__({', '.join(params)}):\n"
           + "\n".join(body or ["  pass"]) + "\n return __init__\n")
    scope: dict[str, Any] = {}
    exec(src, own.__globals__, scope)  # noqa: S102 - source built from field names only
    init = scope["make"](**env)
    init.__defaults__, init.__kwdefaults__ = own.__defaults__, own.__kwdefaults__
    init.__annotations__ = own.__annotations__
    init.__module__, init.__qualname__, init.__doc__ = own.__module__, own.__qualname__, own.__doc__
    if inspect.signature(init) != sig:
        raise TypeError(f"fast_init: could not reproduce {own.__qualname__}{sig}")
    return init


@fast_init
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
    http_version: str = "HTTP/1.1"
    """`HTTP/1.0`, `HTTP/1.1` (also when the capture does not say) or `HTTP/2`."""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return first_header(self.headers, name)


#: The HTTP versions a Request records (`http_version`), the default first.
HTTP_VERSIONS: tuple[str, ...] = ("HTTP/1.1", "HTTP/1.0", "HTTP/2")


def http_version(text: str | None) -> str:
    """A capture's spelling of an HTTP version as one of HTTP_VERSIONS; anything unknown
    (HTTP/3, empty, garbage) is HTTP/1.1, which is what the fast sender speaks.

    >>> http_version("h2"), http_version("HTTP/2.0"), http_version("http/1.0")
    ('HTTP/2', 'HTTP/2', 'HTTP/1.0')
    """
    t = (text or "").strip().upper()
    if t in ("H2", "HTTP/2", "HTTP/2.0", "H2C"):
        return "HTTP/2"
    if t in ("HTTP/1.0", "HTTP/1"):
        return "HTTP/1.0"
    return "HTTP/1.1"


@fast_init
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


@fast_init
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


@fast_init
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


@fast_init
@dataclass(frozen=True, slots=True)
class Trial:
    """An exchange plus what each role answered."""

    exchange: Exchange
    """The replayed exchange."""
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    """Role name -> outcome."""


@fast_init
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


@fast_init
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


_ID_CHUNKS = re.compile(r"\d+|\D+")


def id_order(exchange_id: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key for exchange ids in natural order (`x9` before `x10`).

    "The first exchange that showed it" means the smallest id in this order, not the first
    to finish: that is what makes a run's examples the same whether one process judged it
    or many (partial tallies merge to the single-process result).

    >>> sorted(["x10", "x9", "y1"], key=id_order)
    ['x9', 'x10', 'y1']
    """
    return tuple((0, int(c), "") if c.isdigit() else (1, 0, c)
                 for c in _ID_CHUNKS.findall(exchange_id))
