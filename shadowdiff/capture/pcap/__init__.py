"""The pcap/pcapng importer, layer by layer: file framing and link/IP/TCP headers (`packet`),
TCP reassembly (`tcp`), per-connection protocol streams (`http1`, `smtp`, chosen by
`dispatch`), exchange numbering (`order`), and the importer loop (`reader`).

The hot path (`compiled.HOT_PATH`) is compiled with mypyc at install; this package's import
decides, before any of those modules loads, whether their sources or their build run.
"""

from __future__ import annotations

import os

from shadowdiff.capture.pcap.compiled import use_sources, warn_if_stale

if os.environ.get("SHADOWDIFF_PURE"):
    use_sources()  # the compiled hot path's sources, even where it is built (compiled.py)
else:
    warn_if_stale()  # an edited source shadowed by an older compiled build runs the old code
