"""shadowdiff: replay real traffic to the old and the new system, and rank what differs.

The records (`Exchange`, `Trial`, `Divergence`, ...) are the public vocabulary; each stage
is a package, in pipeline order: capture, protocols, replay, compare, rank, report,
nightly (and live, for capturing from a proxy); `pipeline` wires them and `cli` is the
command line over it. docs/ARCHITECTURE.md draws the tree and the direction of imports.
"""

from __future__ import annotations

from shadowdiff.model import (
    Divergence,
    Exchange,
    Failure,
    Request,
    Response,
    Signature,
    Trial,
)

__version__ = "0.1.0"

__all__ = sorted([
    "Divergence",
    "Exchange",
    "Failure",
    "Request",
    "Response",
    "Signature",
    "Trial",
    "__version__",
])
