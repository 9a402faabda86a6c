"""Endpoint templates: one function for captures and logs, so they always join."""

from __future__ import annotations

from testpaths import DATA
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowdiff.protocols.http.endpoints import (
    http_endpoint,
    is_id_segment,
    path_template,
    segment_template,
    split_target,
)
from shadowdiff.protocols.http.routes import Route, RouteTable, load_openapi
from shadowdiff.protocols.http.templater import Templater, apply_id_segments, learn_id_segments
from shadowdiff.errors import ConfigError
from shadowdiff.rank.usage import read_usage
from shadowdiff.rank.usage.tally import reduce_targets

OPENAPI = DATA / "openapi.yaml"


@pytest.mark.parametrize("path,template", [
    ("/users/8812", "/users/{id}"),
    ("/orders/0f8fad5b-d9cb-469f-a165-70867728950e/items", "/orders/{id}/items"),
    ("/blobs/3f786850e387550fdab836ed7e6dc881de23001b", "/blobs/{id}"),
    ("/days/2024-06-11", "/days/{id}"),
    ("/days/2024-06-11T10:00:00Z", "/days/{id}"),
    ("/months/2024-06", "/months/{id}"),
    ("/people/bob@example.com", "/people/{id}"),
    ("/people/bob%40example.com", "/people/{id}"),
    ("/orders/ord-12345", "/orders/{id}"),
    ("/customers/cus_NffrFeUfNV2Hib", "/customers/{id}"),
    ("/t/dGhpcyBpcyBhIHRva2VuIQ==", "/t/{id}"),
    ("/geo/48.8566", "/geo/{id}"),
    ("/users/42.json", "/users/{id}.json"),
    ("/img/3f786850e387550fdab836ed7e6dc881de23001b.png", "/img/{id}.png"),
    ("/assets/main.8f3a9c2e.js", "/assets/main.{id}.js"),
    ("/api/v1/products", "/api/v1/products"),
    ("/api/v2.1/products", "/api/v2.1/products"),
    ("/api/1.0/products", "/api/1.0/products"),
    ("/en-US/static/favicon.ico", "/en-US/static/favicon.ico"),
    ("/static/app.css", "/static/app.css"),
    ("/static/jquery-3.6.0.min.js", "/static/jquery-3.6.0.min.js"),
    ("/robots.txt", "/robots.txt"),
    ("/shop/iphone-15-pro-max-256gb-blue", "/shop/iphone-15-pro-max-256gb-blue"),
    ("/docs/getting-started-with-v2-api", "/docs/getting-started-with-v2-api"),
    ("/rpc/GetUserProfileV2", "/rpc/GetUserProfileV2"),
    ("/settings/user_preferences", "/settings/user_preferences"),
    ("/video/h264", "/video/h264"),
    ("/health", "/health"),
    ("/a//b/", "/a//b/"),
    ("/", "/"),
    ("*", "*"),
])
def test_path_template(path: str, template: str) -> None:
    assert path_template(path) == template


def test_is_id_segment_names_and_ids() -> None:
    assert not any(map(is_id_segment, ["", "v1", "v12", "api", "en-US", "deadbeef", "static"]))
    assert all(map(is_id_segment, ["0", "-3", "A123", "x1000", "cafe1234"]))


def test_split_target_handles_absolute_form() -> None:
    assert split_target("http://example.com/a/1?x=1") == ("/a/1", "x=1")
    assert split_target("/a?") == ("/a", "")
    assert split_target("") == ("/", "")


def test_http_endpoint_ignores_query_and_case_of_method() -> None:
    assert http_endpoint("get", "/users/42?expand=orders") == "GET /users/{id}"


_SEG = st.one_of(st.text(st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)),
                         max_size=24),
                 st.uuids().map(str), st.integers(0, 10**12).map(str),
                 st.sampled_from(["v1", "users", "42.json", "main.8f3a9c2e.js", "{id}"]))


@given(st.lists(_SEG, max_size=6))
def test_templating_is_idempotent_and_keeps_the_shape(segments: list[str]) -> None:
    # idempotent: an endpoint is a path too, which Templater.refine relies on
    path = "/" + "/".join(segments)
    once = path_template(path)
    assert path_template(once) == once
    assert once.count("/") == path.count("/")


@given(st.one_of(st.integers(0, 10**30).map(str), st.uuids().map(str),
                 st.binary(min_size=8, max_size=32).map(bytes.hex)))
def test_digits_hex_and_uuids_are_always_ids(segment: str) -> None:
    # usage/tally.py folds exactly these before templating: they must stay ids
    assert segment_template(segment) == "{id}"
    assert segment_template(segment.upper()) == "{id}"


# -- routes -----------------------------------------------------------------------------------


def test_the_most_specific_route_wins() -> None:
    table = RouteTable(["/users/{id}", "GET /users/me", "/files/{path*}",
                        "GET /reports/{name}.{format}", "DELETE /users/{id}/sessions"])
    assert table.endpoint("GET", "/users/me?x=1") == "GET /users/me"
    assert table.endpoint("POST", "/users/me") == "POST /users/{id}"  # GET-only literal
    assert table.endpoint("get", "http://h/users/abc") == "GET /users/{id}"
    assert table.endpoint("GET", "/files/a/b/c.txt") == "GET /files/{path*}"
    assert table.endpoint("GET", "/files") is None  # a catch-all takes one segment or more
    assert table.endpoint("GET", "/reports/q1.csv") == "GET /reports/{name}.{format}"
    assert table.endpoint("HEAD", "/users/me") == "HEAD /users/me"  # HEAD rides on GET
    assert table.endpoint("GET", "/users/1/sessions") is None
    assert table.endpoint("GET", "/users/") is None  # a parameter is never empty
    assert table.endpoint("OPTIONS", "*") is None


def test_backtracking_past_a_literal_that_leads_nowhere() -> None:
    table = RouteTable(["/a/b/c", "/a/{x}/d"])
    assert table.endpoint("GET", "/a/b/d") == "GET /a/{x}/d"


def test_equal_routes_first_one_wins_and_tables_add() -> None:
    table = RouteTable(["/u/{id}"]) + RouteTable(["/u/{uid}"])
    assert table.endpoint("GET", "/u/1") == "GET /u/{id}" and len(table) == 2


@pytest.mark.parametrize("spec", ["users/{id}", "G ET /x", "/f/{p*}/more", "/f/x{p*}"])
def test_bad_routes_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        Route.parse(spec)


def test_route_parse_method_optional() -> None:
    assert Route.parse("/a") == Route(None, "/a")
    assert Route.parse("* /a") == Route(None, "/a")
    assert Route.parse("patch /a", "openapi:x") == Route("PATCH", "/a", "openapi:x")


# -- OpenAPI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method,target,endpoint", [
    ("GET", "/v1/users", "GET /v1/users"),
    ("POST", "/v1/users", "POST /v1/users"),
    ("GET", "/v1/users/me", "GET /v1/users/me"),
    ("GET", "/v1/users/red-fox?full=1", "GET /v1/users/{userId}"),
    ("DELETE", "/v1/users/7", "DELETE /v1/users/{userId}"),
    ("GET", "/v1/users/7/orders/ord-9", "GET /v1/users/{userId}/orders/{orderId}"),
    ("GET", "/v1/reports/sales.csv", "GET /v1/reports/{name}.{format}"),
    ("GET", "/health", "GET /health"),
    ("GET", "/old-api/legacy/5", "GET /old-api/legacy/{id}"),
    ("PUT", "/v1/users/7", None),   # not in the document: inference takes over
    ("GET", "/users/7", None),      # without the server's base path
])
def test_openapi_routes_match(method: str, target: str, endpoint: str | None) -> None:
    assert load_openapi(OPENAPI).endpoint(method, target) == endpoint


def test_openapi_routes_record_their_source_and_fold_safety() -> None:
    table = load_openapi(OPENAPI)
    assert {r.source for r in table} == {"openapi:openapi.yaml"}
    assert len(table) == 9 and table.fold_safe


def test_openapi_json_swagger_and_base_path_override(tmp_path: Path) -> None:
    doc = {"swagger": "2.0", "basePath": "/api/", "paths": {"/pets/{petId}": {"get": {}}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    assert load_openapi(path).endpoint("GET", "/api/pets/1") == "GET /api/pets/{petId}"
    assert load_openapi(path, base_path="/").endpoint("GET", "/pets/1") == "GET /pets/{petId}"
    doc = {"openapi": "3.1.0", "servers": [{"url": "/a"}, {"url": "http://h/b/"}],
           "paths": {"/x": {"get": {}}}}
    path.write_text(json.dumps(doc))
    assert [r.path for r in load_openapi(path)] == ["/a/x", "/b/x"]


@pytest.mark.parametrize("text,message", [
    ("openapi: 3.0.0\ninfo: {}\n", "no `paths`"),
    ("openapi: 4.0.0\npaths: {}\n", "unsupported OpenAPI version"),
    ("openapi: 3.0.0\npaths: [\n", "invalid YAML"),
    ('{"openapi": "3.0.0", "paths": ', "invalid JSON at line 1"),
    ("openapi: 3.0.0\npaths: {users: {get: {}}}\n", "key 'paths.users'"),
])
def test_openapi_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_openapi(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_openapi_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_openapi(tmp_path / "nope.yaml")


# -- learned id positions ---------------------------------------------------------------------

_SLUGS = [f"{c}-{t}" for c in ("red", "blue", "green", "black") for t in
          ("shoes", "hat", "scarf", "coat", "sock", "belt")]  # 24 names, no id shapes


def test_learning_slugs_under_a_parent() -> None:
    counts = {f"GET /products/{s}": 3 for s in _SLUGS}
    counts |= {f"GET /products/{s}/reviews": 1 for s in _SLUGS}
    counts |= {"GET /products/{id}": 50, "GET /about": 2}
    assert learn_id_segments(counts, threshold=20) == {"/products"}
    assert learn_id_segments(counts, threshold=len(_SLUGS)) == set()  # must exceed it


def test_learning_is_top_down_and_spares_the_top_level() -> None:
    keys = [("GET", f"/{s}?x=1") for s in _SLUGS]  # many top-level names: not ids
    keys += [("GET", f"/blog/{a}/comments/{b}") for a in _SLUGS for b in _SLUGS[:6]]
    assert learn_id_segments(dict.fromkeys(keys, 1), threshold=5) == {
        "/blog", "/blog/{id}/comments"}
    assert "/" in learn_id_segments(dict.fromkeys(keys, 1), threshold=5, min_depth=0)


def test_apply_id_segments() -> None:
    slots = frozenset({"/", "/p/{id}/x"})
    assert apply_id_segments("/a/b/x/c", slots) == "/{id}/b/x/c"
    assert apply_id_segments("/p/{id}/x/c/d", frozenset({"/p/{id}/x"})) == "/p/{id}/x/{id}/d"
    assert apply_id_segments("*", slots) == "*"


# -- Templater --------------------------------------------------------------------------------


_TARGET = st.lists(_SEG, max_size=5).map(lambda s: "/" + "/".join(s)).flatmap(
    lambda p: st.sampled_from([p, p + "?q=1", "http://h" + p]))


@given(method=st.sampled_from(["GET", "post", "HEAD"]), target=_TARGET)
def test_a_bare_templater_is_http_endpoint(method: str, target: str) -> None:
    assert Templater().endpoint(method, target) == http_endpoint(method, target)
    assert Templater()(method, target) == http_endpoint(method, target)


def test_templater_routes_then_learned_then_inference() -> None:
    t = Templater(RouteTable(["GET /products/featured", "/files/{path*}"]),
                  frozenset({"/products"}))
    assert t.endpoint("GET", "/products/featured") == "GET /products/featured"
    assert t.endpoint("GET", "/products/red-shoes/reviews") == "GET /products/{id}/reviews"
    assert t.endpoint("GET", "/files/a/b") == "GET /files/{path*}"
    assert t.endpoint("GET", "/users/42") == "GET /users/{id}"


def test_templater_learns_from_its_own_usage_and_refines_it() -> None:
    t = Templater(RouteTable(["GET /products/featured"]))
    first = Counter(t.endpoint("GET", f"/products/{s}") for s in _SLUGS * 2)
    first["GET /products/featured"] += 7
    learned = t.learn(first, threshold=10)
    assert learned.id_slots == {"/products"}
    refined = learned.refine(first)
    assert refined == {"GET /products/{id}": 48, "GET /products/featured": 7}
    assert learned.refine(refined) == refined  # idempotent
    assert learned.endpoint("GET", "/products/new-thing") == "GET /products/{id}"


def test_route_templates_survive_refining() -> None:
    t = Templater(load_openapi(OPENAPI))
    counts = Counter(t.endpoint(m, p) for m, p in [("GET", "/v1/users/1"), ("GET", "/v1/users/me"),
                                                  ("GET", "/v1/reports/a.csv"), ("GET", "/x/9")])
    assert t.refine(counts) == counts


def test_fold_safety_of_routes() -> None:
    assert RouteTable(["/a/{x}", "/b/{x}.json", "/c/v{n}"]).fold_safe
    for unsafe in (["/api/2/users"], ["/x/0"], ["/h/{a}-{b}"], ["/h/a{b}"]):
        assert not RouteTable(unsafe).fold_safe
    assert not Templater(infer=lambda m, t: f"{m} {t}").fold_safe


_FOLD_SEG = st.one_of(st.sampled_from(["users", "me", "v1", "7", "0", "reports", "a.csv"]),
                      st.uuids().map(str), st.integers(0, 99999).map(str),
                      st.from_regex(r"[0-9a-f]{16,20}", fullmatch=True))


@given(st.lists(_FOLD_SEG, min_size=1, max_size=5))
def test_the_log_readers_id_folding_keeps_a_fold_safe_templaters_answers(segs: list[str]) -> None:
    t = Templater(RouteTable(["/users/{id}/x", "GET /users/me", "/reports/{name}.csv",
                              "/v1/{rest*}"]), frozenset({"/reports"}))
    assert t.fold_safe
    path = "/" + "/".join(segs)
    folded = reduce_targets(pa.array([path.encode()], pa.binary()))[0].as_py().decode()
    assert t.endpoint("GET", folded) == t.endpoint("GET", path)


def test_templater_as_the_log_readers_endpoint_function(tmp_path: Path) -> None:
    line = '1.2.3.4 - - [10/Jun/2024:10:00:00 +0000] "GET {} HTTP/1.1" 200 5 "-" "ua"\n'
    targets = [f"/products/{s}?ref=x" for s in _SLUGS] + ["/v1/users/9", "/v1/users/me"]
    log = tmp_path / "access.log"
    log.write_text("".join(line.format(t) for t in targets))
    t = Templater(load_openapi(OPENAPI))
    table = read_usage([str(log)], endpoint=t)
    learned = t.learn(table.requests_by_endpoint(), threshold=20)
    assert learned.refine(table.requests_by_endpoint()) == {
        "GET /products/{id}": 24, "GET /v1/users/{userId}": 1, "GET /v1/users/me": 1}
