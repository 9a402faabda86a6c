"""The shortcuts of markup's descent give what the plain computation gives (markup_lines.py,
markup_steps.py): the line map over bytes or str, spans tested per list, keys of a few
children from their parents' text, no keys when no text is shared, cells compared in place."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from shadowdiff.compare.markup import markup_divergences
from shadowdiff.compare.markup_lines import (LineMap, pair_keys, spans_end, subtree_key,
                                             text_key, unmatched_keys)
from shadowdiff.compare.markup_steps import Steps

_ROW = '<tr class="r"><td>{sku}</td><td>{name}</td></tr>'


def _plain_keys(o: list[Any], n: list[Any], at: list[int]) -> dict[int, tuple[Any, Any]]:
    """pair_keys as it was: every child's text made, a key serialized if its text is on the
    other side."""
    o_text, n_text = [text_key(c) for c in o], [text_key(c) for c in n]
    o_seen, n_seen = set(o_text), set(n_text)
    return {i: (subtree_key(o[i]) if o_text[i] in n_seen else ("old", i),
                subtree_key(n[i]) if n_text[i] in o_seen else ("new", i)) for i in at}


def _rows(names: list[str]) -> list[Any]:
    page = "<table><tbody>" + "\n".join(_ROW.format(sku=f"S{i}", name=x)
                                         for i, x in enumerate(names)) + "</tbody></table>"
    return list(etree.fromstring(page, etree.HTMLParser()).find(".//tbody"))


_NAMES = st.lists(st.sampled_from(["a", "b", "c", "d", ""]), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(_NAMES, st.data())
def test_pair_keys_shortcuts_give_the_plain_keys(names: list[str], data: st.DataObject) -> None:
    new = list(names)
    for _ in range(data.draw(st.integers(0, 3))):  # a few cells renamed or rows swapped
        i, j = data.draw(st.integers(0, len(new) - 1)), data.draw(st.integers(0, len(new) - 1))
        if data.draw(st.booleans()):
            new[i] = data.draw(st.sampled_from(["a", "x", "y"]))
        else:
            new[i], new[j] = new[j], new[i]
    o, n = _rows(names), _rows(new)
    at = sorted(set(data.draw(st.lists(st.integers(0, len(o) - 1), min_size=1, max_size=5))))
    keys, plain = pair_keys(o, n, at), _plain_keys(o, n, at)
    assert (keys if keys is not None else unmatched_keys(at)) == plain
    if keys is None:  # None only when no key of one side equals one of the other
        assert all(isinstance(k, tuple) and k[0] in ("old", "new") for p in plain.values() for k in p)


def test_no_shared_text_means_no_keys_and_the_same_divergences() -> None:
    o, n = _rows(["a", "b", "c"]), _rows(["x", "y", "z"])
    assert pair_keys(o, n, [0, 1, 2]) is None
    old = "<table><tbody>\n" + "\n".join(_ROW.format(sku=i, name="a") for i in range(30)) + "\n</tbody></table>"
    new = old.replace("<td>a</td>", "<td>b</td>")
    out = markup_divergences(old, new, "html")
    assert out is not None and len(out) == 30
    assert out[0] == ("body.html.body.table.tbody.tr[0].td[1].text", "value_changed", "a", "b")


@given(st.lists(st.sampled_from(["<p>a</p>", "<p>b</p>", "x", ""]), max_size=15),
       st.lists(st.sampled_from(["<p>a</p>", "<p>c</p>", "x", ""]), max_size=15))
def test_line_map_over_bytes_is_the_line_map_over_str(old: list[str], new: list[str]) -> None:
    o, n = "\n".join(old) + "€", "\n".join(new) + "€"
    by_str, by_bytes = LineMap(o, n), LineMap(o.encode(), n.encode())
    assert (by_str.dirty, by_str.to_new) == (by_bytes.dirty, by_bytes.to_new)
    lines = len(old) + 1
    starts = list(range(1, lines + 1))
    n_starts = [by_str.to_new[s] for s in starts]
    ends = spans_end(starts, lines)
    assert by_str.changed(starts, n_starts, ends) == [
        i for i in range(len(starts)) if not by_str.same(starts[i], n_starts[i], ends[i])]
    assert by_str.changed([None, 1], [1, None], [1, 1]) == [0, 1]


def test_steps_index_repeated_names_and_count_one_name() -> None:
    mixed = Steps(["li", "p", "li", "text"], "body.ul")
    assert [mixed[i] for i in range(4)] == ["body.ul.li[0]", "body.ul.p", "body.ul.li[1]",
                                            "body.ul.text[0]"]
    rows = Steps(["tr"] * 3, "body.t[2]")
    assert rows.counts == {"tr": 3} and rows[2] == "body.t[2].tr[2]"
    assert rows.folded(1) == "body.t[*].tr[*]"
