"""DNS: `plugin.py` (the Protocol object; `configure` for `[dns]`), `wire.py` (queries and
answers on the wire), `sender.py` (dnspython: UDP, TC -> TCP), `lift.py` (answers as sets of
RRsets), `endpoints.py` (`QTYPE {host}.zone`), `config.py` (`[dns]`), `logs.py` (query logs)."""
