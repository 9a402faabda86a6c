"""Partial tallies merge into exactly the tally one process keeps, whatever the split and order.

This is what lets a run be partitioned across processes or a Dask cluster: the summary
must not depend on how many workers judged it (timings aside).
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import make_exchange, make_response
from shadowdiff.compare import noise as noise_module
from shadowdiff.compare.judge import Verdict
from shadowdiff.model import Divergence, Failure, Trial
from shadowdiff.rank.tally import Tally
from shadowdiff.redact import ReportConfig

ENDPOINTS = ("GET /a", "GET /b/{id}")
LOCATIONS = ("body.x", "body.items[0].y", "body.items[3].y", "header.etag")


def _div(endpoint: str, location: str, value: int) -> Divergence:
    return Divergence(endpoint, location, "value_changed", value, value + 1)


@st.composite
def trials(draw: Any) -> list[tuple[Trial, Verdict]]:
    out = []
    for n in range(draw(st.integers(1, 60))):
        endpoint = draw(st.sampled_from(ENDPOINTS))
        divs = tuple(_div(endpoint, loc, n) for loc in draw(st.lists(st.sampled_from(LOCATIONS),
                                                                     max_size=3)))
        noise = tuple(_div(endpoint, loc, n) for loc in draw(st.lists(st.sampled_from(LOCATIONS),
                                                                      max_size=2)))
        masked = tuple(d for d in noise if draw(st.booleans()))
        hidden = tuple((d, draw(st.sampled_from(["mask:uuid", "ignore_paths"]))) for d in noise)
        failed = draw(st.booleans()) and not divs
        outcomes = {"old": make_response(), "new": Failure("reset", f"reset {n}") if failed
                    else make_response(), "old_replica": make_response()}
        state = "failed" if failed else ("diverged" if divs else "identical")
        verdict = Verdict(endpoint, state, divs, masked, noise,
                          hidden if draw(st.booleans()) else None)
        ex = make_exchange(target="/a", id=f"x{n}", count=draw(st.integers(1, 3)))
        out.append((Trial(ex, outcomes), verdict))
    return out


def snapshot(tally: Tally) -> dict[str, Any]:
    """Everything a summary is built from, except latency samples (timings)."""
    tally.settle(set())
    book = tally.noise
    return {
        "endpoints": {ep: (s.captured, s.replayed, s.identical, s.diverged, s.failed, s.seen)
                      for ep, s in tally.endpoints.items()},
        "signatures": {sig: (s.affected, s.example, s.samples) for sig, s in tally.signatures.items()},
        "examples": tally.examples, "skipped": tally.skipped, "failures": tally.failures,
        "noise_suppressed": tally.noise_suppressed, "diverged_sets": tally.diverged_sets,
        "measured": book.measured, "audited": book.audited,
        "noise": {sig: (n.raw, n.noise, n.masked, n.samples, n.example)
                  for sig, n in book.signatures.items()},
        "rules": {k: (h.count, h.example) for k, h in book.rules.items()},
    }


def _fold(pairs: list[tuple[Trial, Verdict]]) -> Tally:
    tally = Tally(ReportConfig())
    for trial, verdict in pairs:
        tally.add(trial, verdict)
    return tally


@settings(max_examples=80)
@given(trials(), st.integers(2, 5), st.randoms(use_true_random=False))
def test_any_split_merges_to_the_single_tally(pairs: list[tuple[Trial, Verdict]], parts: int,
                                              rnd: random.Random) -> None:
    single = _fold(pairs)
    shuffled = pairs[:]
    rnd.shuffle(shuffled)  # each partition judges in its own completion order
    partials = [_fold(shuffled[i::parts]) for i in range(parts)]
    rnd.shuffle(partials)  # and partitions finish in any order
    merged = partials[0]
    for other in partials[1:]:
        merged.merge(other)
    assert snapshot(merged) == snapshot(single)


def test_examples_are_those_of_the_smallest_id_whatever_the_arrival() -> None:
    div = _div("GET /a", "body.x", 1)
    late = [(Trial(make_exchange(id=f"x{n}"), {"old": make_response(), "new": make_response()}),
             Verdict("GET /a", "diverged", (div,))) for n in (10, 9, 2, 30)]
    tally = _fold(late)
    (stats,) = tally.signatures.values()
    assert stats.example["exchange_id"] == "x2"
    assert [s for s in stats.samples] == [[1, 2]] * 4


def test_audits_keep_a_bottom_k_sample_per_endpoint(monkeypatch: Any) -> None:
    monkeypatch.setattr(noise_module, "AUDIT_PER_ENDPOINT", 3)
    hidden = ((_div("GET /a", "body.x", 0), "ignore_paths"),)
    pairs = [(Trial(make_exchange(id=f"x{n}"), {"old": make_response(), "new": make_response()}),
              Verdict("GET /a", "identical", hidden=hidden)) for n in range(50)]
    one = _fold(pairs)
    assert one.noise.audited == {"GET /a": 3}
    a, b = _fold(pairs[:20]), _fold(pairs[20:])
    a.merge(b)
    assert snapshot(a)["rules"] == snapshot(one)["rules"]
    kept = sorted(r[1] for r in one.noise._audits["GET /a"])
    ranks = sorted((noise_module._audit_key(f"x{n}"), f"x{n}") for n in range(50))
    assert kept == sorted(i for _, i in ranks[:3])
    # an exchange outside the sample is not audited (no second diff spent on it)
    outside = ranks[-1][1]
    assert not one.noise.wants_audit("GET /a", outside)
    largest_kept = ranks[2][0]
    newcomer = next(f"y{n}" for n in range(10_000)
                    if noise_module._audit_key(f"y{n}") < largest_kept)
    assert one.noise.wants_audit("GET /a", newcomer)  # it would displace the largest kept
