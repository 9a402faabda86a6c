"""Text bodies compared hunk by hunk (shadowdiff/compare/texthunks.py) and their noise mask."""

from __future__ import annotations

from shadowdiff.compare.noise import mask_noise
from shadowdiff.compare.texthunks import MAX_HUNKS, HunkNoise, context_key, text_hunks
from shadowdiff.model import Divergence

REPORT = "Report 2024-05-01\nrows: 12\nalpha 1\nbeta 2\n--\nQuery took 2.1ms\nend\n"


def test_a_hunk_is_located_by_the_unchanged_line_above_it() -> None:
    new = REPORT.replace("beta 2", "beta 3").replace("2.1ms", "4.7ms")
    assert text_hunks(REPORT, new) == [
        ('body.after["alpha #"]', "value_changed", "beta 2", "beta 3"),
        ('body.after["--"]', "value_changed", "Query took 2.1ms", "Query took 4.7ms"),
    ]


def test_insertions_deletions_and_the_top_of_the_text() -> None:
    new = "Preface\n" + REPORT.replace("alpha 1\n", "").replace("end\n", "end\nextra\n")
    assert text_hunks(REPORT, new) == [
        ('body.before["Report #-#-#"]', "field_added", None, "Preface"),
        ('body.after["rows: #"]', "field_missing", "alpha 1", None),
        ("body.after.end", "field_added", None, "extra"),
    ]


def test_no_common_line_or_too_many_hunks() -> None:
    assert text_hunks("a\nb", "c\nd") is None
    old = "".join(f"same\nline {i}\n" for i in range(300))
    new = old.replace("line", "LINE")
    out = text_hunks(old, new)
    assert out is not None and len(out) == MAX_HUNKS


def test_context_keys_fold_digits_and_whitespace() -> None:
    assert context_key("  Rows:   1204 of 2000 ") == "Rows: # of #"
    assert len(context_key("x" * 200)) == 60


TEXT = {"status": 200, "header": {}, "body": "(a text body)"}


def d(location: str, old: str, new: str, kind: str = "value_changed") -> Divergence:
    return Divergence("GET /r", location, kind, old, new)


def test_a_merged_hunk_loses_only_the_replicas_lines() -> None:
    real = d('body.after["--"]', "rows: 12\nQuery took 2.1ms", "Total rows: 12\nQuery took 4.7ms")
    noise = d('body.after["rows: #"]', "Query took 2.1ms", "Query took 3.3ms")
    kept, suppressed = mask_noise([real], [noise], (TEXT, TEXT, TEXT))
    assert kept == [d('body.after["--"]', "rows: 12", "Total rows: 12")]
    assert suppressed == [d('body.after["rows: #"]', "Query took 2.1ms", "Query took 4.7ms")]


def test_a_hunk_the_replica_showed_is_masked_and_others_are_kept() -> None:
    timing = d('body.after["--"]', "Query took 2.1ms", "Query took 4.7ms")
    other = d('body.after["alpha #"]', "beta 2", "beta 3")
    replica = d('body.after["--"]', "Query took 2.1ms", "Query took 0.9ms")
    kept, suppressed = mask_noise([timing, other], [replica], (TEXT, TEXT, TEXT))
    assert kept == [other] and suppressed == [d('body.after["--"]', "Query took 2.1ms", "Query took 4.7ms")]
    # an inserted hunk at the same place is masked only when it is the same insertion
    added = Divergence("GET /r", 'body.after["--"]', "field_added", None, "x")
    assert HunkNoise([replica]).mask(added) == (added, [])


def test_a_json_key_named_after_is_masked_as_json() -> None:
    json_tree = {"status": 200, "header": {}, "body": {"after": {"x y": 1}}}
    real = Divergence("GET /r", 'body.after["x y"]', "value_changed", 1, 2)
    noise = Divergence("GET /r", 'body.after["x y"]', "value_changed", 1, 3)
    assert mask_noise([real], [noise], (json_tree, json_tree, json_tree)) == ([], [real])
