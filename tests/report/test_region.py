"""The affected region beside the divergences (shadowdiff/report/region.py)."""

from __future__ import annotations

from shadowdiff.report.region import region_view, side_by_side


def example(old: str, new: str, divergences: list[tuple[str, str]], ctype: str = "text/html") -> dict:
    side = lambda body: {"status": 200, "headers": [["Content-Type", ctype]], "body": body}  # noqa: E731
    return {"old": side(old), "new": side(new),
            "divergences": [{"location": loc, "kind": kind, "old": None, "new": None}
                            for loc, kind in divergences]}


def test_rows_changed_in_a_table_show_the_table_body_side_by_side() -> None:
    rows = "".join(f"<tr><td>{i}</td><td>€{i}.00</td></tr>" for i in range(30))
    old = f"<table><tbody>{rows}</tbody></table><p>Query took 1ms</p>"
    new = old.replace("<td>€", "<td class=x>").replace(".00</td>", ".00 EUR</td>")
    divs = [(f"body.html.body.table.tbody.tr[{i}].td[1].text", "value_changed") for i in (3, 4, 9)]
    view = region_view(example(old, new, divs), ("body.html.body.table.tbody.tr[*].td[*].text",
                                                 "value_changed"))
    assert view is not None and view["location"] == "body.html.body.table.tbody"
    changed = [r for r in view["rows"] if r["css"] == "changed"]
    assert changed and all("€" in r["old"] or r["old"].startswith("<td") for r in changed)
    assert any(r["new"] == '<td class="x">' for r in changed)
    assert all("Query" not in r["old"] for r in view["rows"])


def test_one_changed_paragraph_is_shown_in_its_parent() -> None:
    old, new = "<footer><p>a</p><p>b</p></footer>", "<footer><p>a</p><p>c</p></footer>"
    view = region_view(example(old, new, [("body.html.body.footer.p[1].text", "value_changed")]),
                       ("body.html.body.footer.p[*].text", "value_changed"))
    assert view is not None and view["location"] == "body.html.body.footer"
    assert [(r["old"], r["new"]) for r in view["rows"] if r["css"] == "changed"] == [("b", "c")]


def test_json_and_other_signatures_have_no_region() -> None:
    ex = example('{"a": 1}', '{"a": 2}', [("body.a", "value_changed")], "application/json")
    assert region_view(ex, ("body.a", "value_changed")) is None
    ex = example("<p>x</p>", "<p>y</p>", [("status", "status_changed")])
    assert region_view(ex, ("body.html.body.p.text", "value_changed")) is None


def test_text_hunks_show_the_text_around_them() -> None:
    old = "".join(f"line {i}\n" for i in range(40))
    new = old.replace("line 20\n", "LINE 20\n")
    ex = example(old, new, [('body.after["line #"]', "value_changed")], "text/plain")
    view = region_view(ex, ('body.after["line #"]', "value_changed"))
    assert view is not None
    assert [r["css"] for r in view["rows"]] == ["gap", "same", "same", "changed", "same", "same", "gap"]


def test_side_by_side_bounds_its_rows() -> None:
    rows = side_by_side([f"a{i}" for i in range(500)], [f"b{i}" for i in range(500)], max_rows=10)
    assert len(rows) == 11 and rows[-1]["css"] == "gap" and "490" in rows[-1]["old"]
