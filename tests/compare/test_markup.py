"""HTML and XML bodies compared node by node (shadowdiff/compare/markup.py, markup_lines.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowdiff.compare.diff import compare
from shadowdiff.compare.markup import MAX_DIVERGENCES, body_format, markup_divergences
from shadowdiff.compare.markup_lines import LineMap
from shadowdiff.compare.normalize import Rules, normalize
from shadowdiff.model import signature_location
from shadowdiff.paths import compile_path, join_attribute, parse_location


def html_tree(body: str, ctype: str = "text/html; charset=utf-8") -> dict[str, Any]:
    return {"status": 200, "header": {"content-type": ctype}, "body": body}


def found(old: str, new: str, fmt: str = "html") -> list[tuple[str, str, Any, Any]]:
    out = markup_divergences(old, new, fmt)
    assert out is not None
    return out


def page(rows: int = 20, footer: str = "Query took 2.145ms", css: str = "/s.css",
         sep: str = "\n") -> str:
    cells = sep.join(f'<tr id="r{i}"><td>{i}</td><td>Item {i}</td></tr>' for i in range(rows))
    return sep.join([
        "<!DOCTYPE html>", "<html><head><title>Shop</title>",
        '<link rel="icon" href="/f.ico">', f'<link rel="stylesheet" href="{css}">', "</head>",
        "<body><main><table><tbody>", cells, "</tbody></table></main>",
        f"<footer><p>Copyright</p><p>Contact</p><p>{footer}</p></footer></body></html>"])


def test_locations_name_the_element_the_text_and_the_attribute() -> None:
    out = found(page(), page(footer="Query took 3.1ms", css="/v2.css"))
    assert out == [
        ("body.html.head.link[1]@href", "value_changed", "/s.css", "/v2.css"),
        ("body.html.body.footer.p[2].text", "value_changed", "Query took 2.145ms", "Query took 3.1ms"),
    ]


def test_minified_pages_give_the_same_locations() -> None:
    old, new = page(sep=""), page(footer="Query took 3.1ms", css="/v2.css", sep="")
    assert [d[0] for d in found(old, new)] == ["body.html.head.link[1]@href",
                                               "body.html.body.footer.p[2].text"]


def test_elements_added_and_missing_keep_their_siblings_aligned() -> None:
    old = "<ul>\n" + "".join(f"<li>item {i}</li>\n" for i in range(10)) + "</ul>"
    new = old.replace("<li>item 3</li>\n", "").replace("<li>item 7</li>\n",
                                                       "<li>item 7</li>\n<li>new</li>\n")
    assert found(old, new) == [("body.html.body.ul.li[3]", "field_missing", "<li>item 3</li>", None),
                               ("body.html.body.ul.li[7]", "field_added", None, "<li>new</li>")]


def test_a_reordering_is_one_order_changed_at_the_parent() -> None:
    assert found("<ul><li>a</li><li>b</li></ul>", "<ul><li>b</li><li>a</li></ul>") == [
        ("body.html.body.ul", "order_changed", ["li: a", "li: b"], ["li: b", "li: a"])]


def test_attributes_added_removed_and_renamed_elements() -> None:
    assert found('<p class="a" id="x">t</p>', '<p id="x" title="n">t</p>') == [
        ("body.html.body.p@class", "field_missing", "a", None),
        ("body.html.body.p@title", "field_added", None, "n")]
    assert found("<p>x</p>", "<div>x</div>") == [
        ("body.html.body.p", "field_missing", "<p>x</p>", None),
        ("body.html.body.div", "field_added", None, "<div>x</div>")]


def test_canonical_equivalents_do_not_differ() -> None:
    old = '<p  id=x class="a">Hi  <b>there</b></p><input disabled><!-- build 17 -->'
    new = "<p class='a' id=\"x\">Hi\n<b>there</b></p><input disabled=\"disabled\">"
    assert found(old, new) == []
    assert found("<p>caf&eacute;</p>", "<p>café</p>") == []


def test_the_doctype_and_an_element_named_text_have_their_own_locations() -> None:
    assert found("<!DOCTYPE html><p>a</p>", '<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN"><p>a</p>')[0][0] \
        == 'body["!doctype"]'
    assert found("<svg><text>a</text></svg>", "<svg><text>b</text></svg>") == [
        ("body.html.body.svg.text[0].text", "value_changed", "a", "b")]


def test_xml_keeps_namespaces() -> None:
    old = '<?xml version="1.0" encoding="ISO-8859-1"?><s:Env xmlns:s="urn:a"><s:Body><p x="1">1</p></s:Body></s:Env>'
    new = '<?xml version="1.0"?><s:Env xmlns:s="urn:b"><s:Body><p x="2">1</p><q/></s:Body></s:Env>'
    assert body_format(old) == "xml"
    assert found(old, new, "xml") == [
        ('body["s:Env"]@xmlns:s', "value_changed", "urn:a", "urn:b"),
        ('body["s:Env"]["s:Body"].p@x', "value_changed", "1", "2"),
        ('body["s:Env"]["s:Body"].q', "field_added", None, '<q xmlns:s="urn:b"/>')]


def test_xml_entities_are_not_expanded() -> None:
    evil = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    out = found(evil, "<r>b</r>", "xml")
    assert all("root:" not in str(d) for d in out)


@pytest.mark.parametrize(("text", "ctype", "fmt"), [
    ("<!doctype html><p>x</p>", None, "html"),
    ("  <html><body>x</body></html>", None, "html"),
    ("<?xml version='1.0'?><a/>", None, "xml"),
    ("<feed><entry/></feed>", "application/atom+xml", "xml"),
    ("a,b\n1,2\n", "text/csv", "text"),
    ("just text\nmore", None, "text"),
    ('"a json string\\n"', "application/json", None),
    ("<canonical-html>\n<p>\nx\n</p>", "application/octet-stream", "html"),
])
def test_body_format(text: str, ctype: str | None, fmt: str | None) -> None:
    assert body_format(text, ctype) == fmt


def test_compare_uses_markup_for_html_and_keeps_json_as_it_was() -> None:
    out = compare(html_tree(page()), html_tree(page(footer="Query took 9ms")), "GET /")
    assert [(d.location, d.kind) for d in out] == [("body.html.body.footer.p[2].text", "value_changed")]
    json_text = "x\n" * 150
    out = compare(html_tree(json_text, "application/json"), html_tree(json_text + "y", "application/json"))
    assert [(d.location, d.kind) for d in out] == [("body", "body_changed")]


def test_canonical_html_from_the_html_rule_is_compared_node_by_node() -> None:
    rules = Rules(html=("body",))
    old, new = (normalize(html_tree(p), rules) for p in (page(), page(footer="Query took 9ms")))
    out = compare(old, new)
    assert [(d.location, d.kind) for d in out] == [("body.html.body.footer.p[2].text", "value_changed")]


def test_a_template_edit_on_every_row_is_a_few_signatures_and_bounded() -> None:
    old = page(rows=300)
    new = old.replace("<td>Item", '<td class="name">Product')
    out = found(old, new)
    signatures = {(signature_location(loc), kind) for loc, kind, *_ in out}
    assert signatures == {("body.html.body.main.table.tbody.tr[*].td[*]@class", "field_added"),
                          ("body.html.body.main.table.tbody.tr[*].td[*].text", "value_changed")}
    assert len(out) == MAX_DIVERGENCES


def test_locations_parse_and_match_patterns() -> None:
    loc = join_attribute("body.html.head.link[1]", "href")
    assert loc == "body.html.head.link[1]@href"
    assert parse_location(loc) == ("body", "html", "head", "link", 1, "@href")
    assert compile_path("body.**@href").matches(loc)
    assert compile_path("body.html.head.link[*]@href").matches(loc)
    assert join_attribute("body.p", "odd name") == 'body.p["@odd name"]'
    with pytest.raises(ValueError, match="attribute name"):
        compile_path("body.p@")


def test_line_map_prunes_only_unchanged_text() -> None:
    from lxml import etree

    old, new = page(), page(footer="Query took 9ms")
    parse = lambda t: etree.fromstring(t.encode(), etree.HTMLParser())  # noqa: E731
    o, n = parse(old), parse(new)
    lines = LineMap(old, new)
    o_head, n_head = o[0], n[0]
    o_foot, n_foot = o[1][1], n[1][1]
    assert lines.same(o_head.sourceline, n_head.sourceline, o[1].sourceline)
    assert not lines.same(o_foot.sourceline, n_foot.sourceline, old.count("\n") + 1)


_MARKUP = st.lists(st.sampled_from(list("<>/=\"' \n&;!?-abcdpx") + ["<p>", "</p>", "<li>", "<?xml ",
                                                                   "<!--", "-->", "xmlns:a='u'"]),
                   max_size=60).map("".join)


@given(_MARKUP, _MARKUP, st.sampled_from(["html", "xml"]))
def test_markup_never_raises_and_equal_texts_never_differ(old: str, new: str, fmt: str) -> None:
    out = markup_divergences(old, new, fmt)
    assert out is None or all(kind in ("value_changed", "field_added", "field_missing", "order_changed")
                              for _, kind, *_ in out)
    assert markup_divergences(old, old, fmt) in (None, [])
    for loc, *_ in out or []:
        parse_location(loc)  # every location is well-formed


@given(st.lists(st.sampled_from(["a", "b 1", "b 2", "", "  x  ", "Query took 3ms"]), max_size=12),
       st.lists(st.sampled_from(["a", "b 1", "b 3", "", "y", "Query took 4ms"]), max_size=12))
def test_text_hunks_cover_every_changed_line(old: list[str], new: list[str]) -> None:
    from shadowdiff.compare.texthunks import text_hunks

    out = text_hunks("\n".join(old), "\n".join(new))
    if out is None:
        return
    for loc, kind, o, n in out:
        parse_location(loc)
        assert (o is None) == (kind == "field_added") and (n is None) == (kind == "field_missing")
