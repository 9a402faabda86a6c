"""SMTP: `plugin.py` (the Protocol object), `session.py` (steps, replies, endpoints, the lifted
tree), `client.py` (the sender, RSET before DATA unless delivering), `rewrite.py` and
`config.py` (`[smtp]`), `maillog.py` (Exim and Postfix logs)."""
