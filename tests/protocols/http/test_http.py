"""Lifting HTTP responses: decoding what the wire hides, parsing what can be compared."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from factories import make_request, make_response
from shadowdiff.protocols.base import get_protocol, protocol_for_url
from shadowdiff.protocols.http.message import decode_content
from shadowdiff.protocols.http.message import header_dict
from shadowdiff.protocols.http.plugin import PROTOCOL
from shadowdiff.errors import PluginError

JSON = (("Content-Type", "application/json"),)


@pytest.mark.parametrize("encoding,encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
    ("br", brotli.compress),
    ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
])
def test_bodies_are_decoded_before_comparison(encoding, encode):
    resp = make_response(body=encode(b'{"a": [1, 2]}'),
                         headers=JSON + (("Content-Encoding", encoding),))
    assert PROTOCOL.lift(resp)["body"] == {"a": [1, 2]}


def test_json_types_with_suffix_and_charset():
    resp = make_response(body=b'{"x": "\xc3\xa9"}',
                         headers=(("Content-Type", "application/problem+json; charset=utf-8"),))
    assert PROTOCOL.lift(resp)["body"] == {"x": "é"}


def test_text_charset_is_honoured():
    resp = make_response(body="café".encode("latin-1"),
                         headers=(("Content-Type", "text/plain; charset=ISO-8859-1"),))
    assert PROTOCOL.lift(resp)["body"] == "café"


def test_broken_json_is_compared_as_text():
    resp = make_response(body=b'{"a": ', headers=JSON)
    assert PROTOCOL.lift(resp)["body"] == '{"a": '


def test_binary_body_becomes_digest_and_length():
    body = bytes(range(256)) * 4
    tree = PROTOCOL.lift(make_response(body=body, headers=(("Content-Type", "image/png"),)))
    assert tree["body"]["$binary"]["length"] == 1024
    assert len(tree["body"]["$binary"]["sha256"]) == 64


def test_undecodable_gzip_is_data_not_an_exception():
    tree = PROTOCOL.lift(make_response(body=b"not gzip",
                                       headers=JSON + (("Content-Encoding", "gzip"),)))
    assert "$undecodable" in tree["body"]


def test_unknown_encoding_raises_value_error_in_decode():
    with pytest.raises(ValueError, match="unsupported content-encoding"):
        decode_content(b"x", "compress")


def test_repeated_headers_are_joined_in_order():
    assert header_dict((("Vary", "Accept"), ("vary", "Cookie"), ("X-A", "1"))) == {
        "vary": "Accept, Cookie", "x-a": "1"}


def test_lift_shape():
    tree = PROTOCOL.lift(make_response(404, b"", headers=(("X-A", "1"),)))
    assert tree == {"status": 404, "header": {"x-a": "1"}, "body": ""}


def test_endpoint_key_uses_the_shared_template():
    assert PROTOCOL.endpoint_key(make_request("get", "/users/42/orders?page=2")) == "GET /users/{id}/orders"


def test_plugin_registry():
    assert get_protocol("http") is PROTOCOL
    assert protocol_for_url("https://x") is PROTOCOL
    with pytest.raises(PluginError, match="no protocol plugin handles gopher"):
        protocol_for_url("gopher://x")
    with pytest.raises(PluginError, match="has no scheme"):
        protocol_for_url("old.internal:8080")
