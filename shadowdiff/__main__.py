"""`python -m shadowdiff`: the same as the `shadowdiff` command."""

from shadowdiff.cli.main import main

main()
