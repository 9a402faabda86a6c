"""HTTP/1.1: `plugin.py` (the Protocol object), `message.py` (decoding and the lifted tree),
`endpoints.py` / `routes.py` / `templater.py` (endpoint names), `fast.py` and
`aiohttp_sender.py` (the senders)."""
