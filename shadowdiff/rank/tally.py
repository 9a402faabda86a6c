"""The streaming tally: counts per endpoint and per signature, one example each.

Memory grows with the number of endpoints and signatures, never with the number of
exchanges: per-exchange results go to disk as they come (results.jsonl.gz).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shadowdiff.compare.judge import Verdict
from shadowdiff.redact import ReportConfig, redact_headers, redact_target, redact_values
from shadowdiff.model import Exchange, Failure, Outcome, Response, Signature, Trial, id_order
from shadowdiff.compare.noise import SAMPLES, NoiseBook, keep_first

LATENCY_SAMPLES = 2000  # per endpoint and role: enough for a p99, bounded in memory


@dataclass
class EndpointStats:
    """Counts for one endpoint, weighted by each exchange's `count`."""

    captured: int = 0
    replayed: int = 0
    identical: int = 0
    diverged: int = 0
    failed: int = 0
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seen: int = 0  # samples offered, for reservoir sampling


@dataclass
class SignatureStats:
    """How many exchanges showed a signature, and the first one that did."""

    affected: int = 0
    example: dict[str, Any] | None = None
    samples: list[list[Any]] = field(default_factory=list)  # old/new value pairs
    """Of the exchanges with the smallest ids (`keep_first`), so any partition merges alike."""
    sample_keys: list[Any] = field(default_factory=list)
    example_key: Any = None  # id_order of the example's exchange, kept to compare without re-parsing


class Tally:
    """Folds verdicts into figures; feeds the ranking and the reports."""

    def __init__(self, report: ReportConfig, seed: int = 0) -> None:
        self.report = report
        self.endpoints: dict[str, EndpointStats] = defaultdict(EndpointStats)
        self.signatures: dict[Any, SignatureStats] = defaultdict(SignatureStats)
        self.skipped: Counter[str] = Counter()
        self.failures: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.examples: dict[str, dict[str, Any]] = {}
        self.last_examples: list[str] = []  # signature keys whose example the last add() set
        self.noise_suppressed = 0  # exchanges whose only differences were noise
        self.noise = NoiseBook()
        # (endpoint, signatures shown) -> weight of diverged exchanges: lets `settle` move
        # exchanges whose every signature turned out to be noise, without keeping exchanges.
        self.diverged_sets: Counter[tuple[str, frozenset[Signature]]] = Counter()
        self._diverged_streamed: Counter[str] = Counter()
        self._settled = 0
        self._rng = random.Random(seed)
        # role -> requests sent per HTTP version (summary tls.targets.<role>.replayed_over_counts)
        self.sent_over: dict[str, Counter[str]] = {}

    def add_sent(self, role: str, counts: Mapping[str, int]) -> None:
        """Count what a role's sender sent, per protocol version, when it closes."""
        self.sent_over.setdefault(role, Counter()).update(counts)

    def add_skip(self, endpoint: str, exchange: Exchange, reason: str) -> None:
        self.endpoints[endpoint].captured += exchange.count
        self.skipped[reason] += exchange.count

    def add(self, trial: Trial, verdict: Verdict, lifted: Any = None) -> None:
        """Count one judged trial. `lifted` builds display trees, only when needed."""
        weight = trial.exchange.count
        stats = self.endpoints[verdict.endpoint]
        stats.captured += weight
        stats.replayed += weight
        setattr(stats, verdict.state, getattr(stats, verdict.state) + weight)
        self._sample_latency(stats, trial.outcomes)
        for role, outcome in trial.outcomes.items():
            if isinstance(outcome, Failure):
                self._add_failure(role, outcome, verdict.endpoint, trial.exchange, weight)
        if verdict.suppressed and verdict.state == "identical":
            self.noise_suppressed += weight
        self.noise.add(trial.exchange.id, verdict, weight, self._values)
        self.last_examples = []
        if verdict.divergences:
            self._add_signatures(trial, verdict, weight, lifted)

    def _add_signatures(self, trial: Trial, verdict: Verdict, weight: int, lifted: Any) -> None:
        key = id_order(trial.exchange.id)  # only for exchanges that diverge: not on the hot path
        seen: set[Signature] = set()
        for div in verdict.divergences:
            sig = div.signature
            if sig in seen:  # a signature counts once per exchange, however many indices
                continue
            seen.add(sig)
            entry = self.signatures[sig]
            entry.affected += weight
            keep_first(entry.samples, entry.sample_keys, key, list(self._values(div)), SAMPLES)
            if entry.example is None or key < entry.example_key:
                entry.example_key = key
                old, new = self._values(div)
                entry.example = {"exchange_id": trial.exchange.id, "location": div.location,
                                 "old": old, "new": new}
                self.examples[sig.key] = self._example(trial, verdict, lifted)
                self.last_examples.append(sig.key)
        if verdict.state == "diverged":
            self.diverged_sets[(verdict.endpoint, frozenset(seen))] += weight
            self._diverged_streamed[verdict.endpoint] += weight

    def settle(self, noise: set[Signature]) -> None:
        """Count exchanges whose every signature is in `noise` as identical (noise-suppressed).

        Called once significance is known, at the end of a run; calling it again with the
        same set changes nothing.
        """
        moved: Counter[str] = Counter()
        for (endpoint, sigs), weight in self.diverged_sets.items():
            if sigs <= noise:
                moved[endpoint] += weight
        for endpoint, streamed in self._diverged_streamed.items():
            stats = self.endpoints[endpoint]
            stats.identical += stats.diverged - (streamed - moved[endpoint])
            stats.diverged = streamed - moved[endpoint]
        total = sum(moved.values())
        self.noise_suppressed += total - self._settled
        self._settled = total

    def merge(self, other: Tally) -> None:
        """Add the partial tally of another partition of the same run (before `settle`).

        Exact: counts add, and examples and samples are those of the smallest exchange ids
        on either side, as one process would have kept. Latency samples are a reservoir of
        the union (timings are the one thing partitioned runs do not reproduce).
        """
        for endpoint, theirs in other.endpoints.items():
            self._merge_endpoint(self.endpoints[endpoint], theirs)
        for sig, theirs in other.signatures.items():
            mine = self.signatures[sig]
            mine.affected += theirs.affected
            for k, v in zip(theirs.sample_keys, theirs.samples):
                keep_first(mine.samples, mine.sample_keys, k, v, SAMPLES)
            if theirs.example is not None and (mine.example is None
                                               or theirs.example_key < mine.example_key):
                mine.example, mine.example_key = theirs.example, theirs.example_key
                self.examples[sig.key] = other.examples[sig.key]
        self.skipped.update(other.skipped)
        for key, theirs in other.failures.items():
            mine = self.failures.get(key)
            if mine is None or id_order(theirs["example_exchange_id"]) < id_order(
                    mine["example_exchange_id"]):
                self.failures[key] = dict(theirs, count=theirs["count"] + (mine or {}).get("count", 0))
            else:
                mine["count"] += theirs["count"]
        self.noise_suppressed += other.noise_suppressed
        self.noise.merge(other.noise)
        self.diverged_sets.update(other.diverged_sets)
        self._diverged_streamed.update(other._diverged_streamed)
        for role, counts in other.sent_over.items():
            self.add_sent(role, counts)

    def _merge_endpoint(self, mine: EndpointStats, theirs: EndpointStats) -> None:
        for name in ("captured", "replayed", "identical", "diverged", "failed"):
            setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
        seen = mine.seen + theirs.seen
        for role in set(mine.latency) | set(theirs.latency):
            pool = mine.latency[role] + theirs.latency[role]
            mine.latency[role] = (pool if len(pool) <= LATENCY_SAMPLES
                                  else self._rng.sample(pool, LATENCY_SAMPLES))
        mine.seen = seen

    def _sample_latency(self, stats: EndpointStats, outcomes: dict[str, Outcome]) -> None:
        stats.seen += 1
        slot = stats.seen - 1 if stats.seen <= LATENCY_SAMPLES else self._rng.randrange(stats.seen)
        if slot >= LATENCY_SAMPLES:
            return
        for role, outcome in outcomes.items():
            samples = stats.latency[role]
            value = outcome.elapsed_s * 1000.0
            if slot < len(samples):
                samples[slot] = value
            else:
                samples.append(value)

    def _add_failure(self, role: str, failure: Failure, endpoint: str, ex: Exchange,
                     weight: int) -> None:
        key = (role, failure.kind, endpoint)
        entry = self.failures.get(key)
        if entry is None or id_order(ex.id) < id_order(entry["example_exchange_id"]):
            count = entry["count"] if entry else 0
            entry = self.failures[key] = {
                "role": role, "kind": failure.kind, "count": count, "endpoint": endpoint,
                "example_exchange_id": ex.id, "detail": failure.detail[:300]}
        entry["count"] += weight

    # -- examples -------------------------------------------------------------------------

    def redact(self, headers: tuple[tuple[str, str], ...]) -> list[list[str]]:
        """Header pairs with secrets replaced, unless the user asked to see them."""
        return redact_headers(headers, self.report)

    def _values(self, div: Any) -> tuple[Any, Any]:
        return redact_values(div.location, div.old, div.new, self.report)

    def _example(self, trial: Trial, verdict: Verdict, lifted: Any) -> dict[str, Any]:
        req = trial.exchange.request
        trees = lifted(trial) if lifted else (None, None)
        return {
            "exchange_id": trial.exchange.id,
            "request": {"method": req.method, "target": redact_target(req.target, self.report),
                        "headers": self.redact(req.headers),
                        "body": self._clip(req.body.decode("utf-8", "replace"))},
            "old": self._side(trial.outcomes["old"], trees[0]),
            "new": self._side(trial.outcomes["new"], trees[1]),
            "divergences": [dict(zip(("location", "kind", "old", "new"),
                                     (d.location, d.kind, *self._values(d))))
                            for d in verdict.divergences[:50]],
        }

    def _side(self, outcome: Outcome, tree: dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(outcome, Failure):
            return {"failure": {"kind": outcome.kind, "detail": outcome.detail[:500]}}
        assert isinstance(outcome, Response)
        return {"status": outcome.status, "headers": self.redact(outcome.headers),
                "body": self._clip(display_body(tree["body"] if tree else "")),
                "elapsed_ms": round(outcome.elapsed_s * 1000.0, 2)}

    def _clip(self, text: str) -> str:
        limit = self.report.max_body_chars
        return text if len(text) <= limit else text[:limit] + f"\n… [{len(text) - limit} more characters]"


def display_body(body: Any) -> str:
    """A lifted body as people read it: pretty JSON, text as is, binary as a digest."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and "$binary" in body:
        info = body["$binary"]
        return f"<binary body: {info['length']} bytes, sha256 {info['sha256']}>"
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
