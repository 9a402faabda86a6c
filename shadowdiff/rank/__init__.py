"""Rank stage: `tally.py` (streaming counts and redacted examples), `usage/` (production
logs -> requests per endpoint), `routing.py` (the one endpoint function of a run),
`impact.py` (impact = usage share x divergence rate), `severity.py`, `coverage.py`."""
