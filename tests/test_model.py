"""Tests for shadowdiff/model.py: the records keep every dataclass behaviour under `fast_init`.

`fast_init` swaps each record's generated `__init__` for one that sets the slots through
their member descriptors (cheaper: the pcap importer builds ~3 records per exchange). These
tests would fail if that `__init__` put a value in the wrong slot, lost a default, accepted
a wrong call, or let a record be changed; and they compare `fast_init` classes with the
same classes left as plain dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import FrozenInstanceError, InitVar, dataclass, field
from typing import Any

import pytest

from shadowdiff.model import (
    Divergence,
    Exchange,
    Failure,
    Request,
    Response,
    Signature,
    Trial,
    fast_init,
)

REQ = Request("http", "GET", "/users/1", (("Host", "a"),), b"q")
RESP = Response(201, (("X", "1"),), b"{}", 0.25, "Created")

# One call per record giving every field a distinct value, positionally.
FULL: list[tuple[type, tuple[Any, ...]]] = [
    (Request, ("http", "POST", "/orders", (("Host", "a"), ("A", "b")), b"body", "HTTP/2")),
    (Response, (404, (("X", "1"),), b"nope", 0.5, "Not Found")),
    (Failure, ("timeout", "no answer", 3.0)),
    (Exchange, ("pcap-7", REQ, RESP, "pcap:x.pcap#7", 12.5, 3,
                (("old", RESP),), ("incomplete",))),
    (Trial, (Exchange("e", REQ), {"old": RESP})),
    (Divergence, ("GET /u", "body.a[1]", "value_changed", 1, 2)),
    (Signature, ("GET /u", "body.a[*]", "value_changed")),
]
IDS = [cls.__name__ for cls, _ in FULL]


def _kwargs(cls: type, args: tuple[Any, ...]) -> dict[str, Any]:
    return {f.name: value for f, value in zip(dataclasses.fields(cls), args)}


def _same_hash(a: Any, b: Any) -> bool:
    """Equal hashes, for records that hash at all (a Trial holds a dict: it does not)."""
    if isinstance(a, Trial):
        with pytest.raises(TypeError, match="unhashable"):
            hash(a)
        return True
    return hash(a) == hash(b)


@pytest.mark.parametrize(("cls", "args"), FULL, ids=IDS)
def test_each_value_lands_in_its_own_field(cls: type, args: tuple[Any, ...]) -> None:
    by_position, by_keyword = cls(*args), cls(**_kwargs(cls, args))
    for f, value in zip(dataclasses.fields(cls), args):
        assert getattr(by_position, f.name) is value
        assert getattr(by_keyword, f.name) is value
    assert by_position == by_keyword and _same_hash(by_position, by_keyword)
    assert repr(by_position) == repr(by_keyword)


@pytest.mark.parametrize(("cls", "args"), FULL, ids=IDS)
def test_records_stay_frozen(cls: type, args: tuple[Any, ...]) -> None:
    record = cls(*args)
    for f in dataclasses.fields(cls):
        with pytest.raises(FrozenInstanceError):
            setattr(record, f.name, None)
        with pytest.raises(FrozenInstanceError):
            delattr(record, f.name)
    with pytest.raises((FrozenInstanceError, AttributeError, TypeError)):
        record.extra = 1  # slotted: no room for anything else either


@pytest.mark.parametrize(("cls", "args"), FULL, ids=IDS)
def test_wrong_calls_raise_type_error(cls: type, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match="missing"):
        cls()
    with pytest.raises(TypeError, match="positional arguments? but"):
        cls(*args, "one too many")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        cls(*args, bogus=1)
    with pytest.raises(TypeError, match="multiple values"):
        cls(*args, **{dataclasses.fields(cls)[0].name: args[0]})


@pytest.mark.parametrize(("cls", "args"), FULL, ids=IDS)
def test_replace_pickle_copy_and_asdict(cls: type, args: tuple[Any, ...]) -> None:
    record = cls(*args)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(record, protocol))
        assert back == record and type(back) is cls and _same_hash(back, record)
    assert copy.copy(record) == record and copy.deepcopy(record) == record
    assert dataclasses.replace(record) == record
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(record, **{first: "other"})
    assert getattr(changed, first) == "other" and changed != record
    assert dataclasses.asdict(record) == dataclasses.asdict(cls(**_kwargs(cls, args)))
    assert cls.__match_args__ == tuple(f.name for f in dataclasses.fields(cls))


def test_defaults() -> None:
    assert Request("http", "GET", "/") == Request("http", "GET", "/", (), b"")
    assert Response(200) == Response(200, (), b"", 0.0, "")
    assert Failure("reset") == Failure("reset", "", 0.0)
    assert Exchange("e", REQ) == Exchange("e", REQ, None, "", 0.0, 1, (), ())
    assert Divergence("e", "l", "failure") == Divergence("e", "l", "failure", None, None)
    first, second = Trial(Exchange("e", REQ)), Trial(Exchange("e", REQ))
    assert first.outcomes == {} and first.outcomes is not second.outcomes  # default_factory
    assert Trial(Exchange("e", REQ), outcomes={"new": RESP}).outcomes == {"new": RESP}


def test_repr_eq_hash_order_and_match() -> None:
    assert repr(Failure("refused", "port 1")) == (
        "Failure(kind='refused', detail='port 1', elapsed_s=0.0)")
    assert Request("http", "GET", "/", body=b"") == Request(
        protocol="http", target="/", method="GET")
    assert len({Response(200), Response(status=200), Response(200, (), b"")}) == 1
    assert Signature("a", "b", "c") < Signature("a", "b", "d")
    match Exchange("e", REQ, RESP):
        case Exchange(ident, Request(_, method), Response(status)):
            assert (ident, method, status) == ("e", "GET", 201)
        case _:
            pytest.fail("positional match failed")


# -- fast_init against plain dataclasses ---------------------------------------------------


def _pair(body: dict[str, Any], **options: Any) -> tuple[type, type]:
    """The same class twice: once as dataclass made it, once with `fast_init` on top."""
    plain = dataclass(frozen=True, slots=True, **options)(type("Rec", (), dict(body)))
    fast = fast_init(dataclass(frozen=True, slots=True, **options)(type("Rec", (), dict(body))))
    return plain, fast


BODY: dict[str, Any] = {
    "__annotations__": {"self": int, "a": str, "items": list, "z": int, "tag": str},
    "items": field(default_factory=list),
    "z": field(default=5, kw_only=True),
    "tag": field(default_factory=lambda: "made", kw_only=True),
}


def test_fast_init_has_the_dataclass_signature_and_values() -> None:
    plain, fast = _pair(BODY)
    assert fast.__init__ is not plain.__init__
    assert inspect.signature(fast) == inspect.signature(plain)
    assert str(inspect.signature(fast)) == "(self: int, a: str, items: list = <factory>, *, z: int = 5, tag: str = <factory>) -> None"  # noqa: E501
    assert fast.__init__.__qualname__ == "Rec.__init__"
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1, "x"), {}), ((1, "x", [2]), {"z": 0}), ((), {"self": 1, "a": "x", "tag": "t"})]
    for args, kwargs in calls:
        assert repr(fast(*args, **kwargs)) == repr(plain(*args, **kwargs))
    assert fast(1, "x").items is not fast(1, "x").items
    with pytest.raises(TypeError, match="takes from 3 to 4 positional arguments"):
        fast(1, "x", [], 7)


@pytest.mark.parametrize("case", ["post_init", "initvar", "init_false", "not_frozen",
                                  "no_slots", "no_init", "not_dataclass"])
def test_fast_init_refuses_what_it_does_not_reproduce(case: str) -> None:
    notes: dict[str, Any] = {"a": int}
    body: dict[str, Any] = {"__annotations__": notes}
    options: dict[str, Any] = {"frozen": True, "slots": True}
    if case == "post_init":
        body["__post_init__"] = lambda self: None
    elif case == "initvar":
        notes["b"] = InitVar[int]
    elif case == "init_false":
        body["a"] = field(default=0, init=False)
    else:
        options.update({"not_frozen": {"frozen": False}, "no_slots": {"slots": False},
                        "no_init": {"init": False}}.get(case, {}))
    cls = type("Rec", (), body)
    if case != "not_dataclass":
        cls = dataclass(**options)(cls)
    with pytest.raises(TypeError):
        fast_init(cls)


@pytest.mark.parametrize(("spelling", "version"), [
    ("HTTP/2", "HTTP/2"), ("h2", "HTTP/2"), ("HTTP/2.0", "HTTP/2"), (" http/2.0 ", "HTTP/2"),
    ("HTTP/1.0", "HTTP/1.0"), ("HTTP/1.1", "HTTP/1.1"), ("", "HTTP/1.1"), (None, "HTTP/1.1"),
    ("HTTP/3", "HTTP/1.1"), ("garbage", "HTTP/1.1")])
def test_http_version_spellings(spelling: str | None, version: str) -> None:
    from shadowdiff.model import HTTP_VERSIONS, http_version
    assert http_version(spelling) == version and version in HTTP_VERSIONS
    assert Request("http", "GET", "/").http_version == "HTTP/1.1"   # unknown: what 1.1 senders speak
