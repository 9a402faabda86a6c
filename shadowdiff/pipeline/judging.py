"""The loop every run shares, in one process or in a worker: replay, judge, tally.

`judged()` sends a stream of exchanges to the targets and yields each trial with its verdict,
already counted in the tally; the single-process pipeline (orchestrate.py) and each
partition of a partitioned run (partitioned.py) drive it the same way.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from shadowdiff.compare.judge import Verdict, judge, lifted_pair
from shadowdiff.config import Config
from shadowdiff.model import Exchange, Failure, Request, Trial
from shadowdiff.protocols.base import Protocol, Sender
from shadowdiff.rank.tally import Tally
from shadowdiff.replay.options import SAFE_METHODS, ReplayConfig
from shadowdiff.replay.breaker import Breakers
from shadowdiff.replay.breaker_log import BreakerBook
from shadowdiff.replay.runner import ReplayPolicy, replay


def target_urls(config: Config) -> dict[str, str]:
    """Role -> target URL, for the roles that have one."""
    return {role: url for role, (url, _) in role_targets(config).items()}


def role_targets(config: Config) -> dict[str, tuple[str, ReplayConfig]]:
    """Each role that has a target: its URL and its options (auth headers, TLS, address)."""
    t = config.targets
    # Replaying old twice is a replica that happens to be old itself: its own connections.
    replica = t.old_replica or (t.old if t.replay_old_twice else None)
    urls = {"old": t.old, "new": t.new, "old_replica": replica}
    out = {}
    for role, url in urls.items():
        if url:
            options = config.replay.for_role(role)
            if role == "old_replica" and not t.old_replica:  # old asked twice: old's address
                options = replace(options, tls=config.replay.for_role("old").tls)
            out[role] = (url, options)
    return out


def open_senders(protocol: Protocol, config: Config) -> dict[str, Sender]:
    """One sender (connection pool) per role that has a target."""
    return {role: protocol.open_sender(url, options)
            for role, (url, options) in role_targets(config).items()}


def tls_section(protocol: Protocol, config: Config) -> dict[str, Any] | None:
    """summary.json's `tls`: each HTTPS target's certificate facts (one handshake each, before
    the replay), what differs old vs new, and the roles not verified (--insecure)."""
    facts_of = getattr(protocol, "connection_facts", None)
    if facts_of is None:
        return None
    from shadowdiff.protocols.http.certs import compare_facts
    targets = {role: facts for role, (url, options) in role_targets(config).items()
               if (facts := facts_of(url, options)) is not None}
    if not targets:
        return None
    both = "old" in targets and "new" in targets
    return {"targets": targets,
            "divergences": compare_facts(targets["old"], targets["new"]) if both else [],
            "insecure": [role for role, facts in targets.items() if facts["insecure"]]}


def with_alpn(config: Config, tls: Mapping[str, Any] | None) -> Config:
    """`config` with what the pre-run probe learned of each HTTPS target's ALPN (`tls`),
    so the senders, here or in a worker, know which targets speak h2 without a handshake."""
    if not tls:
        return config
    learned = tuple((role, facts.get("alpn") or "") for role, facts in tls["targets"].items()
                    if "tls_version" in facts)   # a handshake happened: its choice is known
    return replace(config, replay=replace(config.replay, alpn_roles=learned))


def finish_tls(tls: dict[str, Any] | None, sent: Mapping[str, Mapping[str, int]],
               config: Config) -> dict[str, Any] | None:
    """`tls` with what the replay really spoke to each HTTPS target: `replayed_over`
    ("HTTP/2", "HTTP/1.1" or "HTTP/2 and HTTP/1.1"), the requests sent over each, and why
    HTTP/2 was or was not used (`http2`: used, off, not_offered, not_captured)."""
    if not tls:
        return tls
    for role, facts in tls["targets"].items():
        counts = {v: int(sent.get(role, {}).get(v, 0)) for v in ("HTTP/2", "HTTP/1.1")}
        used = [v for v, n in counts.items() if n]
        facts["replayed_over"] = " and ".join(used) if used else facts.get("replayed_over", "HTTP/1.1")
        facts["replayed_over_counts"] = counts
        facts["http2"] = ("off" if config.replay.http2 == "off" else
                          "not_offered" if facts.get("alpn") != "h2" else
                          "used" if counts["HTTP/2"] else "not_captured")
    return tls


def breakers_apply(protocol: Protocol, config: Config) -> bool:
    """Whether this run's targets get circuit breakers. Not SMTP: a session is replayed as one
    conversation, and holding back some of its steps would judge a conversation no MTA had."""
    return (config.replay.breaker.threshold is not None and bool(config.targets.old)
            and not hasattr(protocol, "session_of"))


def needed_roles(config: Config) -> frozenset[str]:
    """Roles without a target: the capture must hold their recorded answers."""
    t = config.targets
    return frozenset({"old", "new"} - {role for role, url in (("old", t.old), ("new", t.new)) if url})


def replay_policy(config: Config, protocol: Protocol, *, share: int = 1) -> ReplayPolicy:
    """The run's policy; with `share` partitions in flight, each gets its part of the limits
    (rate and concurrency per target are the run's, not each worker's)."""
    methods = frozenset(config.replay.methods)
    if config.replay.methods == SAFE_METHODS and hasattr(protocol, "replay_methods"):
        # the plugin's own safe default (SMTP's commands)
        methods = frozenset(protocol.replay_methods(config.replay))
    # A pcap may hold HTTP and SMTP together: replay what the targets speak, skip the rest.
    return ReplayPolicy(methods=methods,
                        concurrency=max(1, math.ceil(config.replay.concurrency / share)),
                        rate=config.replay.rate / share,
                        protocol=protocol.name if config.targets.old else None)


def result_line(trial: Trial, verdict: Verdict) -> bytes:
    """One line of results.jsonl.gz (docs/report-schema.md)."""
    outcomes = {role: (o.kind if isinstance(o, Failure) else o.status)
                for role, o in trial.outcomes.items()}
    return orjson.dumps({
        "id": trial.exchange.id, "endpoint": verdict.endpoint, "state": verdict.state,
        "count": trial.exchange.count, "outcomes": outcomes,
        "divergences": [[d.location, d.kind] for d in verdict.divergences],
        **({"suppressed": [[d.location, d.kind] for d in verdict.suppressed]}
           if verdict.suppressed else {}),
    }) + b"\n"


async def judged(exchanges: Iterable[Exchange], config: Config, protocol: Protocol,
                 policy: ReplayPolicy, tally: Tally, endpoint_of: Callable[[Request], str],
                 book: BreakerBook | None = None,
                 gave_up: Mapping[str, tuple[int, float]] | None = None,
                 ) -> AsyncIterator[tuple[Trial, Verdict]]:
    """Replay `exchanges`, judge each trial and count it in `tally`, as they complete.

    With circuit breakers on, an exchange a breaker gave up on is counted in `tally` as
    skipped, and the breakers' logs are added to `book` at the end; `gave_up` names roles an
    earlier partition gave up on (partitioned.py), which this replay starts given up.
    """
    senders = open_senders(protocol, config)
    lift: Any = lambda trial: lifted_pair(trial, protocol)  # noqa: E731 - only for examples
    wants_audit = tally.noise.wants_audit
    breakers = None
    if breakers_apply(protocol, config):
        breakers = Breakers(target_urls(config), config.replay.breaker,
                            lambda ex, endpoint, why: tally.add_skip(endpoint, ex, why),
                            endpoint_of, gave_up)
    try:
        async for trial in replay(exchanges, senders, policy, breakers):
            exchange_id = trial.exchange.id
            # judge names the endpoint once and asks whether this exchange is in the audit sample
            verdict = judge(trial, protocol, config, endpoint_of=endpoint_of,
                            audit=lambda endpoint, i=exchange_id: wants_audit(endpoint, i))
            tally.add(trial, verdict, lift)
            yield trial, verdict
    finally:
        if breakers is not None and book is not None:
            for log in breakers.finish():
                book.add(log)
        await asyncio.gather(*(s.close() for s in senders.values()))
        for role, sender in senders.items():
            tally.add_sent(role, getattr(sender, "sent_over", None) or {})


def run_loop(coro: Any) -> None:
    """asyncio.run on uvloop when it is installed (the `fast` extra): ~2x less loop overhead."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
