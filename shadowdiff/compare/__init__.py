"""Compare stage, pure functions over lifted trees: `normalize.py` and `rules/` (what is
volatile), `diff.py` (structural diff), `noise.py` (Diffy's A/A test against the old
replica), `judge.py` (one trial -> a verdict), `rulebook.py` (which rules apply where)."""
