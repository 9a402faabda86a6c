"""The pipeline that wires the stages: `orchestrate.py` (`run()`: capture -> replay -> judge
-> tally -> summary -> reports, writing the run directory), `summary.py` (summary.json and
the verdict), `nightly.py` (history, gates and JUnit after the summary)."""
