"""The bundled demo services: old and new shops (`apps.py`, `catalog.py`) and the old and new
MTAs of `demo --smtp` (`mail.py`). The `demo` command that drives them is `cli/demo.py`."""
