"""Noise: what the old system disagrees with itself about (Diffy's A/A method).

Every request also goes to a second old instance, `old_replica` (or to old twice). Two
things follow, both protocol-neutral (they see divergences and lifted trees):

1. Per exchange (`mask_noise`): an old-vs-new divergence whose (location, kind) also
   appears old-vs-replica is masked for that exchange. A text body is masked line by line:
   only when every line new changed is a line the replica changed too, so a real change
   beside a noisy timestamp on the same page is still reported.
2. Per signature (`significance`): over the endpoint's exchanges that got all three
   answers, `raw` counts old-vs-new occurrences (before the mask) and `noise` counts
   old-vs-replica ones. The signature is significant only when

       raw > noise
       absolute_pct = (raw - noise) / measured * 100         > min_absolute_pct
       relative_pct = (raw - noise) / (raw + noise) * 100    > min_relative_pct

   (Diffy's definitions; defaults 0.03% and 20%, `[rank]` in the config). A signature
   that is not significant is reported as noise, not as a divergence.

`NoiseBook` keeps the counts a run needs for that, bounded by the number of signatures.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.compare.texthunks import HunkNoise, is_hunk_location
from shadowdiff.model import Divergence, Signature, id_order, signature_location
from shadowdiff.paths import parse_location

#: Value pairs kept per signature, for `shadowdiff rules suggest`.
SAMPLES = 5
#: Exchanges per endpoint whose raw (un-normalized) differences are audited for rules.
AUDIT_PER_ENDPOINT = 100
#: Longest text a line-level mask compares; beyond it, difflib would cost too much.
_LINE_MASK_CHARS = 2_000_000

Tree = dict[str, Any]


# -- 1. the per-exchange mask -------------------------------------------------------------


def mask_noise(divergences: Sequence[Divergence], noise: Sequence[Divergence],
               trees: tuple[Tree, Tree, Tree]) -> tuple[list[Divergence], list[Divergence]]:
    """(kept, suppressed): old-vs-new divergences split by the old-vs-replica ones.

    `trees` are the normalized (old, new, old_replica) trees, for the line-level text mask.
    """
    if not noise or not divergences:
        return list(divergences), []
    noisy = {(d.location, d.kind) for d in noise}
    hunks = HunkNoise(noise)  # text hunks are masked line by line (texthunks.py)
    kept: list[Divergence] = []
    suppressed: list[Divergence] = []
    for d in divergences:
        if is_hunk_location(d.location) and _in_text(trees[0], d.location):
            rest, noisy_part = hunks.mask(d)
            kept.extend([rest] if rest is not None else [])
            suppressed.extend(noisy_part)
            continue
        if (d.location, d.kind) not in noisy:
            kept.append(d)
            continue
        texts = [_at(tree, d.location) for tree in trees]
        if d.kind == "body_changed" and all(isinstance(t, str) for t in texts):
            beyond = _lines_beyond_noise(*texts)
            if beyond is not None:
                kept.append(Divergence(d.endpoint, d.location, d.kind, *beyond))
                continue
        suppressed.append(d)
    return kept, suppressed


def _in_text(tree: Tree, location: str) -> bool:
    """True when `location` points inside a text body (old's value at its root is a string),
    not at a JSON key that happens to be named `after`."""
    root = location.split(".", 1)[0].split("[", 1)[0]
    return isinstance(tree.get(root), str) if isinstance(tree, dict) else False


def _at(tree: Tree, location: str) -> Any:
    node: Any = tree
    try:
        for key in parse_location(location):
            node = node[key]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return node


def _lines_beyond_noise(old: str, new: str, replica: str) -> tuple[str, str] | None:
    """Excerpts of the first line new changed that the replica did not; None if none."""
    if max(len(old), len(new), len(replica)) > _LINE_MASK_CHARS:
        return None  # too big to align: the whole body counts as noise, as before
    old_lines = old.splitlines()
    new_changes = _changes(old_lines, new.splitlines())
    noisy = {where for where, _, _ in _changes(old_lines, replica.splitlines())}
    for change in new_changes:
        if change[0] not in noisy:
            return change[1], change[2]
    return None


def _changes(old: list[str], new: list[str]) -> list[tuple[tuple[str, int], str, str]]:
    """((what, old line index), old excerpt, new excerpt) per changed or inserted line."""
    out = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            where = ("changed", i) if i < i2 else ("inserted", i2)
            out.append((where, _excerpt(i if i < i2 else i2, old, i < i2),
                        _excerpt(j if j < j2 else j2, new, j < j2)))
    return out


def _excerpt(index: int, lines: list[str], present: bool) -> str:
    if not present or index >= len(lines):
        return f"line {index + 1}: <no line>"
    return f"line {index + 1}: {lines[index][:160]}"


# -- 2. significance ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseTest:
    """One signature's A/A test."""

    raw: int
    """Old-vs-new occurrences (before the per-exchange mask) in measured exchanges."""
    noise: int
    """Old-vs-replica occurrences in the same exchanges."""
    measured: int
    """The endpoint's exchanges with an answer from old, new and the replica."""
    significant: bool

    @property
    def absolute_pct(self) -> float:
        return 100.0 * (self.raw - self.noise) / self.measured if self.measured else 0.0

    @property
    def relative_pct(self) -> float:
        total = self.raw + self.noise
        return 100.0 * (self.raw - self.noise) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"raw": self.raw, "old_replica": self.noise, "measured": self.measured,
                "absolute_pct": round(self.absolute_pct, 4),
                "relative_pct": round(self.relative_pct, 2), "significant": self.significant}


def significance(raw: int, noise: int, measured: int, min_relative_pct: float,
                 min_absolute_pct: float) -> NoiseTest:
    """Diffy's test: does old-vs-new beat old-vs-replica by both margins?

    >>> significance(99, 1, 100, 20.0, 0.03).significant
    True
    >>> significance(50, 48, 100, 20.0, 0.03).significant
    False
    """
    if measured <= 0:
        return NoiseTest(raw, noise, measured, True)  # nothing measured: nothing to discount
    test = NoiseTest(raw, noise, measured, False)
    ok = raw > noise and test.absolute_pct > min_absolute_pct \
        and test.relative_pct > min_relative_pct
    return NoiseTest(raw, noise, measured, ok)


# -- 3. the book a run keeps ---------------------------------------------------------------


@dataclass
class SignatureNoise:
    """Counts for one signature, over the whole run."""

    raw: int = 0          # old-vs-new, before the mask, in measured exchanges
    noise: int = 0        # old-vs-replica
    masked: int = 0       # old-vs-new occurrences the per-exchange mask suppressed
    samples: list[list[Any]] = field(default_factory=list)   # old-vs-replica value pairs
    sample_keys: list[Any] = field(default_factory=list)      # their ids' order (keep_first)
    example: dict[str, Any] | None = None                     # smallest-id masked occurrence


@dataclass
class RuleHit:
    """A raw difference a normalization rule hid, in audited exchanges."""

    rule: str
    count: int = 0
    example: dict[str, Any] | None = None


class NoiseBook:
    """Streaming noise counts: per endpoint, per signature, per rule that hid something.

    Mergeable exactly (`merge`): what a book keeps of "the first" occurrences is those of
    the smallest exchange ids, and the exchanges audited for rules are, per endpoint, the
    AUDIT_PER_ENDPOINT with the smallest hash of their id (a bottom-k sample), so the union
    of partitions' books is the book one process would have kept.
    """

    def __init__(self) -> None:
        self.measured: Counter[str] = Counter()     # endpoint -> exchanges with a replica answer
        self.signatures: dict[Signature, SignatureNoise] = defaultdict(SignatureNoise)
        # endpoint -> max-heap (by -rank) of (-rank, exchange id, arrival, rule hits) of the
        # audited exchanges; `arrival` only breaks ties of a repeated id (hits do not compare)
        self._audits: dict[str, list[tuple[int, str, int, list[Any]]]] = defaultdict(list)
        self._arrivals = 0

    def wants_audit(self, endpoint: str, exchange_id: str = "") -> bool:
        """Whether this exchange is among the endpoint's bottom-k sample so far."""
        kept = self._audits.get(endpoint)
        if kept is None or len(kept) < AUDIT_PER_ENDPOINT:
            return True
        return _audit_key(exchange_id) < -kept[0][0]

    def add(self, exchange_id: str, verdict: Any, weight: int,
            values: Callable[[Divergence], tuple[Any, Any]]) -> None:
        """Count one verdict's noise. `values` redacts a divergence's old/new values."""
        if verdict.noise is not None:
            self._add_measured(exchange_id, verdict, weight, values)
        if verdict.hidden is not None:
            hits = [(key, _example(exchange_id, d, values))
                    for key, d in _once_by_rule(verdict.hidden)]
            self._arrivals += 1
            self._keep_audit(verdict.endpoint,
                             (-_audit_key(exchange_id), exchange_id, self._arrivals, hits))

    def _add_measured(self, exchange_id: str, verdict: Any, weight: int,
                      values: Callable[[Divergence], tuple[Any, Any]]) -> None:
        self.measured[verdict.endpoint] += weight
        for sig, d in _once(verdict.divergences + verdict.suppressed):
            self.signatures[sig].raw += weight
        if not verdict.noise and not verdict.suppressed:
            return  # the common case: nothing below needs the id's order
        key = id_order(exchange_id)
        for sig, d in _once(verdict.noise):
            entry = self.signatures[sig]
            entry.noise += weight
            keep_first(entry.samples, entry.sample_keys, key, list(values(d)), SAMPLES)
        for sig, d in _once(verdict.suppressed):
            entry = self.signatures[sig]
            entry.masked += weight
            if entry.example is None or key < id_order(entry.example["exchange_id"]):
                entry.example = _example(exchange_id, d, values)

    def _keep_audit(self, endpoint: str, record: tuple[int, str, int, list[Any]]) -> None:
        kept = self._audits[endpoint]
        if len(kept) < AUDIT_PER_ENDPOINT:
            heapq.heappush(kept, record)
        elif record[0] > kept[0][0]:  # a smaller hash than the largest kept
            heapq.heapreplace(kept, record)

    @property
    def audited(self) -> Counter[str]:
        """endpoint -> exchanges audited for rules."""
        return Counter({ep: len(kept) for ep, kept in self._audits.items() if kept})

    @property
    def rules(self) -> dict[tuple[Signature, str], RuleHit]:
        """(signature, rule) -> how many audited exchanges the rule hid it in, one example."""
        out: dict[tuple[Signature, str], RuleHit] = {}
        for kept in self._audits.values():
            for _, exchange_id, _, hits in sorted(kept, key=lambda r: id_order(r[1])):
                for (sig, rule), example in hits:
                    hit = out.setdefault((sig, rule), RuleHit(rule, 0, example))
                    hit.count += 1
        return out

    def merge(self, other: NoiseBook) -> None:
        """Add `other`'s counts (another partition of the same run)."""
        self.measured.update(other.measured)
        for sig, theirs in other.signatures.items():
            mine = self.signatures[sig]
            mine.raw, mine.noise, mine.masked = (mine.raw + theirs.raw, mine.noise + theirs.noise,
                                                 mine.masked + theirs.masked)
            for k, v in zip(theirs.sample_keys, theirs.samples):
                keep_first(mine.samples, mine.sample_keys, k, v, SAMPLES)
            if theirs.example is not None and (
                    mine.example is None or id_order(theirs.example["exchange_id"])
                    < id_order(mine.example["exchange_id"])):
                mine.example = theirs.example
        for endpoint, kept in other._audits.items():
            for record in kept:
                self._keep_audit(endpoint, record)

    def tests(self, min_relative_pct: float, min_absolute_pct: float,
              signatures: Iterable[Signature]) -> dict[Signature, NoiseTest]:
        """The A/A test of each of `signatures` (only endpoints with measurements)."""
        out = {}
        for sig in signatures:
            measured = self.measured.get(sig.endpoint, 0)
            if measured:
                entry = self.signatures.get(sig) or SignatureNoise()
                out[sig] = significance(entry.raw, entry.noise, measured,
                                        min_relative_pct, min_absolute_pct)
        return out


def keep_first(values: list[Any], keys: list[Any], key: Any, value: Any, limit: int) -> None:
    """Keep in `values` the `limit` values with the smallest keys (`keys` runs beside it)."""
    if len(keys) >= limit and not key < keys[-1]:
        return
    at = bisect.bisect_right(keys, key)
    keys.insert(at, key)
    values.insert(at, value)
    if len(keys) > limit:
        keys.pop()
        values.pop()


def _audit_key(exchange_id: str) -> int:
    """A stable pseudo-random rank of an exchange (the same in every process and run); 64 bits,
    so two ids tie only by accident of 2^-64."""
    digest = hashlib.blake2b(exchange_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _once(divergences: Iterable[Divergence]) -> Iterable[tuple[Signature, Divergence]]:
    seen: set[Signature] = set()
    for d in divergences:
        sig = d.signature
        if sig not in seen:
            seen.add(sig)
            yield sig, d


def _once_by_rule(hidden: Iterable[tuple[Divergence, str]]
                  ) -> Iterable[tuple[tuple[Signature, str], Divergence]]:
    seen: set[tuple[Signature, str]] = set()
    for d, rule in hidden:
        key = (d.signature, rule)
        if key not in seen:
            seen.add(key)
            yield key, d


def _example(exchange_id: str, d: Divergence,
             values: Callable[[Divergence], tuple[Any, Any]]) -> dict[str, Any]:
    old, new = values(d)
    return {"exchange_id": exchange_id, "location": d.location, "old": old, "new": new}


def signature_of(endpoint: str, location: str, kind: str) -> Signature:
    """The signature of a divergence given by its parts."""
    return Signature(endpoint, signature_location(location), kind)
