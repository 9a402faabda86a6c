"""Every rule kind: what it does, and hypothesis properties that hold for each one alone and
for a mix: idempotent, never raises on any JSON or text, never makes equal inputs unequal,
and never hides a difference outside the locations (and, for masks, the text) it matches."""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shadowdiff.model import Divergence
from shadowdiff.compare.normalize import DEFAULT_HEADER_SETS, Mask, Rules, normalize
from shadowdiff.paths import compile_path, join_location, parse_location
from shadowdiff.compare.rules.explain import explain
from shadowdiff.compare.rules.masks import mask_text
from shadowdiff.compare.rules.presets import PRESETS, preset
from shadowdiff.compare.rules.text import canonical_html, canonical_xml, collapse_whitespace, header_set
from shadowdiff.compare.rules.tolerance import Tolerance, apply_tolerances

EVERYWHERE = ("body", "body.**", "header.*")


def lifted(body: Any, **headers: str) -> dict[str, Any]:
    return {"status": 200, "header": dict(headers), "body": body}


# -- what each rule does ---------------------------------------------------------------------


def test_case_and_whitespace_insensitive_text() -> None:
    rules = Rules(case_insensitive=("body.name",), whitespace_insensitive=("body.bio",))
    a = normalize(lifted({"name": "Ann ÖZ", "bio": " a \n b ", "x": "A"}), rules)
    b = normalize(lifted({"name": "ann öz", "bio": "a b", "x": "a"}), rules)
    assert a["body"]["name"] == b["body"]["name"] and a["body"]["bio"] == b["body"]["bio"]
    assert a["body"]["x"] != b["body"]["x"]  # only where the rules say


def test_html_ignores_whitespace_attribute_order_quotes_and_comments() -> None:
    a = '<div  id="m" class=x><!-- build 41 --><p>Hello,\n   world &amp; co</p><br/></div>'
    b = "<div class='x' id=m><p>Hello, world &#38; co</p><br></div><!-- build 42 -->"
    assert canonical_html(a) == canonical_html(b)
    assert canonical_html(a) != canonical_html(b.replace("world", "World"))
    assert canonical_html(a).splitlines()[1:3] == ['<div class="x" id="m">', "<p>"]


def test_html_with_csrf_and_nonce_masks() -> None:
    rules = Rules(html=("body",), masks=(Mask("csrf-token", preset("csrf-token")),
                                        Mask("nonce", preset("nonce"))))

    def page(token: str, nonce: str, title: str) -> dict[str, Any]:
        return lifted(f'<meta name="csrf-token" content="{token}"><script nonce="{nonce}">x()</script>'
                      f'<form><input type="hidden" value="{token}" name="authenticity_token">'
                      f"<h1>{title}</h1></form>")

    assert normalize(page("t1", "n1", "Hi"), rules) == normalize(page("t2", "n2", "Hi"), rules)
    assert normalize(page("t1", "n1", "Hi"), rules) != normalize(page("t2", "n2", "Ho"), rules)
    assert 'value="<csrf-token>"' in normalize(page("t1", "n1", "Hi"), rules)["body"]


def test_xml_is_canonicalized() -> None:
    a = '<?xml version="1.0"?><feed  b="2" a="1"><!-- x --><item/>\n  <t>hi</t></feed>'
    b = "<feed a='1' b='2'><item></item><t>hi</t></feed>"
    assert canonical_xml(a) == canonical_xml(b)
    assert canonical_xml("not <xml") == "not <xml"


def test_header_sets_by_default_for_allow_and_vary() -> None:
    assert {"allow", "vary"} <= DEFAULT_HEADER_SETS
    a = normalize(lifted(None, allow="GET, HEAD, OPTIONS", vary="Origin,Accept", link="a, b"), Rules())
    b = normalize(lifted(None, allow="OPTIONS,GET, HEAD", vary="Accept, Origin", link="b, a"), Rules())
    assert a["header"]["allow"] == b["header"]["allow"] == "GET, HEAD, OPTIONS"
    assert a["header"]["vary"] == b["header"]["vary"] and a["header"]["link"] != b["header"]["link"]
    assert header_set("a, , b, a") == "a, b"
    # other string rules leave a set-valued header alone: it is the set of its own tokens
    masked = normalize(lifted(None, allow="GET, 2024-05-01"), Rules(masks=(Mask("d", r"\d+"),)))
    assert masked["header"]["allow"] == "2024-05-01, GET"


def test_unordered_by_key_aligns_items_with_the_same_key() -> None:
    rules = Rules(unordered_keys=(("body.items", "id"),))
    old = lifted({"items": [{"id": 2, "price": 5}, {"id": 1, "price": 9}]})
    new = lifted({"items": [{"id": 1, "price": 9}, {"id": 2, "price": 6}]})
    o, n = normalize(old, rules)["body"]["items"], normalize(new, rules)["body"]["items"]
    assert [i["id"] for i in o] == [i["id"] for i in n] == [1, 2]
    assert o[0] == n[0] and o[1]["price"] != n[1]["price"]  # the change stays at item 2


def test_tolerance_absolute_and_relative() -> None:
    absolute = Tolerance(("body.**.price",), absolute=0.01)
    relative = Tolerance(("body.count",), relative=0.05)
    divs = [Divergence("GET /", "body.items[0].price", "value_changed", 9.99, 10.0),
            Divergence("GET /", "body.items[1].price", "value_changed", 9.0, 10.0),
            Divergence("GET /", "body.count", "value_changed", 100, 104),
            Divergence("GET /", "body.count", "type_changed", 100, "100"),
            Divergence("GET /", "body.other", "value_changed", 1.0, 1.001)]
    kept = apply_tolerances(divs, [absolute, relative])
    assert kept == [divs[1], divs[3], divs[4]]
    with pytest.raises(ValueError):
        Tolerance(("body.x",))


def test_presets_match_their_examples() -> None:
    examples = {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e", "ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "iso-date": "2024-05-01", "iso-datetime": "2024-05-01T12:00:00.5+02:00",
                "http-date": "Sun, 06 Nov 1994 08:49:37 GMT", "unix-time": "1714564800123",
                "hex-token": "9f86d081884c7d65", "jwt": "eyJhbGciOi.eyJzdWIi.c2ln",
                "ipv4": "10.1.2.3", "csrf-token": 'name="csrf_token" type="hidden" value="x1"',
                "nonce": 'nonce="abc"'}
    assert set(examples) == set(PRESETS)
    for name, text in examples.items():
        masked = mask_text(f"a {text} b", (Mask(name, preset(name)),), re.compile(f"(<{name}>)"))
        assert f"<{name}>" in masked, name
    assert not preset("iso-datetime").search("born 1990-01-02")


def test_explain_names_the_rule_that_hid_a_difference() -> None:
    rules = Rules(ignore_paths=("body.meta",), masks=(Mask("uuid", preset("uuid")),),
                  unordered=("body.tags",), tolerances=(Tolerance(("body.p",), absolute=1),))
    cases = [(("body.meta.id", "value_changed", 1, 2), 'ignore_paths "body.meta"'),
             (("header.date", "header_changed", "a", "b"), 'ignore_headers "date"'),
             (("body.tags", "order_changed", [1, 2], [2, 1]), 'unordered "body.tags"'),
             (("body.p", "value_changed", 1, 1.5), 'tolerance "body.p"'),
             (("body.id", "value_changed", "0f8fad5b-d9cb-469f-a165-70867728950e",
               "1f8fad5b-d9cb-469f-a165-70867728950e"), 'mask "uuid"')]
    for (location, kind, old, new), rule in cases:
        assert explain(rules, Divergence("GET /", location, kind, old, new)) == rule


# -- properties ------------------------------------------------------------------------------

KEYS = st.sampled_from(["id", "name", "items", "tags", "html", "x"]) | st.text(max_size=4)
MARKUP = st.text(alphabet='<>/="\' abcdiv&;#!-?\n\tÉ', max_size=40)
VOLATILE = st.sampled_from(["0f8fad5b-d9cb-469f-a165-70867728950e", "2024-05-01T12:00:00Z",
                            "Sun, 06 Nov 1994 08:49:37 GMT", "9f86d081884c7d65", "  A  b ",
                            '<p a="1" b=2>Hi</p>', '<x b="2" a="1"/>', 'nonce="q"', "<uuid>"])
STRINGS = VOLATILE | MARKUP | st.text(max_size=10)
LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | STRINGS
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)
HEADERS = st.dictionaries(st.sampled_from(["allow", "vary", "etag", "x-a"]), STRINGS, max_size=3)
TREES = st.fixed_dictionaries({"status": st.integers(100, 599), "header": HEADERS,
                               "body": JSON | MARKUP})

_ALL_MASKS = tuple(Mask(name, preset(name)) for name in sorted(PRESETS))
RULE_SETS = {
    "case": Rules(case_insensitive=EVERYWHERE),
    "whitespace": Rules(whitespace_insensitive=EVERYWHERE),
    "html": Rules(html=EVERYWHERE),
    "xml": Rules(xml=EVERYWHERE),
    "unordered-by-key": Rules(unordered_keys=(("body", "id"), ("body.**", "id"))),
    "header-sets": Rules(header_sets=frozenset({"allow", "vary", "etag", "x-a"})),
    **{f"mask-{m.name}": Rules(masks=(m,)) for m in _ALL_MASKS},
    "everything": Rules(html=("body",), xml=("body.**",), case_insensitive=EVERYWHERE,
                        whitespace_insensitive=EVERYWHERE, masks=_ALL_MASKS,
                        unordered_keys=(("body.**", "id"),), unordered=("body.tags",)),
}
RULES = st.sampled_from(sorted(RULE_SETS)).map(RULE_SETS.__getitem__)


@given(TREES | JSON, RULES)
def test_every_rule_is_idempotent_and_never_raises(tree: Any, rules: Rules) -> None:
    before = copy.deepcopy(tree)
    once = normalize(tree, rules)
    assert tree == before
    assert normalize(once, rules) == once


@given(st.text(), st.sampled_from([canonical_html, canonical_xml, collapse_whitespace, header_set]))
def test_text_transforms_are_idempotent_on_any_text(text: str, transform: Any) -> None:
    once = transform(text)
    assert transform(once) == once


@given(TREES, RULES)
def test_equal_inputs_stay_equal(tree: dict[str, Any], rules: Rules) -> None:
    assert normalize(copy.deepcopy(tree), rules) == normalize(tree, rules)
    assert normalize(_reverse_key_order(tree), rules) == normalize(tree, rules)


def _reverse_key_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_key_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_key_order(v) for v in value]
    return value


@st.composite
def trees_differing_in_one_leaf(draw: st.DrawFn) -> tuple[Any, Any, str]:
    tree = draw(TREES)
    node, location = tree, ""
    while isinstance(node, (dict, list)) and node:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        node, location = node[key], join_location(location, key)
    old = draw(st.integers() | STRINGS)
    new = draw((st.integers() | STRINGS).filter(lambda v: json.dumps(v) != json.dumps(old)))
    other = copy.deepcopy(tree)
    _set(tree, location, old)
    _set(other, location, new)
    return tree, other, location


def _set(tree: Any, location: str, value: Any) -> None:
    keys = parse_location(location)
    for key in keys[:-1]:
        tree = tree[key]
    tree[keys[-1]] = value


def _touched_by(rules: Rules, location: str, values: tuple[Any, ...]) -> bool:
    """Whether a rule may legitimately hide a change of the leaf at `location`."""
    keys = parse_location(location)
    if keys[0] == "header" and len(keys) > 1 and str(keys[1]).lower() in \
            (rules.ignore_headers | rules.header_sets):
        return True
    prefixes = [""]
    for key in keys:
        prefixes.append(join_location(prefixes[-1], key))
    text_paths = rules.ignore_paths + rules.text_paths()
    if any(compile_path(p).matches(loc) or "*" in p for p in text_paths for loc in prefixes[1:]):
        return True
    for mask in rules.masks:
        if any(isinstance(v, str) and mask.pattern.search(v) for v in values):
            return True
    return False


@given(trees_differing_in_one_leaf(), RULES)
def test_no_rule_hides_a_difference_outside_what_it_matches(case: tuple[Any, Any, str],
                                                            rules: Rules) -> None:
    old, new, location = case
    values = (_get(old, location), _get(new, location))
    assume(not _touched_by(rules, location, values))
    assert normalize(old, rules) != normalize(new, rules)


def _get(tree: Any, location: str) -> Any:
    for key in parse_location(location):
        tree = tree[key]
    return tree


NUMBERS = st.integers() | st.floats(allow_nan=True, allow_infinity=True)
DIVERGENCES = st.builds(Divergence, st.just("GET /"),
                        st.sampled_from(["body.price", "body.items[2].price", "body.n", "status"]),
                        st.sampled_from(["value_changed", "type_changed", "field_added"]),
                        NUMBERS | LEAVES, NUMBERS | LEAVES)
TOLERANCES = st.builds(Tolerance, st.sampled_from([("body.**.price",), ("body.n", "status")]),
                       st.floats(0, 10), st.floats(0.001, 1))


@given(st.lists(DIVERGENCES, max_size=6), st.lists(TOLERANCES, max_size=2))
def test_tolerance_only_removes_close_numbers_where_it_applies(divs: list[Divergence],
                                                               tolerances: list[Tolerance]) -> None:
    kept = apply_tolerances(divs, tolerances)
    assert apply_tolerances(kept, tolerances) == kept
    for d in divs:
        if d not in kept:
            assert d.kind == "value_changed"
            assert any(t.applies(d.location) and t.close(d.old, d.new) for t in tolerances)
            assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (d.old, d.new))
            assert not any(isinstance(v, float) and math.isnan(v) for v in (d.old, d.new))
    assert apply_tolerances([], tolerances) == []  # equal inputs (no divergence) stay equal
