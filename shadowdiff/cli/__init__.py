"""The command line: one module per command group, a thin layer over the library.

Nothing in the package imports `shadowdiff.cli`; `shadowdiff.cli.main:main` is the entry
point (`shadowdiff` on the PATH, `python -m shadowdiff`).
"""
