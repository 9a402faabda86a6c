"""Judge one trial: lift, normalize and compare old with new. Pure and protocol-neutral.

The fast path matters: most replayed pairs are identical, and their bodies are compared
as bytes before anything is parsed. Only differing bodies are lifted and diffed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shadowdiff.config import Config
from shadowdiff.diff import compare
from shadowdiff.model import Divergence, Failure, Outcome, Response, Trial
from shadowdiff.normalize import normalize
from shadowdiff.protocols.base import Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one trial showed."""

    endpoint: str
    state: str                        # "identical" | "diverged" | "failed"
    divergences: tuple[Divergence, ...] = ()
    suppressed: tuple[Divergence, ...] = ()   # masked because old differed from old_replica


def _outcome_label(outcome: Outcome) -> str:
    return outcome.kind if isinstance(outcome, Failure) else f"status {outcome.status}"


def judge(trial: Trial, protocol: Protocol, config: Config) -> Verdict:
    """Compare the `old` and `new` outcomes of one trial.

    A failure on one side only is a `failure` divergence at location `outcome`; the same
    failure on both sides verifies nothing, so the trial is `failed`, not identical.
    """
    endpoint = protocol.endpoint_key(trial.exchange.request)
    old, new = trial.outcomes["old"], trial.outcomes["new"]
    if isinstance(old, Failure) or isinstance(new, Failure):
        if isinstance(old, Failure) and isinstance(new, Failure) and old.kind == new.kind:
            return Verdict(endpoint, "failed")
        div = Divergence(endpoint, "outcome", "failure", _outcome_label(old), _outcome_label(new))
        return Verdict(endpoint, "diverged", (div,))
    divergences = compare_responses(old, new, endpoint, protocol, config)
    suppressed: list[Divergence] = []
    replica = trial.outcomes.get("old_replica")
    if divergences and isinstance(replica, Response):
        # Diffy's per-request mask: where old disagrees with itself, old-vs-new says nothing.
        noisy = {d.location for d in compare_responses(old, replica, endpoint, protocol, config)}
        suppressed = [d for d in divergences if d.location in noisy]
        divergences = [d for d in divergences if d.location not in noisy]
    state = "diverged" if divergences else "identical"
    return Verdict(endpoint, state, tuple(divergences), tuple(suppressed))


def compare_responses(old: Response, new: Response, endpoint: str, protocol: Protocol,
                      config: Config) -> list[Divergence]:
    """Divergences between two responses after normalization."""
    if old.body == new.body:
        # Equal bytes normalize to equal bodies: skip parsing, compare status and headers
        # (a changed Content-Type still shows there).
        old, new = replace(old, body=b""), replace(new, body=b"")
    rules = config.rules_for(endpoint)
    return compare(normalize(protocol.lift(old), rules), normalize(protocol.lift(new), rules),
                   endpoint)


def lifted_pair(trial: Trial, protocol: Protocol) -> tuple[dict | None, dict | None]:
    """Both sides lifted (un-normalized) for display; None for a failure."""
    def lift(o: Outcome) -> dict | None:
        return protocol.lift(o) if isinstance(o, Response) else None
    return lift(trial.outcomes["old"]), lift(trial.outcomes["new"])
