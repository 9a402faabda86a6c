"""Gates: the `--fail-on` conditions that turn a finished run into an exit code.

Sits after the report and history stages: it reads the summary, how it compares with
the last run (history.SinceLast), the accepted divergences and the latency findings,
and says pass or fail in one line. Accepted signatures never fail a gate, but they are
named in the result so nobody forgets them.

Conditions (case-insensitive, spaces ignored):

    any                   any significant divergence or certificate divergence (old vs
                          new, summary `tls`) not accepted, or nothing verified
    new                   a signature not seen in the last complete run, not accepted
    impact>0.5%           a signature, not accepted, touching more than that share of
                          production traffic (`impact>0.005` says the same)
    new-failure-rate      new's failure rate above old's by more than 1 percentage point
    new-failure-rate>2%   ... by more than the given margin
    latency               a statistically sound latency regression (latency.regression)
    diverged>N            more than N replayed exchanges diverged (accepted ones excluded)

>>> evaluate(parse_conditions(["new", "impact>1%"]), summary, since, {}, [])  # doctest: +SKIP
GateResult(exit_code=1, verdict_line='FAIL: 1 new signature since run r2 (new)', ...)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadowdiff.errors import EXIT_CLEAN, EXIT_DIVERGED, EXIT_INPUT, ConfigError

EXIT_PASS, EXIT_FAIL = EXIT_CLEAN, EXIT_DIVERGED
DEFAULT_CONDITIONS = ("any",)  # today's behaviour: exit 1 on any significant divergence
DEFAULT_FAILURE_MARGIN = 0.01

_SPEC = re.compile(r"^(?P<name>[a-z][a-z-]*)"
                   r"(?:(?P<op>>=|>)(?P<value>[0-9]*\.?[0-9]+)(?P<pct>%)?)?$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed `--fail-on` condition."""

    name: str                    # "any", "new", "impact", "new-failure-rate", "latency", "diverged"
    text: str                    # as the user wrote it, for messages
    threshold: float | None = None
    inclusive: bool = False      # ">=" rather than ">"

    def exceeds(self, value: float) -> bool:
        """Whether `value` is past this condition's threshold."""
        assert self.threshold is not None
        return value >= self.threshold if self.inclusive else value > self.threshold


@dataclass(frozen=True, slots=True)
class Reason:
    """What one condition found."""

    condition: str
    failed: bool
    message: str          # short: goes into the verdict line
    detail: str = ""      # the worst offender, for the report and the console


@dataclass(frozen=True, slots=True)
class GateResult:
    """The exit code, the one-line verdict, and every condition's finding."""

    exit_code: int
    verdict_line: str
    reasons: tuple[Reason, ...]
    accepted: tuple[str, ...] = field(default=())   # this run's signatures that were accepted

    @property
    def failed(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.failed)


# --- parsing ------------------------------------------------------------------------------

_THRESHOLD = {"any": "no", "new": "no", "latency": "no", "impact": "share",
              "new-failure-rate": "optional share", "diverged": "count"}
_EXAMPLES = "any, new, impact>0.5%, new-failure-rate, new-failure-rate>2%, latency, diverged>10"


def parse_conditions(specs: Iterable[str], *, source: str = "--fail-on") -> list[Condition]:
    """Parse condition strings (from the config's list or the command line).

    Raises ConfigError naming the bad condition and `source` (a flag or config key).
    Duplicates are dropped; order is kept, for the messages.
    """
    out: list[Condition] = []
    for spec in specs:
        for part in str(spec).split(","):  # --fail-on new,latency is one flag, two conditions
            if part.strip():
                cond = _parse_one(part, source)
                if cond not in out:
                    out.append(cond)
    return out


def _parse_one(spec: str, source: str) -> Condition:
    text = re.sub(r"\s+", "", spec).lower()
    match = _SPEC.match(text)
    if not match or match["name"] not in _THRESHOLD:
        raise ConfigError(f"unknown condition {spec.strip()!r}; conditions are: {_EXAMPLES}",
                          key=source)
    name, kind = match["name"], _THRESHOLD[match["name"]]
    if match["op"] is None:
        if kind in ("share", "count"):
            raise ConfigError(f"condition {spec.strip()!r} needs a threshold, e.g. "
                              f"{name}>{'0.5%' if kind == 'share' else '10'}", key=source)
        default = DEFAULT_FAILURE_MARGIN if name == "new-failure-rate" else None
        return Condition(name, text, default)
    if kind == "no":
        raise ConfigError(f"condition {spec.strip()!r}: {name!r} takes no threshold",
                          key=source)
    return Condition(name, text, _threshold(spec.strip(), match, kind, source),
                     inclusive=match["op"] == ">=")


def _threshold(spec: str, match: re.Match[str], kind: str, source: str) -> float:
    value = float(match["value"])
    if kind == "count":
        if match["pct"] or not value.is_integer():
            raise ConfigError(f"condition {spec!r}: a count of exchanges is a whole number",
                              key=source)
        return value
    share = value / 100.0 if match["pct"] else value
    if share > 1.0:
        raise ConfigError(f"condition {spec!r}: a share is at most 100% (or 1.0); did you "
                          f"mean {value:g}%?", key=source)
    return share


# --- evaluation ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Context:
    summary: Mapping[str, Any]
    since_last: Any                         # history.SinceLast | None
    accepted: Mapping[str, Any]             # key -> history.Acceptance (or anything)
    latency: Sequence[Any] | None           # latency.Finding list; None: not measured

    def open_tls(self) -> list[Mapping[str, Any]]:
        """Certificate facts that differ old vs new (summary `tls`), not accepted."""
        tls = self.summary.get("tls") or {}
        return [d for d in tls.get("divergences", []) if d["key"] not in self.accepted]

    def open_signatures(self) -> list[Mapping[str, Any]]:
        """This run's signatures that are not accepted, ranked."""
        return [s for s in self.summary.get("signatures", []) if s["key"] not in self.accepted]


def evaluate(conditions: Sequence[Condition], summary: Mapping[str, Any],
             since_last: Any = None, accepted: Mapping[str, Any] | None = None,
             latency_findings: Sequence[Any] | None = None) -> GateResult:
    """Check every condition; exit 1 when any fails, 2 when the run had input errors.

    `since_last` is a history.SinceLast (None: no history, every signature counts as new);
    `accepted` maps signature key -> acceptance in force; `latency_findings` are
    latency.Finding values (None: latency not measured, so the `latency` gate cannot fail).
    """
    ctx = _Context(summary, since_last, accepted or {}, latency_findings)
    conditions = conditions or parse_conditions(DEFAULT_CONDITIONS)
    reasons = tuple(_CHECKS[c.name](c, ctx) for c in conditions)
    present = tuple(s["key"] for s in summary.get("signatures", []) if s["key"] in ctx.accepted)
    errors = summary.get("run", {}).get("errors") or []
    failed = [r for r in reasons if r.failed]
    if errors:
        exit_code, head = EXIT_INPUT, f"INPUT ERROR: {errors[0]}"
    elif failed:
        exit_code, head = EXIT_FAIL, "FAIL: " + "; ".join(f"{r.message} ({r.condition})"
                                                          for r in failed)
    else:
        exit_code, head = EXIT_PASS, "PASS: " + _pass_line(ctx, conditions)
    if present:
        head += f" · {_plural(len(present), 'accepted signature')} not counted"
    if summary.get("run", {}).get("interrupted"):
        head = "interrupted run: " + head
    return GateResult(exit_code, head, reasons, present)


def _pass_line(ctx: _Context, conditions: Sequence[Condition]) -> str:
    names = ", ".join(c.text for c in conditions)
    return f"{_plural(len(ctx.open_signatures()), 'open signature')}, within the gates ({names})"


def _pct(share: float) -> str:
    """0.005 -> '0.5%', 0.0125 -> '1.25%': thresholds as people wrote them."""
    return f"{share * 100:.4f}".rstrip("0").rstrip(".") + "%"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _check_any(cond: Condition, ctx: _Context) -> Reason:
    open_sigs, open_tls = ctx.open_signatures(), ctx.open_tls()
    if open_sigs or open_tls:
        found = ([_plural(len(open_sigs), "divergence signature")] if open_sigs else []) + (
            [_plural(len(open_tls), "certificate divergence")] if open_tls else [])
        return Reason(cond.text, True, ", ".join(found), f"top: {(open_sigs or open_tls)[0]['key']}")
    totals = ctx.summary.get("totals", {})
    replayed = totals.get("replayed", 0)
    failed_both = totals.get("failed_both")
    if not replayed or (failed_both is not None and failed_both == replayed):
        return Reason(cond.text, True, "nothing verified: no exchange got a usable answer "
                      "from both old and new")
    return Reason(cond.text, False, "no open divergence")


def _check_new(cond: Condition, ctx: _Context) -> Reason:
    if ctx.since_last is None or ctx.since_last.previous_run_id is None:
        keys, since = [s["key"] for s in ctx.open_signatures()], "(no earlier complete run)"
    else:
        keys = [k for k in ctx.since_last.new if k not in ctx.accepted]
        since = f"since run {ctx.since_last.previous_run_id}"
    if keys:
        return Reason(cond.text, True, f"{_plural(len(keys), 'new signature')} {since}",
                      ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else ""))
    return Reason(cond.text, False, f"no new signature {since}")


def _check_impact(cond: Condition, ctx: _Context) -> Reason:
    over = [s for s in ctx.open_signatures() if cond.exceeds(float(s["impact"]))]
    limit = _pct(cond.threshold or 0.0)
    if over:
        top = over[0]
        return Reason(cond.text, True, f"{_plural(len(over), 'signature')} above {limit} of "
                      "production traffic", f"top: {top['key']}, {float(top['impact']):.2%}")
    return Reason(cond.text, False, f"no open signature above {limit} of production traffic")


def _check_failure_rate(cond: Condition, ctx: _Context) -> Reason:
    totals = ctx.summary.get("totals", {})
    replayed = totals.get("replayed", 0)
    if not replayed:
        return Reason(cond.text, False, "no replayed exchange: failure rates not measured")
    failed = totals.get("failed", {})
    old, new = failed.get("old", 0) / replayed, failed.get("new", 0) / replayed
    gap = f"new fails {new:.2%} of requests, old {old:.2%}"
    if cond.exceeds(new - old):
        return Reason(cond.text, True, f"{gap}, more than {_pct(cond.threshold or 0.0)} apart")
    return Reason(cond.text, False, gap)


def _check_latency(cond: Condition, ctx: _Context) -> Reason:
    if ctx.latency is None:
        return Reason(cond.text, False, "latency not measured: gate not evaluated")
    open_findings = [f for f in ctx.latency if getattr(f, "key", None) not in ctx.accepted]
    if open_findings:
        return Reason(cond.text, True, _plural(len(open_findings), "latency regression"),
                      f"worst: {open_findings[0].describe()}")
    return Reason(cond.text, False, "no sound latency regression")


def _check_diverged(cond: Condition, ctx: _Context) -> Reason:
    count = _open_diverged(ctx)
    limit = int(cond.threshold or 0)
    word = _plural(count, "diverged exchange")
    if cond.exceeds(count):
        return Reason(cond.text, True, f"{word}, more than {limit}")
    return Reason(cond.text, False, f"{word} (limit {limit})")


def _open_diverged(ctx: _Context) -> int:
    """Diverged exchanges, discounting accepted signatures.

    The summary does not say which exchanges showed only accepted signatures, so with
    acceptances in force this is an upper bound: each still-diverging exchange shows
    at least one open signature, so it is at most the sum of their `affected`.
    """
    diverged = int(ctx.summary.get("totals", {}).get("diverged", 0))
    if not any(s["key"] in ctx.accepted for s in ctx.summary.get("signatures", [])):
        return diverged
    return min(diverged, sum(int(s["affected"]) for s in ctx.open_signatures()))


_CHECKS: dict[str, Callable[[Condition, _Context], Reason]] = {
    "any": _check_any, "new": _check_new, "impact": _check_impact,
    "new-failure-rate": _check_failure_rate, "latency": _check_latency,
    "diverged": _check_diverged,
}
