"""Replay stage: `runner.py` (method policy, bounded workers, rate limit, per-role fan-out),
`options.py` (where and how to replay), `journal.py` (the run journal behind `--resume`)."""
