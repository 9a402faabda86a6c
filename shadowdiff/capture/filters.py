"""Capture stage, filters shared by every importer: keep a slice of the traffic, merge repeats.

    read_exchanges() ──> apply_filters(exchanges, Filter(...), stats) ──> CaptureWriter / replay

Method, host, path regex, time window and sample fraction stream (each exchange is judged
alone). De-duplication cannot: the merged exchange's `count` is known only at the end, so it
holds one Exchange per *distinct* request (a dict keyed by a 16-byte digest of method, target,
host and body digest) and yields them, in first-seen order, when the input is exhausted.
Memory grows with the number of distinct requests, not with the input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shadowdiff.protocols.http.endpoints import split_target
from shadowdiff.model import Exchange

#: stats keys, one per filter: how many exchanges each dropped.
DROP_KEYS = ("dropped_method", "dropped_host", "dropped_path", "dropped_time", "dropped_sample")


@dataclass(frozen=True)
class Filter:
    """Which exchanges to keep. None (or False) switches a criterion off.

    >>> Filter(methods=frozenset({"GET"}), path_regex=re.compile(r"^/api/"), sample=0.1)
    ... # doctest: +ELLIPSIS
    Filter(...)
    """

    methods: frozenset[str] | None = None
    """Upper-case methods to keep."""
    hosts: frozenset[str] | None = None
    """Lower-case Host values to keep; `api.example.com` also matches `api.example.com:8080`."""
    path_regex: re.Pattern[str] | None = None
    """Searched in the path (the target without its query)."""
    since: float | None = None
    """Keep exchanges seen at or after this epoch second."""
    until: float | None = None
    """Keep exchanges seen before this epoch second."""
    sample: float | None = None
    """Fraction kept, 0..1, chosen by a hash of the request line: reruns keep the same ones."""
    dedupe: bool = False
    """Merge identical requests (method, target, host, body) into one, summing `count`."""

    def __post_init__(self) -> None:
        if self.sample is not None and not 0.0 <= self.sample <= 1.0:
            raise ValueError(f"sample must be between 0 and 1, not {self.sample}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since is after until: the time window is empty")

    @classmethod
    def build(cls, *, methods: Iterable[str] | None = None, hosts: Iterable[str] | None = None,
              path_regex: str | None = None, since: float | None = None,
              until: float | None = None, sample: float | None = None,
              dedupe: bool = False) -> Filter:
        """A Filter from plain option values (as the CLI or config gives them), normalized.

        >>> Filter.build(methods=["get"], path_regex="^/users/").methods
        frozenset({'GET'})
        """
        try:
            pattern = re.compile(path_regex) if path_regex else None
        except re.error as exc:
            raise ValueError(f"invalid path regex {path_regex!r}: {exc}") from exc
        return cls(methods=frozenset(m.upper() for m in methods) if methods else None,
                   hosts=frozenset(h.lower() for h in hosts) if hosts else None,
                   path_regex=pattern, since=since, until=until, sample=sample, dedupe=dedupe)

    @property
    def active(self) -> bool:
        """True when any criterion is on."""
        return any(getattr(self, fld.name) not in (None, False) for fld in dataclasses.fields(self))


def in_sample(ex: Exchange, fraction: float) -> bool:
    """Whether the deterministic sample of `fraction` includes this exchange's request line."""
    line = f"{ex.request.method} {ex.request.target}".encode("utf-8", "surrogatepass")
    bucket = int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big")
    return bucket < fraction * 2**64


def _host_matches(ex: Exchange, hosts: frozenset[str]) -> bool:
    host = (ex.request.header("host") or "").strip().lower()
    if host in hosts:
        return True
    # strip a port, but not the colons inside a bracketed IPv6 literal
    bare = host.rsplit(":", 1)[0] if host.rfind(":") > host.rfind("]") else host
    return bare in hosts


def _dropped_by(ex: Exchange, f: Filter) -> str | None:
    """The stats key of the first filter that rejects `ex`, or None to keep it."""
    if f.methods is not None and ex.request.method.upper() not in f.methods:
        return "dropped_method"
    if f.hosts is not None and not _host_matches(ex, f.hosts):
        return "dropped_host"
    if f.path_regex is not None and not f.path_regex.search(split_target(ex.request.target)[0]):
        return "dropped_path"
    if (f.since is not None and ex.seen_at < f.since) or (f.until is not None and ex.seen_at >= f.until):
        return "dropped_time"
    if f.sample is not None and not in_sample(ex, f.sample):
        return "dropped_sample"
    return None


def request_digest(ex: Exchange) -> bytes:
    """16 bytes identifying a request for de-duplication: method, target, host, body digest."""
    req = ex.request
    h = hashlib.blake2b(digest_size=16)
    for part in (req.protocol, req.method.upper(), req.target, (req.header("host") or "").lower()):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")  # a separator, so ("ab", "c") and ("a", "bc") differ
    h.update(hashlib.sha256(req.body).digest())
    return h.digest()


def apply_filters(exchanges: Iterable[Exchange], f: Filter,
                  stats: dict[str, Any] | None = None) -> Iterator[Exchange]:
    """The exchanges `f` keeps; counts what each filter dropped into `stats`.

    >>> kept = apply_filters(read_exchanges("x.har"), Filter(dedupe=True), stats := {})  # doctest: +SKIP
    """
    stats = {} if stats is None else stats
    for key in (*DROP_KEYS, "merged_duplicates"):
        stats.setdefault(key, 0)
    kept = _select(exchanges, f, stats)
    return _dedupe(kept, stats) if f.dedupe else kept


def _select(exchanges: Iterable[Exchange], f: Filter, stats: dict[str, Any]) -> Iterator[Exchange]:
    for ex in exchanges:
        reason = _dropped_by(ex, f)
        if reason is None:
            yield ex
        else:
            stats[reason] += 1


def _dedupe(exchanges: Iterable[Exchange], stats: dict[str, Any]) -> Iterator[Exchange]:
    # digest -> [first exchange, summed count]; dicts keep insertion (first-seen) order
    seen: dict[bytes, list[Any]] = {}
    for ex in exchanges:
        digest = request_digest(ex)
        slot = seen.get(digest)
        if slot is None:
            seen[digest] = [ex, ex.count]
        else:
            slot[1] += ex.count
            stats["merged_duplicates"] += 1
    for first, count in seen.values():
        yield first if count == first.count else dataclasses.replace(first, count=count)


__all__ = ["DROP_KEYS", "Filter", "apply_filters", "in_sample", "request_digest"]
