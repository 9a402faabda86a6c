"""Judge one trial: lift, normalize and compare old with new. Pure and protocol-neutral.

The fast path matters: most replayed pairs are identical, and their bodies are compared
as bytes before anything is parsed. Only differing bodies are lifted and diffed.

With an old replica the judge also compares old with the replica (the noise), masks the
old-vs-new divergences that are noise for this exchange (noise.py), and on request audits
the exchange: which raw differences did the rules hide (rules/explain.py)?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from shadowdiff.compare.rulebook import RuleSource
from shadowdiff.compare.diff import compare
from shadowdiff.model import Divergence, Failure, Outcome, Request, Response, Trial
from shadowdiff.compare.noise import mask_noise
from shadowdiff.compare.normalize import Rules, normalize
from shadowdiff.protocols.base import Protocol
from shadowdiff.compare.rules.explain import explain
from shadowdiff.compare.rules.tolerance import apply_tolerances


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one trial showed."""

    endpoint: str
    state: str                        # "identical" | "diverged" | "failed"
    divergences: tuple[Divergence, ...] = ()
    suppressed: tuple[Divergence, ...] = ()   # masked because old differed from old_replica
    noise: tuple[Divergence, ...] | None = None   # old vs old_replica; None: not measured
    hidden: tuple[tuple[Divergence, str], ...] | None = None   # audited: (raw difference, rule)


def _outcome_label(outcome: Outcome) -> str:
    return outcome.kind if isinstance(outcome, Failure) else f"status {outcome.status}"


def judge(trial: Trial, protocol: Protocol, config: RuleSource, *,
          audit: bool | Callable[[str], bool] = False,
          endpoint_of: Callable[[Request], str] | None = None) -> Verdict:
    """Compare the `old` and `new` outcomes of one trial.

    A failure on one side only is a `failure` divergence at location `outcome`; the same
    failure on both sides verifies nothing, so the trial is `failed`, not identical.
    `audit` (or `audit(endpoint)`) also names the rules that hid raw differences; it
    costs a second diff, so the pipeline audits a sample.
    """
    endpoint = (endpoint_of or protocol.endpoint_key)(trial.exchange.request)
    old, new = trial.outcomes["old"], trial.outcomes["new"]
    if isinstance(old, Failure) or isinstance(new, Failure):
        if isinstance(old, Failure) and isinstance(new, Failure) and old.kind == new.kind:
            return Verdict(endpoint, "failed")
        div = Divergence(endpoint, "outcome", "failure", _outcome_label(old), _outcome_label(new))
        return Verdict(endpoint, "diverged", (div,))
    pair = _Pair(protocol, config.rules_for(endpoint), endpoint, old)
    divergences, new_tree = pair.diff(new)
    suppressed: list[Divergence] = []
    noise: list[Divergence] | None = None
    replica = trial.outcomes.get("old_replica")
    if isinstance(replica, Response):
        # Diffy's per-request mask: where old disagrees with itself, old-vs-new says nothing.
        noise, replica_tree = pair.diff(replica)
        trees = (pair.old_tree(old.body == new.body), new_tree, replica_tree)
        divergences, suppressed = mask_noise(divergences, noise, trees)
    wanted = audit(endpoint) if callable(audit) else audit
    hidden = pair.audit(new, divergences + suppressed) if wanted else None
    state = "diverged" if divergences else "identical"
    return Verdict(endpoint, state, tuple(divergences), tuple(suppressed),
                   None if noise is None else tuple(noise), hidden)


class _Pair:
    """Old's side of a trial, lifted and normalized once for every comparison with it."""

    def __init__(self, protocol: Protocol, rules: Rules, endpoint: str, old: Response) -> None:
        self.protocol, self.rules, self.endpoint, self.old = protocol, rules, endpoint, old
        self._old: dict[bool, dict[str, Any]] = {}

    def old_tree(self, bodiless: bool) -> dict[str, Any]:
        tree = self._old.get(bodiless)
        if tree is None:
            tree = self._old[bodiless] = self._tree(self.old, bodiless)
        return tree

    def _tree(self, response: Response, bodiless: bool) -> dict[str, Any]:
        # Equal bytes normalize to equal bodies: skip parsing, compare status and headers
        # (a changed Content-Type still shows there).
        if bodiless and type(response.headers) is tuple:
            return _head_tree(self.protocol, self.rules, response.status, response.headers)
        lifted = self.protocol.lift(replace(response, body=b"") if bodiless else response)
        return normalize(lifted, self.rules)

    def diff(self, other: Response) -> tuple[list[Divergence], dict[str, Any]]:
        """Divergences old -> other after the rules, and other's normalized tree."""
        bodiless = self.old.body == other.body
        if bodiless and type(self.old.headers) is type(other.headers) is tuple:
            found = _head_diff(self.protocol, self.rules, self.endpoint, self.old.status,
                               self.old.headers, other.status, other.headers)
            return list(found), _head_tree(self.protocol, self.rules, other.status, other.headers)
        tree = self._tree(other, bodiless)
        found = compare(self.old_tree(bodiless), tree, self.endpoint)
        return apply_tolerances(found, self.rules.tolerances), tree

    def audit(self, new: Response, shown: list[Divergence]) -> tuple[tuple[Divergence, str], ...]:
        """Raw differences old -> new that the rules hid, each with the rule that did."""
        bodiless = self.old.body == new.body
        lift = self.protocol.lift
        raw = compare(lift(replace(self.old, body=b"") if bodiless else self.old),
                      lift(replace(new, body=b"") if bodiless else new), self.endpoint)
        visible = {d.signature for d in shown}
        return tuple((d, explain(self.rules, d)) for d in raw if d.signature not in visible)


# Why caches: most pairs have equal bodies, and then the verdict depends only on the two
# status lines and header lists, which repeat from one exchange to the next (Date changes
# once a second, ETag and Server not at all). lift, normalize and compare are pure
# functions of these (and of the rules and endpoint), so each distinct head is lifted and
# normalized once, and each distinct pair of heads compared once. Trees are never mutated
# downstream (normalize copies on write), so sharing one is safe.
@lru_cache(maxsize=4096)
def _head_tree(protocol: Protocol, rules: Rules, status: int,
               headers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return normalize(protocol.lift(Response(status, headers)), rules)


@lru_cache(maxsize=4096)
def _head_diff(protocol: Protocol, rules: Rules, endpoint: str, old_status: int,
               old_headers: tuple[tuple[str, str], ...], new_status: int,
               new_headers: tuple[tuple[str, str], ...]) -> tuple[Divergence, ...]:
    found = compare(_head_tree(protocol, rules, old_status, old_headers),
                    _head_tree(protocol, rules, new_status, new_headers), endpoint)
    return tuple(apply_tolerances(found, rules.tolerances))


def compare_responses(old: Response, new: Response, endpoint: str, protocol: Protocol,
                      config: RuleSource) -> list[Divergence]:
    """Divergences between two responses after normalization."""
    return _Pair(protocol, config.rules_for(endpoint), endpoint, old).diff(new)[0]


def lifted_pair(trial: Trial, protocol: Protocol) -> tuple[dict | None, dict | None]:
    """Both sides lifted (un-normalized) for display; None for a failure."""
    def lift(o: Outcome) -> dict | None:
        return protocol.lift(o) if isinstance(o, Response) else None
    return lift(trial.outcomes["old"]), lift(trial.outcomes["new"])
