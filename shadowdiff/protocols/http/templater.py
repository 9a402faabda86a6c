"""Id positions learned from the logs' cardinality, and the `Templater`: the one endpoint
function of a run (routes first, then learned positions, then inference), the same for
the capture and the logs so that ranking joins them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Union

from shadowdiff.protocols.http.endpoints import EndpointFn, http_endpoint, path_template, split_target
from shadowdiff.protocols.http.routes import RouteTable

CountKey = Union[str, tuple[str, str]]


def _method_path(key: CountKey) -> tuple[str, str]:
    """(method, path) of an endpoint string `GET /p`, a bare path, or a (method, target) pair."""
    if isinstance(key, tuple):
        return key[0].upper(), path_template(split_target(key[1])[0])
    method, _, path = key.partition(" ") if not key.startswith("/") else ("", "", key)
    return method.upper(), path_template(split_target(path)[0])


def _prefix(segs: list[str], i: int) -> str:
    return "/".join(segs[:i]) or "/"


def learn_id_segments(counts: Mapping[str, int] | Mapping[tuple[str, str], int] | Iterable[str],
                      *, threshold: int = 50, min_depth: int = 1) -> frozenset[str]:
    """Prefixes whose next path segment is an id, judged by how many values it takes.

    `/products/red-shoes`, `/products/blue-hat`, ... (more than `threshold` distinct names
    under `/products`) gives `{"/products"}`: inference cannot tell a slug from a name,
    the logs can. Keys are endpoints (`GET /p`, the UsageTable's), paths, or (method,
    target) pairs; counts are not needed, only distinct paths. Segments at depth below
    `min_depth` (0 = the first segment) are never learned, so a service with many
    top-level routes is not folded into `/{id}`. Learned prefixes are themselves
    templated, top-down: `/products/{id}/reviews`.

    >>> sorted(learn_id_segments([f"/p/item-{c}" for c in "abcdef"], threshold=5))
    ['/p']
    """
    rows = [_method_path(k)[1].split("/") for k in counts]
    rows = [r for r in rows if r[0] == ""]
    slots: set[str] = set()
    for i in range(1, max((len(r) for r in rows), default=0)):
        values: dict[str, set[str]] = defaultdict(set)
        for segs in rows:
            if len(segs) > i and segs[i] and not segs[i].startswith("{") and i - 1 >= min_depth:
                values[_prefix(segs, i)].add(segs[i])
        new = {p for p, v in values.items() if len(v) > threshold}
        for segs in rows:
            if len(segs) > i and segs[i] and _prefix(segs, i) in new:
                segs[i] = "{id}"
        slots |= new
    return frozenset(slots)


def apply_id_segments(path: str, slots: frozenset[str]) -> str:
    """The path with each segment that follows a learned prefix turned into `{id}`."""
    if not slots or not path.startswith("/"):
        return path
    segs = path.split("/")
    for i in range(1, len(segs)):
        if segs[i] and not segs[i].startswith("{") and _prefix(segs, i) in slots:
            segs[i] = "{id}"
    return "/".join(segs)


@dataclass(frozen=True)
class Templater:
    """Routes, then learned id positions, then inference: the endpoint of any request.

    Pass it (or its `endpoint`) wherever an endpoint function goes, on the capture side and
    the log side alike, so they join. With nothing configured it equals `http_endpoint`.

    >>> Templater(RouteTable(["/files/{path*}"])).endpoint("GET", "/files/a/b.txt")
    'GET /files/{path*}'
    """

    routes: RouteTable = field(default_factory=RouteTable)
    id_slots: frozenset[str] = frozenset()
    """Learned prefixes (`learn_id_segments`), e.g. `/products`."""
    infer: EndpointFn = http_endpoint
    """The fallback; must return `METHOD /path`."""

    def endpoint(self, method: str, target: str) -> str:
        """`GET /users/{id}`: the route's path if one matches, else the inferred template."""
        if self.routes.routes:
            routed = self.routes.endpoint(method, target)
            if routed is not None:
                return routed
        inferred = self.infer(method, target)
        if not self.id_slots:
            return inferred
        verb, _, path = inferred.partition(" ")
        return f"{verb} {apply_id_segments(path, self.id_slots)}"

    def __call__(self, method: str, target: str) -> str:
        return self.endpoint(method, target)

    def with_id_slots(self, slots: Iterable[str]) -> Templater:
        """A copy with more learned (or configured) id prefixes."""
        return Templater(self.routes, self.id_slots | frozenset(slots), self.infer)

    def learn(self, counts: Mapping[str, int], *, threshold: int = 50,
              min_depth: int = 1) -> Templater:
        """A copy that also knows the id positions the (route-less) endpoints show."""
        unrouted = [k for k in counts if self.routes.match(*_method_path(k)) is None]
        return self.with_id_slots(learn_id_segments(unrouted, threshold=threshold,
                                                    min_depth=min_depth))

    def refine(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Endpoint counts made with an earlier templater, re-templated by this one and summed.

        Endpoints are paths too, and templating is idempotent, so a UsageTable read once
        can take positions learned from itself without reading the logs again.
        """
        out: Counter[str] = Counter()
        for key, n in counts.items():
            method, _, path = key.partition(" ")
            out[self.endpoint(method, path)] += n
        return dict(out)

    @property
    def fold_safe(self) -> bool:
        """The log reader's id folding (usage/tally.py) leaves this templater's answers alone."""
        return self.infer is http_endpoint and self.routes.fold_safe
