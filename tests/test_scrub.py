"""Capture-time redaction (shadowdiff/scrub.py): what is hashed, what stays, and the key."""

from __future__ import annotations

import os
import re
import stat

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowdiff import scrub
from shadowdiff.errors import ConfigError
from shadowdiff.model import Exchange, Failure, Request, Response
from shadowdiff.scrub import KEEP_SECRETS, RedactConfig, Redactor, key_id, key_path, load_key

KEY = b"k" * 32
HASH = re.compile(r"redacted:[0-9a-f]{16}")


def redactor(**config: object) -> Redactor:
    return Redactor(RedactConfig(**config), key=lambda: KEY)  # type: ignore[arg-type]


def login_exchange() -> Exchange:
    request = Request("http", "POST", "/login?access_token=tok1&page=2&Api-Key=k9", (
        ("Host", "shop"), ("Authorization", "Bearer tok1"), ("Cookie", "theme=dark; sid=s3ss"),
        ("Referer", "https://shop/?token=tok1"), ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", "35")), b"user=bob&password=hunter2&remember=1")
    recorded = Response(200, (("Set-Cookie", "sid=s3ss; Path=/; HttpOnly"),
                              ("Content-Type", "application/json")),
                        b'{"access_token": "tok1", "user": {"name": "bob", "password": 42}}')
    return Exchange("x-1", request, recorded, observed=(
        ("new", Response(200, (("Set-Cookie", "sid=s3ss"),))), ("old", Failure("timeout"))))


def test_every_secret_of_an_exchange_is_hashed_and_the_rest_kept() -> None:
    ex = redactor().exchange(login_exchange())
    raw = orjson.dumps([ex.request.target, ex.request.headers, ex.request.body.decode(),
                        ex.recorded.headers, ex.recorded.body.decode(), ex.observed[0][1].headers])
    for secret in (b"tok1", b"s3ss", b"hunter2", b"k9", b'"password":42'):
        assert secret not in raw
    req = ex.request
    assert req.header("Authorization").startswith("Bearer redacted:")
    assert req.header("Cookie").startswith("theme=redacted:") and "; sid=redacted:" in req.header("Cookie")
    assert "page=2" in req.target and req.header("Host") == "shop"
    assert req.body.startswith(b"user=bob&password=redacted:") and req.body.endswith(b"&remember=1")
    assert req.header("Content-Length") == str(len(req.body))  # follows the new body
    assert ex.recorded.header("Set-Cookie").endswith("; Path=/; HttpOnly")
    body = orjson.loads(ex.recorded.body)
    assert body["user"]["name"] == "bob" and HASH.fullmatch(body["user"]["password"])
    assert ex.observed[1][1] == Failure("timeout")


def test_equal_values_hash_equal_and_redacting_twice_changes_nothing() -> None:
    r = redactor()
    ex = r.exchange(login_exchange())
    token = ex.request.header("Authorization").split()[1]
    assert f"access_token={token}" in ex.request.target          # same value, same hash
    assert orjson.loads(ex.recorded.body)["access_token"] == token
    assert r.exchange(ex) is ex
    other_key = Redactor(RedactConfig(), key=lambda: b"x" * 32).exchange(login_exchange())
    assert other_key.request.header("Authorization") != ex.request.header("Authorization")


def test_keep_secrets_keeps_everything() -> None:
    ex = login_exchange()
    assert KEEP_SECRETS.exchange(ex) is ex and redactor(keep_secrets=True).exchange(ex) is ex
    assert KEEP_SECRETS.describe() == {"mode": "kept"}


def test_configured_names_and_patterns_add_to_the_defaults() -> None:
    r = redactor(headers=("x-session",), fields=("pin",), patterns=(r"^card",))
    req = r.request(Request("http", "GET", "/p?pin=1234&cardnumber=4111&x=1",
                            (("X-Session", "abc"), ("Authorization", "Basic dXNlcjpwdw=="))))
    assert "1234" not in req.target and "4111" not in req.target and "x=1" in req.target
    assert HASH.fullmatch(req.header("X-Session")) and req.header("Authorization").startswith("Basic ")


def test_a_request_without_secrets_is_the_same_object() -> None:
    ex = Exchange("a", Request("http", "GET", "/search?q=tokens&page=1", (("Accept", "*/*"),)))
    assert redactor().exchange(ex) is ex


def test_compressed_and_non_json_bodies_are_left_alone() -> None:
    r = redactor()
    gz = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    assert r.body(b'{"password": "x"}', gz) == b'{"password": "x"}'
    assert r.body(b"password is x", (("Content-Type", "text/plain"),)) == b"password is x"
    assert r.body(b'{"password": ', (("Content-Type", "application/json"),)) == b'{"password": '


JSON = (("Content-Type", "application/json"),)


@pytest.mark.parametrize("body, secret", [
    (b'{"a": ": x", ":password": "p1"}', b"p1"),      # a value that starts with ':' before a key
    (b'{"pass\\u0077ord": "p2"}', b"p2"),            # an escaped key: orjson reads "password"
    (b'{"note": "say \\"token\\": 1", "x": {"api_key": "p3"}}', b"p3"),
    (b'[{"deep": [{"Secret": ["p4"]}]}]', b"p4"),
])
def test_a_secret_key_is_found_however_the_json_is_written(body: bytes, secret: bytes) -> None:
    out = redactor().body(body, JSON)
    assert secret in body and secret not in out and HASH.search(out.decode())


def test_an_anchored_pattern_finds_its_key_in_a_json_body() -> None:
    # a configured pattern is searched in each name, as for query parameters: `^card` is
    # a name that starts with "card", wherever that key stands in the body
    out = redactor(patterns=(r"^card",)).body(b'{"order": 7, "cardnumber": "4111111111111111"}', JSON)
    assert b"4111" not in out and orjson.loads(out)["order"] == 7


def test_an_anchored_pattern_finds_its_name_in_a_form_body() -> None:
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    out = redactor(patterns=(r"^card",)).body(b"order=7&cardnumber=4111111111111111", form)
    assert out.startswith(b"order=7&cardnumber=redacted:")


def test_a_secret_name_in_a_value_only_leaves_the_json_as_it_was() -> None:
    body = b'{"q": "my password is token", "n": 1}'
    assert redactor().body(body, JSON) is body


_names = st.sampled_from(["id", "name", "password", "token", ":x", 'a"b', "a\\b", "x: y",
                          "pass\u00e9", "Access_Token", "sessionid", "é", "api-key"])
_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), _names)
_trees = st.recursive(_leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(_names, kids, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(tree=_trees, ascii_only=st.booleans(), spaced=st.booleans())
def test_reading_keys_from_the_raw_json_is_exactly_parsing_it(tree: object, ascii_only: bool,
                                                               spaced: bool) -> None:
    # the key prefilter decides only whether the body is parsed: its answer must be what
    # parsing every body gives, whatever the escapes, spacing and strings with ':' in them
    separators = (", ", " : ") if spaced else (",", ":")
    body = json.dumps(tree, ensure_ascii=ascii_only, separators=separators).encode()
    assert redactor().body(body, JSON) == redactor()._json(body)


def test_smtp_auth_arguments_are_hashed() -> None:
    req = Request("smtp", "AUTH", "PLAIN AGJvYgBodW50ZXIy", (
        (":session", "smtp-1"), ("EHLO", "EHLO c"), ("AUTH", "AUTH PLAIN AGJvYgBodW50ZXIy")))
    out = redactor().request(req)
    assert "AGJvYgBodW50ZXIy" not in repr(out)
    assert out.target.startswith("PLAIN redacted:") and out.headers[2][1].startswith("AUTH PLAIN redacted:")


def test_free_text_with_a_url_is_hashed() -> None:
    assert "abc" not in redactor().text('line 7: "GET /x?api_key=abc HTTP/1.1"')


def test_describe_names_the_key_without_revealing_it() -> None:
    r = redactor()
    r.exchange(login_exchange())
    info = r.describe()
    assert info["mode"] == "hashed" and info["key_id"] == key_id(KEY) and info["replaced"] > 5


def test_the_key_is_made_once_private_and_reused(tmp_path) -> None:
    path = tmp_path / "sub" / "redact.key"
    key = load_key(str(path))
    assert len(key) == 32 and load_key(str(path)) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_key_being_made_is_never_read_half_written(tmp_path, monkeypatch) -> None:
    """Another process meeting its first secret while this one makes the key (a partitioned
    run's workers do) reads a whole key, and both hash with the same one."""
    path = str(tmp_path / "redact.key")
    real, calls, inner = scrub.secrets.token_hex, [], []

    def token_hex(n: int) -> str:
        calls.append(n)
        if len(calls) == 1:  # while this process makes its key, another one needs it
            inner.append(load_key(path))
        return real(n)

    monkeypatch.setattr(scrub.secrets, "token_hex", token_hex)
    assert load_key(path) == inner[0] and len(inner[0]) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redact.key"], "no temporary left"


def test_processes_meeting_their_first_secret_at_once_make_one_key(tmp_path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    path = str(tmp_path / "redact.key")
    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(load_key, [path] * 16))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redact.key"]


def test_a_damaged_key_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "redact.key"
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match=f"{path}.*redact.key_file.*64 hex digits"):
        load_key(str(path))


def test_key_path_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHADOWDIFF_REDACT_KEY_FILE", str(tmp_path / "env.key"))
    assert key_path("/etc/k") == key_path("/etc/k")
    assert str(key_path(None)) == str(tmp_path / "env.key")
    monkeypatch.delenv("SHADOWDIFF_REDACT_KEY_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert key_path(None) == tmp_path / "shadowdiff" / "redact.key"


def test_a_form_body_without_content_type_is_recognised_by_its_look() -> None:
    # a HAR keeps the form's type in postData.mimeType, not in the headers
    r = redactor()
    assert b"hunter2" not in r.body(b"user=bob&password=hunter2", ())
    assert r.body(b"password is hunter2", ()) == b"password is hunter2"
