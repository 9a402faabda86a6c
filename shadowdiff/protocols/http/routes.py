"""Routes that name endpoints before inference: the user's (`[routes] paths`, `--route`) and
an OpenAPI 3 document's (`--openapi`), matched segment by segment in a trie.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shadowdiff.errors import ConfigError
from shadowdiff.protocols.http.endpoints import HEX, UUID, split_target

_PARAM = re.compile(r"\{([^{}/]+)\}")


_REST = re.compile(r"\{[^{}/]+(?:\*|:path)\}")  # {path*}, {path:path}: the rest of the path


_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


_ALWAYS_ID = re.compile(f"[0-9]+|{HEX}{{16,}}|{UUID}")  # as usage/tally.py folds them


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
