"""Normalization rules beyond the core walk in `normalize.py`.

    presets.py    named, ready-made mask patterns (`uuid`, `iso-date`, `http-date`, ...)
    text.py       string transforms: HTML and XML canonical forms, case, whitespace, header sets
    tolerance.py  numeric tolerance: a pairwise filter applied after diff
    explain.py    which rule hid a difference (for the report's noise section)
    suggest.py    proposed rules from the noise a run measured (`shadowdiff rules suggest`)

All of them are pure and protocol-neutral: they see lifted trees, locations and strings.
"""
