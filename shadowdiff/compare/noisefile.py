"""noise.json: a run's measured noise, per signature with sample values, which
`shadowdiff rules suggest` reads to propose rules (docs/configuration.md).
"""

from __future__ import annotations

from typing import Any

from shadowdiff.compare.noise import NoiseBook
from shadowdiff.model import Signature

NOISE_FILE = "noise.json"


NOISE_FORMAT = "shadowdiff-noise"


def noise_record(tally: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's measured noise, per signature with sample values, for later rule proposals.

    `tally` is the run's Tally (duck-typed: tally.py imports this module).
    """
    book: NoiseBook = tally.noise
    reported = {s["key"] for s in summary["signatures"]}
    replayed = {ep: stats.replayed for ep, stats in tally.endpoints.items()}
    return {
        "format": NOISE_FORMAT,
        "version": 1,
        "source": summary.get("noise", {}).get("source"),
        "measured": dict(book.measured),
        "audited": dict(book.audited),
        "noise": [_sig_fields(sig) | {"old_replica": n.noise, "raw": n.raw, "masked": n.masked,
                                      "measured": book.measured[sig.endpoint],
                                      "reported": sig.key in reported, "samples": n.samples}
                  for sig, n in sorted(book.signatures.items()) if n.noise],
        "divergences": [_sig_fields(sig) | {"affected": st.affected,
                                            "replayed": replayed.get(sig.endpoint, 0),
                                            "reported": sig.key in reported,
                                            "samples": st.samples}
                        for sig, st in sorted(tally.signatures.items()) if st.affected],
        "rules": [_sig_fields(sig) | {"rule": rule, "count": hit.count,
                                      "audited": book.audited[sig.endpoint]}
                  for (sig, rule), hit in sorted(book.rules.items())],
    }


def _sig_fields(sig: Signature) -> dict[str, Any]:
    return {"endpoint": sig.endpoint, "location": sig.location, "kind": sig.kind}
