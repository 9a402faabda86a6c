"""shadowdiff: replay real traffic to the old and the new system, and rank what differs.

The records (`Exchange`, `Trial`, `Divergence`, ...) are the public vocabulary; the stages
are in their own modules (capture, replay, normalize, diff, rank, report).
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
