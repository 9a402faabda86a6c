"""Tests for shadowdiff.compare.diff: every divergence kind, the deepdiff path, order and bounds."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowdiff.compare import diff
from shadowdiff.compare.diff import MAX_VALUE_CHARS, compare, text_diff
from shadowdiff.model import DIVERGENCE_KINDS
from shadowdiff.paths import parse_location

SHA_A = "a" * 64
SHA_B = "b" * 64


def tree(body: Any = None, status: int = 200, **headers: str) -> dict[str, Any]:
    return {"status": status, "header": dict(headers), "body": body}


def found(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    return [(d.location, d.kind, d.old, d.new) for d in compare(old, new, "GET /x")]


@pytest.fixture
def no_deepdiff(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("deepdiff must not be called here")

    monkeypatch.setattr(diff, "DeepDiff", refuse)


@pytest.fixture
def deepdiff_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    real = diff.DeepDiff

    def spy(t1: Any, t2: Any, **kwargs: Any) -> Any:
        calls.append((t1, t2))
        return real(t1, t2, **kwargs)

    monkeypatch.setattr(diff, "DeepDiff", spy)
    return calls


def sample() -> dict[str, Any]:
    items = [{"id": i, "name": f"n{i}", "price": i * 1.5, "ok": True} for i in range(5)]
    return tree({"items": items, "meta": {"page": 1, "next": None}}, **{"content-type": "json"})


# -- identical -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_deepdiff")
def test_identical_trees_are_found_equal_without_deepdiff() -> None:
    old = sample()
    assert compare(old, old) == []
    assert compare(old, copy.deepcopy(old)) == []
    reordered = tree({"meta": old["body"]["meta"], "items": old["body"]["items"]},
                     **old["header"])
    assert compare(old, reordered) == []


@pytest.mark.usefixtures("no_deepdiff")
def test_json_numbers_are_equal_but_booleans_are_not_numbers() -> None:
    assert compare(tree({"a": [1, 2.5]}), tree({"a": [1.0, 2.5]})) == []
    nan = float("nan")
    assert compare(tree({"a": nan}), tree({"a": float("nan")})) == []
    # Python says True == 1; JSON says true is not 1, and typed clients agree
    assert found(tree({"a": [True, 0]}), tree({"a": [1, 0]})) == [("body.a[0]", "type_changed", True, 1)]
    assert found(tree({"a": False}), tree({"a": 0.0})) == [("body.a", "type_changed", False, 0.0)]


# -- status and headers ----------------------------------------------------------------------


def test_status_changed() -> None:
    assert found(tree(status=200), tree(status=503)) == [("status", "status_changed", 200, 503)]


def test_header_missing_added_and_changed() -> None:
    old = tree(**{"etag": "1", "content-type": "a", "cache-control": "x"})
    new = tree(**{"content-type": "b", "cache-control": "x", "x-new": "y"})
    assert found(old, new) == [
        ("header.etag", "header_missing", "1", None),
        ("header.content-type", "header_changed", "a", "b"),
        ("header.x-new", "header_added", None, "y"),
    ]


# -- JSON bodies -----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_deepdiff")
def test_leaf_value_changed_at_its_smallest_location() -> None:
    old = sample()
    new = copy.deepcopy(old)
    new["body"]["items"][3]["price"] = 99
    new["body"]["meta"]["page"] = 2
    assert found(old, new) == [
        ("body.items[3].price", "value_changed", 4.5, 99),
        ("body.meta.page", "value_changed", 1, 2),
    ]


@pytest.mark.usefixtures("no_deepdiff")
def test_fields_missing_and_added_and_a_rename_shows_as_both() -> None:
    old = tree({"a": 1, "userName": "x", "odd key": {"k": 1}})
    new = tree({"a": 1, "user_name": "x", "odd key": {}})
    assert found(old, new) == [
        ("body.userName", "field_missing", "x", None),
        ('body["odd key"].k', "field_missing", 1, None),
        ("body.user_name", "field_added", None, "x"),
    ]


@pytest.mark.usefixtures("no_deepdiff")
@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        (1, "1", (1, "1")),
        ({"a": 1}, [1], ("object", "array")),
        (None, {"a": 1}, (None, "object")),
        ([1], "x", ("array", "x")),
    ],
)
def test_type_changed_shows_leaf_values_and_container_type_names(
    old: Any, new: Any, shown: tuple[Any, Any]
) -> None:
    assert found(tree({"v": old}), tree({"v": new})) == [("body.v", "type_changed", *shown)]


def test_json_versus_text_body_is_a_type_change() -> None:
    assert found(tree({"a": 1}), tree("<html>oops</html>")) == [
        ("body", "type_changed", "object", "<html>oops</html>")
    ]


@pytest.mark.usefixtures("no_deepdiff")
def test_reordered_list_is_one_order_changed() -> None:
    old, new = tree({"tags": ["a", "b", "c"]}), tree({"tags": ["c", "a", "b"]})
    assert found(old, new) == [("body.tags", "order_changed", ["a", "b", "c"], ["c", "a", "b"])]


@pytest.mark.usefixtures("no_deepdiff")
def test_same_length_list_with_changed_elements_is_diffed_by_index() -> None:
    old, new = tree({"l": [1, 2, 3]}), tree({"l": [1, 5, 6]})
    assert found(old, new) == [
        ("body.l[1]", "value_changed", 2, 5),
        ("body.l[2]", "value_changed", 3, 6),
    ]


def test_length_changed_with_removed_and_inserted_elements(deepdiff_calls: list[Any]) -> None:
    items = [{"id": i, "v": i} for i in range(5)]
    shorter = items[:2] + items[3:]
    assert found(tree({"l": items}), tree({"l": shorter})) == [
        ("body.l", "length_changed", 5, 4),
        ("body.l[2]", "field_missing", {"id": 2, "v": 2}, None),
    ]
    longer = items + [{"id": 5, "v": 5}]
    assert found(tree({"l": items}), tree({"l": longer})) == [
        ("body.l", "length_changed", 5, 6),
        ("body.l[5]", "field_added", None, {"id": 5, "v": 5}),
    ]
    assert deepdiff_calls == []  # pure inserts and deletes need no deepdiff


def test_length_changed_replaced_elements_go_through_deepdiff(deepdiff_calls: list[Any]) -> None:
    old = [{"id": 1, "p": 1}, {"id": 2, "p": 2, "gone": 0}, {"id": 3, "p": 3}]
    new = [{"id": 1, "p": 1}, {"id": 2, "p": "2", "extra": [1]}, {"id": 7, "p": 7.0},
           {"id": 3, "p": 3}]
    assert found(tree({"l": old}), tree({"l": new})) == [
        ("body.l", "length_changed", 3, 4),
        ("body.l[1].p", "type_changed", 2, "2"),
        ("body.l[1].gone", "field_missing", 0, None),
        ("body.l[1].extra", "field_added", None, [1]),
        ("body.l[2]", "field_added", None, {"id": 7, "p": 7.0}),
    ]
    assert deepdiff_calls == [(old[1:2], new[1:3])]  # just the replaced run


def test_deepdiff_results_follow_json_equality(deepdiff_calls: list[Any]) -> None:
    old = [{"a": 1, "b": True}, 0]
    new = [{"a": 1.0, "b": 1}, 5, 6]
    assert found(tree({"l": old}), tree({"l": new})) == [
        ("body.l", "length_changed", 2, 3),
        ("body.l[0].b", "type_changed", True, 1),
        ("body.l[1]", "value_changed", 0, 5),
        ("body.l[2]", "field_added", None, 6),
    ]
    assert len(deepdiff_calls) == 1


# -- text and binary -------------------------------------------------------------------------


def test_text_body_changed_reports_the_first_differing_line() -> None:
    # HTML and line-wise text bodies are compared at a finer grain (tests/compare/test_markup.py)
    old, new = "<html>\n<p>a</p>\n<p>b</p>\n", "<html>\n<p>A</p>\n<p>b</p>\n"
    assert found(tree(old), tree(new)) == [("body.html.body.p[0].text", "value_changed", "a", "A")]
    assert found(tree("a\nb\n"), tree("a\nb\nc\n")) == [("body.after.b", "field_added", None, "c")]
    assert found(tree("a\nb\n"), tree("x\ny\n")) == [("body", "body_changed", "line 1: a", "line 1: x")]
    assert found(tree("a\nb\n"), tree("a\r\nb\n")) == [
        ("body", "body_changed", "line 1: 'a\\n'", "line 1: 'a\\r\\n'")
    ]


def test_long_single_line_text_shows_the_neighbourhood_of_the_change() -> None:
    old = "x" * 1000 + "OLD" + "y" * 1000
    new = "x" * 1000 + "NEW" + "y" * 1000
    (location, kind, o, n), = found(tree(old), tree(new))
    assert (location, kind) == ("body", "body_changed")
    assert "OLD" in o and "NEW" in n and o.startswith("line 1: …") and len(o) < 200


def test_short_strings_are_values_not_texts() -> None:
    assert found(tree("ok"), tree("OK")) == [("body", "value_changed", "ok", "OK")]


def test_text_diff_is_a_bounded_unified_diff() -> None:
    old = "".join(f"line {i}\n" for i in range(100))
    new = old.replace("line 5\n", "line five\n")
    out = text_diff(old, new)
    assert "-line 5" in out and "+line five" in out and out.startswith("--- old\n+++ new")
    many = text_diff(old, "".join(f"other {i}\n" for i in range(100)), max_lines=10)
    lines = many.splitlines()
    assert len(lines) == 11 and lines[-1] == "... (193 more diff lines)"


def binary(sha: str, length: int) -> dict[str, Any]:
    return {"$binary": {"sha256": sha, "length": length}}


def test_binary_bodies() -> None:
    assert found(tree(binary(SHA_A, 10)), tree(binary(SHA_B, 10))) == [
        ("body", "body_changed", "sha256:aaaaaaaaaaaa (10 bytes)", "sha256:bbbbbbbbbbbb (10 bytes)")
    ]
    assert found(tree(binary(SHA_A, 10)), tree(binary(SHA_B, 12))) == [
        ("body", "length_changed", "sha256:aaaaaaaaaaaa (10 bytes)", "sha256:bbbbbbbbbbbb (12 bytes)")
    ]
    assert found(tree(binary(SHA_A, 10)), tree({"a": 1})) == [
        ("body", "type_changed", "sha256:aaaaaaaaaaaa (10 bytes)", "object")
    ]


# -- values, order, odd inputs ---------------------------------------------------------------


def test_long_values_are_cut_and_large_containers_summarized() -> None:
    long_old, long_new = "a" * 2000, "b" * 2000
    (_, _, o, n), = found(tree({"s": long_old}), tree({"s": long_new}))
    assert o == "a" * MAX_VALUE_CHARS + "…[1500 more chars]"
    assert n.startswith("b" * MAX_VALUE_CHARS)
    big = {f"k{i}": i for i in range(200)}
    assert found(tree({}), tree({"big": big, "list": list(range(300))})) == [
        ("body.big", "field_added", None, "object (200 keys)"),
        ("body.list", "field_added", None, "array (300 items)"),
    ]


def test_divergence_values_are_copies_not_views_of_the_tree() -> None:
    old, new = tree({}), tree({"x": {"y": [1]}})
    (divergence,) = compare(old, new)
    new["body"]["x"]["y"].append(2)
    assert divergence.new == {"y": [1]}


def test_output_order_follows_the_trees_and_is_deterministic() -> None:
    old = tree({"b": 1, "a": {"z": 1, "y": 2}, "c": [1, 2]}, status=200, **{"x-a": "1"})
    new = tree({"a": {"y": 3, "z": 2}, "b": 2, "c": [1, 2, 3], "d": 0}, status=500, **{"x-a": "2"})
    locations = [d.location for d in compare(old, new)]
    assert locations == ["status", "header.x-a", "body.b", "body.a.z", "body.a.y", "body.c",
                         "body.c[2]", "body.d"]
    assert compare(old, new) == compare(copy.deepcopy(old), copy.deepcopy(new))


def test_endpoint_and_signature() -> None:
    old, new = sample(), sample()
    new["body"]["items"][4]["name"] = "z"
    (divergence,) = compare(old, new, "GET /items")
    assert divergence.endpoint == "GET /items"
    assert divergence.signature.location == "body.items[*].name"


def test_other_top_level_keys_are_compared_like_the_body() -> None:
    old = {"status": 250, "reply": {"code": "2.0.0"}, "gone": 1}
    new = {"status": 250, "reply": {"code": "2.1.0"}, "smtp extra": [1]}
    assert found(old, new) == [
        ("reply.code", "value_changed", "2.0.0", "2.1.0"),
        ("gone", "field_missing", 1, None),
        ('["smtp extra"]', "field_added", None, [1]),
    ]


def test_odd_values_stay_json_serializable() -> None:
    old = tree({"n": float("inf"), "big": 2**80, "k": {1: 2}})
    new = tree({"n": 1, "big": 2**80 + 1, "k": {1: 3}})
    out = compare(old, new)
    json.dumps([(d.old, d.new) for d in out], allow_nan=False)
    assert [d.kind for d in out] == ["value_changed", "value_changed", "value_changed"]
    with pytest.raises(TypeError):
        compare([], {})  # type: ignore[arg-type]


def test_deeply_nested_differences_do_not_raise() -> None:
    old: Any = 1
    new: Any = 2
    for _ in range(3000):
        old, new = [old], [new]
    (divergence,) = compare(tree(old), tree(new))
    assert divergence.location == "body" + "[0]" * 3000
    assert (divergence.kind, divergence.old, divergence.new) == ("value_changed", 1, 2)


# -- properties ------------------------------------------------------------------------------

LEAVES = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b", ""])
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["a", "b", "c d"]), inner, max_size=3),
                    max_leaves=20)


def strict(value: Any) -> str:
    """JSON text with sorted keys: equal exactly when two float-free JSON values are equal."""
    return json.dumps(value, sort_keys=True)


@given(JSON, JSON)
def test_compare_finds_a_difference_exactly_when_there_is_one(old: Any, new: Any) -> None:
    out = compare(tree(old), tree(new), "E")
    assert (out == []) == (strict(old) == strict(new))
    for divergence in out:
        assert divergence.kind in DIVERGENCE_KINDS
        assert divergence.location == "body" or parse_location(divergence.location)[0] == "body"
        json.dumps([divergence.old, divergence.new], allow_nan=False)
    assert compare(tree(old), tree(new), "E") == out


@given(JSON)
def test_compare_of_a_copy_is_empty(value: Any) -> None:
    assert compare(tree(value), tree(copy.deepcopy(value))) == []
