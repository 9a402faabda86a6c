"""Endpoint templates: one function for captures and logs, so they always join."""

from __future__ import annotations

import pytest

from shadowdiff.endpoints import http_endpoint, path_template, split_target


@pytest.mark.parametrize("path,template", [
    ("/users/8812", "/users/{id}"),
    ("/orders/0f8fad5b-d9cb-469f-a165-70867728950e/items", "/orders/{id}/items"),
    ("/blobs/3f786850e387550fdab836ed7e6dc881de23001b", "/blobs/{id}"),
    ("/days/2024-06-11", "/days/{id}"),
    ("/people/bob@example.com", "/people/{id}"),
    ("/orders/ord-12345", "/orders/{id}"),
    ("/api/v1/products", "/api/v1/products"),
    ("/static/app.css", "/static/app.css"),
    ("/health", "/health"),
    ("/", "/"),
    ("*", "*"),
])
def test_path_template(path, template):
    assert path_template(path) == template


def test_split_target_handles_absolute_form():
    assert split_target("http://example.com/a/1?x=1") == ("/a/1", "x=1")
    assert split_target("/a?") == ("/a", "")
    assert split_target("") == ("/", "")


def test_http_endpoint_ignores_query_and_case_of_method():
    assert http_endpoint("get", "/users/42?expand=orders") == "GET /users/{id}"
