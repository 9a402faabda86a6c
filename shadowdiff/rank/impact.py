"""Rank: weigh each signature by how much production traffic it touches.

impact = usage share of the signature's endpoint x fraction of that endpoint's replayed
exchanges that showed it. Usage comes from production access logs when given; otherwise
the capture's own endpoint frequencies stand in, and the report says so. The only module
that imports pandas for ranking.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from shadowdiff.model import USAGE_SOURCES as USAGE_SOURCES  # re-exported
from shadowdiff.rank.severity import severity
from shadowdiff.rank.tally import Tally
from shadowdiff.rank.traffic import Usage


def capture_usage(tally: Tally) -> Usage:
    """The capture's own endpoint frequencies, for when no production log is given."""
    counts = {ep: s.captured for ep, s in tally.endpoints.items() if s.captured}
    return Usage(counts, "capture", note="no access log given: the capture's own endpoint "
                 "frequencies stand in for production usage")


def _endpoint_frame(tally: Tally, usage: Usage) -> pd.DataFrame:
    rows = [(ep, s.captured, s.replayed, s.identical, s.diverged, s.failed)
            for ep, s in tally.endpoints.items()]
    frame = pd.DataFrame(rows, columns=["endpoint", "captured", "replayed", "identical",
                                        "diverged", "failed"]).set_index("endpoint")
    prod = pd.Series(dict(usage.counts), dtype="int64", name="usage_requests")
    frame = frame.join(prod, how="outer").fillna(0)
    total = max(usage.total, 1)
    frame["usage_share"] = frame["usage_requests"] / total
    return frame.astype({c: "int64" for c in ("captured", "replayed", "identical", "diverged",
                                              "failed", "usage_requests")})


def rank_signatures(tally: Tally, usage: Usage, *, exclude: Collection[Any] = (),
                    noise: Mapping[Any, dict[str, Any]] | None = None,
                    weights: Mapping[str, float] | None = None,
                    by_severity: bool = True) -> list[dict[str, Any]]:
    """Signatures with their figures, highest score first (ties: affected, then key).

    score = impact x severity, where severity weighs the kind of change (a 5xx outranks a
    changed header; shadowdiff.rank.severity); `by_severity=False` ranks by impact alone.
    `exclude` leaves out signatures measured as noise; `noise` adds each signature's A/A
    test (noise.py) as its `noise` field, null where noise was not measured.
    """
    endpoints = _endpoint_frame(tally, usage)
    tests = noise or {}
    rows = [(sig.endpoint, sig.location, sig.kind, sig.key, st.affected, st.example,
             tests.get(sig)) for sig, st in tally.signatures.items()
            if st.affected and sig not in exclude]
    if not rows:
        return []
    sigs = pd.DataFrame(rows, columns=["endpoint", "location", "kind", "key", "affected",
                                       "example", "noise"])
    sigs = sigs.join(endpoints[["replayed", "usage_share"]], on="endpoint")
    sigs["rate"] = sigs["affected"] / sigs["replayed"].clip(lower=1)
    sigs["impact"] = sigs["usage_share"] * sigs["rate"]
    sigs["severity"] = [severity(r.kind, r.example["old"], r.example["new"], location=r.location,
                                 weights=weights) for r in sigs.itertuples()]
    sigs["score"] = sigs["impact"] * sigs["severity"]
    order = "score" if by_severity else "impact"
    sigs = sigs.sort_values([order, "affected", "key"], ascending=[False, False, True],
                            kind="stable").reset_index(drop=True)
    sigs["rank"] = np.arange(1, len(sigs) + 1)
    cols = ["rank", "key", "endpoint", "location", "kind", "affected", "replayed", "rate",
            "usage_share", "impact", "severity", "score", "example", "noise"]
    return [_plain(r) for r in sigs[cols].to_dict(orient="records")]


def endpoint_table(tally: Tally, usage: Usage) -> list[dict[str, Any]]:
    """Per replayed endpoint: counts, usage share and latency percentiles per role."""
    frame = _endpoint_frame(tally, usage)
    frame = frame[frame["replayed"] > 0].sort_values(["usage_share", "replayed"],
                                                     ascending=False)
    out = []
    for row in frame.reset_index().to_dict(orient="records"):  # keeps int columns int
        entry = {k: _plain_value(row[k]) for k in ("endpoint", "replayed", "identical",
                                                   "diverged", "failed", "usage_share",
                                                   "usage_requests")}
        entry["latency_ms"] = _latency(tally.endpoints[str(row["endpoint"])].latency)
        out.append(entry)
    return out


def _latency(samples: Mapping[str, list[float]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for role in ("old", "new"):
        values = samples.get(role)
        points = np.percentile(values, [50, 95, 99]) if values else (None, None, None)
        for name, value in zip(("p50", "p95", "p99"), points):
            out[f"{role}_{name}"] = None if value is None else round(float(value), 2)
    return out


def coverage(tally: Tally, usage: Usage) -> dict[str, float]:
    """Shares of production traffic: verified identical, diverging, failed, untested."""
    frame = _endpoint_frame(tally, usage)
    replayed = frame["replayed"].clip(lower=1)
    tested = frame["replayed"] > 0
    share = frame["usage_share"]
    shares = {
        "verified_share": (share * frame["identical"] / replayed)[tested].sum(),
        "diverging_share": (share * frame["diverged"] / replayed)[tested].sum(),
        "failed_share": (share * frame["failed"] / replayed)[tested].sum(),
        "untested_share": share[~tested].sum(),
    }
    # float sums can land a hair outside 0..1 (1.0000000000000002); a share cannot
    return {k: min(1.0, max(0.0, float(v))) for k, v in shares.items()}


def uncovered(tally: Tally, usage: Usage, top: int = 25) -> list[dict[str, Any]]:
    """The busiest production endpoints the capture never replayed."""
    frame = _endpoint_frame(tally, usage)
    missed = frame[(frame["replayed"] == 0) & (frame["usage_requests"] > 0)]
    missed = missed.sort_values(["usage_requests"], ascending=False).head(top)
    return [{"endpoint": str(ep), "requests": int(r["usage_requests"]),
             "usage_share": float(r["usage_share"])} for ep, r in missed.iterrows()]


def _plain_value(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain_value(v) for k, v in record.items()}
