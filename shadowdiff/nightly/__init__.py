"""Nightly operations on finished runs: `history.py` and `schema.py` (the SQLite run
history), `gates.py` (`--fail-on`), `latency.py` (percentiles, bootstrap regressions),
`junit.py` (JUnit XML), `config.py` (`[gate]`, `[history]`)."""
