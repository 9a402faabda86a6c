"""Mask regexes learned from volatile text (shadowdiff/compare/rules/volatile.py) and their use in suggest."""

from __future__ import annotations

import re

from shadowdiff.compare.rules.suggest import in_text_body, suggest
from shadowdiff.compare.rules.volatile import mask_name, volatile_pattern


def test_the_pattern_keeps_the_words_and_generalizes_the_number() -> None:
    pairs = [["Query took 2.145ms", "Query took 1.98ms"], ["Query took 12ms", "Query took 3.1ms"]]
    pattern = volatile_pattern(pairs)
    assert pattern == "Query took [0-9.]+ms"
    assert re.sub(pattern, "", "<p>Query took 7.5ms</p>") == "<p></p>"
    assert mask_name(pattern) == "query-took-ms"


def test_hex_tokens_and_long_context_are_cut_at_a_word() -> None:
    old = "a very long sentence that precedes the token: abc123ff and more words after it here"
    new = old.replace("abc123ff", "0099aa11")
    pattern = volatile_pattern([[old, new]])
    assert pattern is not None and "[0-9a-f]+" in pattern and not pattern.startswith("a very")
    assert re.search(pattern, old) and re.search(pattern, new)


def test_nothing_when_the_samples_disagree_or_differ_in_shape() -> None:
    assert volatile_pattern([["id 7", "id 8"], ["id 1", "name x"]]) is None
    assert volatile_pattern([["a b", "a b c"]]) is None
    assert volatile_pattern([["same", "same"]]) is None


def record(location: str, samples: list[list[str]], *, reported: bool = False) -> dict:
    return {"noise": [{"endpoint": "GET /p", "location": location, "kind": "value_changed",
                       "old_replica": 10, "raw": 10, "masked": 10, "measured": 10,
                       "reported": reported, "samples": samples}], "divergences": []}


def test_suggest_proposes_a_body_mask_for_markup_and_text_locations() -> None:
    samples = [["Query took 2.1ms", "Query took 0.4ms"]]
    for location in ("body.html.body.footer.p[*].text", 'body.after["Rows: #"]'):
        assert in_text_body(location)
        (proposal,) = suggest(record(location, samples))
        assert proposal.key == "masks"
        assert proposal.value == {"name": "query-took-ms", "pattern": "Query took [0-9.]+ms",
                                  "paths": ["body"]}
    # never a guess about a whole body; never a change that old-vs-new shows significantly
    assert suggest(record("body.html.body.p.text", [["red", "blue sky"]])) == []
    assert suggest(record("body.html.body.p.text", samples, reported=True)) == []


def test_json_locations_keep_their_rules() -> None:
    assert not in_text_body("body.items[*].price") and not in_text_body('body["@id"]')
    (proposal,) = suggest(record("body.note", [["Query took 2.1ms", "Query took 0.4ms"]]))
    assert (proposal.key, proposal.value) == ("ignore_paths", "body.note")
