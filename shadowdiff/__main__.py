"""`python -m shadowdiff`: the same as the `shadowdiff` command."""

from shadowdiff.cli.main import entry

# Guarded: Dask's worker processes (spawned) import the main module again.
if __name__ == "__main__":
    entry()
