"""Live capture: `mirror.py` (a mitmproxy addon that serves old and copies to new through
`queue.py`), `collect.py` (a sink for nginx and Envoy mirrors)."""
