"""Endpoint templates: `GET /users/8812?x=1` -> `GET /users/{id}`.

Ranking joins the capture to the production logs on this template, so the capture side
and the log side must call the same function. Three sources, most trusted first:

    routes (config, OpenAPI) ──> learned id positions (log cardinality) ──> inference
    RouteTable.match()           learn_id_segments()                        http_endpoint()

`Templater` bundles the three; with no routes and no learned positions it is exactly
`http_endpoint`, the default everywhere. docs/endpoints.md explains the rules.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Union
from urllib.parse import unquote, urlsplit

from shadowdiff.errors import ConfigError

EndpointFn = Callable[[str, str], str]

_HEX = "[0-9a-fA-F]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# Whole-segment id shapes. The first three (digits, UUID, long hex) must stay ids
# unconditionally: usage/tally.py folds them before calling us (`_ALWAYS_ID`).
_ID = re.compile("|".join([
    r"-?\d+",                                                  # 8812, -3
    _UUID,                                                     # 0f8fad5b-d9cb-...
    f"{_HEX}{{16,}}",                                          # digests, object ids
    f"(?=[0-9a-fA-F]*\\d){_HEX}{{8,}}",                        # short hex with a digit
    r"-?\d+\.\d{3,}",                                          # 48.8566 (not 1.0, 2.10)
    r"\d{4}-\d{2}(?:-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)?",
    r"[^@/\s]+@[^@/\s]+\.[A-Za-z]{2,}",                        # emails
    r"[A-Za-z]{1,4}[-_]\d{3,}|[A-Za-z]{1,4}\d{4,}|[A-Z]{1,4}\d{3,}",  # ord-123, x1000, A123
    r"[a-z]{2,8}_(?=[a-z]*[A-Z0-9])[A-Za-z0-9]{10,}",          # cus_NffrFeUfNV2Hib
]))
_VERSION = re.compile(r"[vV]\d+(?:\.\d+)*")                     # v1, v2.1: names, not ids
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/.~]{16,}={0,2}")
_CHUNK = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")         # Get, User, HTTP, 2024
_WITH_EXT = re.compile(r"(.+)\.([A-Za-z][A-Za-z0-9]{0,4})")     # 42.json, <sha>.png
_HASHED = re.compile(r"(.+)\.((?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})\.([A-Za-z][A-Za-z0-9]{0,4})")


def _looks_random(segment: str) -> bool:
    """A base64/base62/base36-like token, judged by how it breaks into runs.

    Names break into few, long runs: words of 3+ letters and one or two numbers
    (`iphone-15-pro-max-256gb`, `GetUserProfileV2`). Tokens break into short letter runs
    and many digit runs. Measured: 1% of 32-char random tokens (and 10% of 16-char ones)
    read as names; the cardinality learning catches those.
    """
    if not _TOKEN.fullmatch(segment):
        return False
    chunks = _CHUNK.findall(segment)
    letters = [len(c) for c in chunks if not c[0].isdigit()]
    numbers = len(chunks) - len(letters)
    if not letters:
        return False
    mean = sum(letters) / len(letters)
    if numbers:
        return numbers >= 3 or mean < 3.0
    return len(segment) >= 20 and mean < 2.2


def _is_id(segment: str, tokens: bool = True) -> bool:
    if _VERSION.fullmatch(segment):
        return False
    return bool(_ID.fullmatch(segment)) or (tokens and _looks_random(segment))


def is_id_segment(segment: str) -> bool:
    """True when a whole path segment looks like an identifier rather than a name.

    >>> is_id_segment("8812"), is_id_segment("v2"), is_id_segment("en-US")
    (True, False, False)
    """
    return bool(segment) and (_is_id(segment) or _is_id(unquote(segment)))


@lru_cache(maxsize=65536)
def segment_template(segment: str) -> str:
    """`{id}`, `{id}.json` (an id with an extension), `main.{id}.js` (a hashed asset
    name), or the segment itself. A file name is never taken whole for a random token."""
    m = _WITH_EXT.fullmatch(segment)
    if m is None:
        return "{id}" if is_id_segment(segment) else segment
    stem = m.group(1)
    if is_id_segment(stem) if "." not in stem else _is_id(unquote(stem), tokens=False):
        return "{id}." + m.group(2)
    hashed = _HASHED.fullmatch(segment)
    if hashed:
        return f"{hashed.group(1)}.{{id}}.{hashed.group(3)}"
    return "{id}" if _is_id(unquote(segment), tokens=False) else segment


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    """The template of a path (no query): id-like segments become `{id}`.

    >>> path_template("/users/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e")
    '/users/{id}/orders/{id}'
    """
    if not path.startswith("/"):
        return path  # `*` (OPTIONS) or an absolute URL we keep whole
    return "/".join(segment_template(p) if p else p for p in path.split("/"))


def split_target(target: str) -> tuple[str, str]:
    """Split a request target into path and query (without the `?`)."""
    if target.startswith(("http://", "https://")):
        # absolute-form (proxy requests): drop scheme and authority
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    return path or "/", query


def http_endpoint(method: str, target: str) -> str:
    """The endpoint key of an HTTP request: method plus path template (inference only).

    >>> http_endpoint("get", "/users/42?expand=1")
    'GET /users/{id}'
    """
    return f"{method.upper()} {path_template(split_target(target)[0])}"


# -- routes ----------------------------------------------------------------------------------

_PARAM = re.compile(r"\{([^{}/]+)\}")
_REST = re.compile(r"\{[^{}/]+(?:\*|:path)\}")  # {path*}, {path:path}: the rest of the path
_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
_ALWAYS_ID = re.compile(f"[0-9]+|{_HEX}{{16,}}|{_UUID}")  # as usage/tally.py folds them


@dataclass(frozen=True)
class Route:
    """One known endpoint: `GET /users/{id}`; `method` None matches any method."""

    method: str | None
    """Upper-case method, or None for any."""
    path: str
    """The template as written, base path included: `/api/users/{userId}`."""
    source: str = "config"
    """Where it came from: `config`, `openapi:spec.yaml`."""

    @classmethod
    def parse(cls, spec: str, source: str = "config") -> Route:
        """`GET /users/{id}` or `/files/{path*}` (any method); ValueError when malformed."""
        method, _, path = spec.strip().rpartition(" ")
        method = method.strip().upper()
        if not path.startswith("/"):
            raise ValueError(f"route {spec!r}: the path must start with '/'")
        if method not in ("", "*") and not re.fullmatch(r"[A-Z][A-Z0-9_-]*", method):
            raise ValueError(f"route {spec!r}: {method!r} is not a method")
        for i, seg in enumerate(path.split("/")[1:], 1):
            if re.sub(r"\{[^{}/]+\}", "", seg).count("{") or re.sub(r"\{[^{}/]+\}", "", seg).count("}"):
                raise ValueError(f"route {spec!r}: unbalanced braces in {seg!r}")
            if _REST.search(seg) and (not _REST.fullmatch(seg) or i != path.count("/")):
                raise ValueError(f"route {spec!r}: a catch-all must be the whole last segment")
        return cls(method if method not in ("", "*") else None, path, source)


class _Node:
    """A trie node: one level of route segments."""

    __slots__ = ("lit", "part", "param", "rest", "routes")

    def __init__(self) -> None:
        self.lit: dict[str, _Node] = {}
        self.part: dict[str, tuple[re.Pattern[str], _Node]] = {}
        self.param: _Node | None = None
        self.rest: dict[str | None, Route] = {}
        self.routes: dict[str | None, Route] = {}


def _part_regex(segment: str) -> re.Pattern[str]:
    pieces = _PARAM.split(segment)  # literal, name, literal, name, ..., literal
    return re.compile("".join(re.escape(p) if i % 2 == 0 else "[^/]+?"
                              for i, p in enumerate(pieces)))


def _pick(routes: Mapping[str | None, Route], method: str) -> Route | None:
    # a server answers HEAD wherever it answers GET
    return (routes.get(method) or (routes.get("GET") if method == "HEAD" else None)
            or routes.get(None))


class RouteTable:
    """Known routes, matched segment by segment: literal > `a{x}.json` > `{x}` > `{x*}`.

    The most specific route wins, left to right (`/users/me` beats `/users/{id}`), as
    OpenAPI asks; for two equal routes the first given wins.

    >>> RouteTable(["/users/{id}", "GET /users/me"]).endpoint("GET", "/users/me?x=1")
    'GET /users/me'
    """

    def __init__(self, routes: Iterable[Route | str] = ()) -> None:
        self._root = _Node()
        self.routes: tuple[Route, ...] = tuple(r if isinstance(r, Route) else Route.parse(r)
                                               for r in routes)
        for route in self.routes:
            self._insert(route)

    def _insert(self, route: Route) -> None:
        node = self._root
        for seg in route.path.split("/")[1:]:
            if _REST.fullmatch(seg):
                node.rest.setdefault(route.method, route)
                return
            if _PARAM.fullmatch(seg):
                node.param = node.param or _Node()
                node = node.param
            elif _PARAM.search(seg):
                node = node.part.setdefault(seg, (_part_regex(seg), _Node()))[1]
            else:
                node = node.lit.setdefault(seg, _Node())
        node.routes.setdefault(route.method, route)

    def __len__(self) -> int:
        return len(self.routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __add__(self, other: RouteTable) -> RouteTable:
        return RouteTable(self.routes + other.routes)

    def match(self, method: str, path: str) -> Route | None:
        """The most specific route for a method and a path (no query), or None."""
        if not path.startswith("/") or not self.routes:
            return None
        return _find(self._root, path.split("/")[1:], 0, method.upper())

    def endpoint(self, method: str, target: str) -> str | None:
        """`METHOD <route path>` for a request target, or None when no route matches."""
        route = self.match(method, split_target(target)[0])
        return None if route is None else f"{method.upper()} {route.path}"

    @property
    def fold_safe(self) -> bool:
        """True when no route tells one digit/hex/UUID segment from another.

        The log reader may then fold such segments to `0` before templating (see
        usage/tally.py `reduce_targets`) and still get the same endpoints.
        """
        for route in self.routes:
            for seg in route.path.split("/")[1:]:
                literal = _PARAM.sub("", seg)
                if _PARAM.search(seg) and not _PARAM.fullmatch(seg):
                    if re.fullmatch(r"[0-9a-fA-F-]*", literal):
                        return False  # `{a}{b}` or `{a}-{b}` could match a folded id
                elif not _PARAM.search(seg) and _ALWAYS_ID.fullmatch(seg):
                    return False
        return True


def _find(node: _Node, segs: list[str], i: int, method: str) -> Route | None:
    if i == len(segs):
        return _pick(node.routes, method)
    seg = segs[i]
    child = node.lit.get(seg)
    if child is not None and (hit := _find(child, segs, i + 1, method)):
        return hit
    if seg:
        for regex, child in node.part.values():
            if regex.fullmatch(seg) and (hit := _find(child, segs, i + 1, method)):
                return hit
        if node.param is not None and (hit := _find(node.param, segs, i + 1, method)):
            return hit
    return _pick(node.rest, method) if node.rest else None


# -- OpenAPI -----------------------------------------------------------------------------------


def load_openapi(path: str | PathLike[str], *, base_path: str | None = None) -> RouteTable:
    """Routes from an OpenAPI 3 (or Swagger 2) document, YAML or JSON.

    Each operation (`paths./users/{id}.get`) becomes `GET <base>/users/{id}`, where base is
    the path of each `servers[].url` (variables at their defaults; path- and
    operation-level `servers` win), or Swagger's `basePath`, or `base_path` if given.
    Errors are `ConfigError` naming the file.

    >>> load_openapi("openapi.yaml").endpoint("GET", "/v1/users/7")  # doctest: +SKIP
    'GET /v1/users/{userId}'
    """
    name = str(path)
    doc = _read_document(name)
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise ConfigError("not an OpenAPI document: no `paths` object", path=name)
    version = str(doc.get("openapi") or doc.get("swagger") or "")
    if not version.startswith(("3.", "2.")):
        raise ConfigError(f"unsupported OpenAPI version {version!r} (3.x or Swagger 2.0)",
                          path=name)
    root = _root_prefixes(doc) if base_path is None else [base_path.rstrip("/")]
    routes: list[Route] = []
    for key, item in doc["paths"].items():
        if str(key).startswith("x-"):
            continue
        if not isinstance(item, dict) or not str(key).startswith("/"):
            raise ConfigError("a path must start with '/' and hold operations", path=name,
                              key=f"paths.{key}")
        item_prefixes = _prefixes(item.get("servers"), root, base_path)
        for method in _METHODS:
            op = item.get(method.lower())
            if isinstance(op, dict):
                for prefix in _prefixes(op.get("servers"), item_prefixes, base_path):
                    routes.append(Route(method, prefix + str(key), f"openapi:{Path(name).name}"))
    return RouteTable(routes)


def _read_document(name: str) -> Any:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the OpenAPI document: {exc}", path=name) from exc
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON at line {exc.lineno}: {exc.msg}", path=name) from exc
    try:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError
    except ImportError as exc:  # ruamel.yaml comes with the `mitm` extra
        raise ConfigError("reading YAML needs ruamel.yaml (pip install 'shadowdiff[mitm]' or "
                          "ruamel.yaml); or give the document as JSON", path=name) from exc
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}".replace("\n", " "), path=name) from exc


def _root_prefixes(doc: Mapping[str, Any]) -> list[str]:
    if "swagger" in doc:
        return [str(doc.get("basePath") or "").rstrip("/")]
    return _prefixes(doc.get("servers"), [""], None)


def _prefixes(servers: Any, inherited: list[str], base_path: str | None) -> list[str]:
    """The base paths of a `servers` list, or the inherited ones when it is absent."""
    if base_path is not None or not isinstance(servers, list) or not servers:
        return inherited
    out: list[str] = []
    for server in servers:
        url = str(server.get("url", "")) if isinstance(server, dict) else ""
        variables = server.get("variables") if isinstance(server, dict) else None
        for var, spec in (variables or {}).items():
            default = spec.get("default", "") if isinstance(spec, dict) else ""
            url = url.replace("{" + str(var) + "}", str(default))
        base = urlsplit(url).path if "://" in url else url.split("?")[0]
        base = "/" + base.strip("/") if base.strip("/") else ""
        if base not in out:
            out.append(base)
    return out


# -- learned id positions ------------------------------------------------------------------------

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


# -- the one object ----------------------------------------------------------------------------


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
