"""Rank stage, coverage: what production does that the capture never exercised, and what
to capture next.

    usage counts (endpoint -> requests) + replayed endpoints ──> untested()
    usage counts ──> suggest_sample() ──> SampleRow list ──> render_suggestion()
                                                             (`shadowdiff usage --suggest`)

Untested is not identical: an endpoint the capture missed may differ in any way, so the
report lists the busiest ones. The suggestion is the smallest set of endpoints covering a
target share of production traffic, with how many exchanges to capture for each.
Pure functions over plain mappings; only the rendering knows about rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from rich.table import Table

#: Exchanges per endpoint below which a suggestion never goes: with 30 samples a
#: divergence on 10% of an endpoint's requests is missed with probability 0.9**30 = 4%.
DEFAULT_FLOOR = 30
#: Exchanges shared out in proportion to traffic, before floors.
DEFAULT_BUDGET = 10_000


class SampleRow(NamedTuple):
    """One endpoint of a suggested capture; unpacks as (endpoint, requests, cumulative_share)."""

    endpoint: str
    requests: int
    """Production requests counted for it."""
    cumulative_share: float
    """Share of production traffic covered by this row and every busier one."""
    share: float
    """Its own share of production traffic."""
    capture: int
    """Exchanges to capture: proportional to traffic, at least the floor, at most `requests`."""
    have: int = 0
    """Exchanges already captured (when known)."""

    @property
    def need(self) -> int:
        """Exchanges still to capture."""
        return max(0, self.capture - self.have)


def _busiest(usage_counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(((e, int(n)) for e, n in usage_counts.items() if n > 0),
                  key=lambda item: (-item[1], item[0]))


def untested(usage_counts: Mapping[str, int], replayed: Iterable[str], *, top: int = 25,
             total: int | None = None) -> list[dict[str, Any]]:
    """The busiest production endpoints that no replayed exchange exercised.

    Rows have the `uncovered[]` shape of summary.json: endpoint, requests, usage_share.

    >>> untested({"GET /a": 9, "GET /b": 1}, ["GET /a"])
    [{'endpoint': 'GET /b', 'requests': 1, 'usage_share': 0.1}]
    """
    seen = set(replayed)
    denominator = max(total if total is not None else sum(usage_counts.values()), 1)
    return [{"endpoint": e, "requests": n, "usage_share": n / denominator}
            for e, n in _busiest(usage_counts) if e not in seen][:top]


def untested_share(usage_counts: Mapping[str, int], replayed: Iterable[str]) -> float:
    """Share of production traffic on endpoints the capture never replayed."""
    seen = set(replayed)
    total = sum(usage_counts.values())
    return sum(n for e, n in usage_counts.items() if e not in seen) / total if total else 0.0


def suggest_sample(usage_counts: Mapping[str, int], target_share: float = 0.99, *,
                   budget: int = DEFAULT_BUDGET, floor: int = DEFAULT_FLOOR,
                   total: int | None = None,
                   have: Mapping[str, int] | None = None) -> list[SampleRow]:
    """The fewest endpoints, busiest first, that cover `target_share` of production traffic.

    Busiest-first is optimal: no smaller set of endpoints carries as much traffic. Each
    row's `capture` is its part of `budget` in proportion to its requests (largest
    remainders, so the parts sum to `budget`), raised to `floor` so rare endpoints still
    get enough exchanges to show a divergence, and capped at its production requests.
    `total` is the denominator of the shares when `usage_counts` was filtered (say, to
    the replayable methods); `have` gives exchanges already captured per endpoint.

    >>> [(r.endpoint, r.cumulative_share) for r in suggest_sample({"GET /a": 90, "GET /b": 9,
    ...                                                            "GET /c": 1}, 0.95)]
    [('GET /a', 0.9), ('GET /b', 0.99)]
    """
    if not 0 < target_share <= 1:
        raise ValueError(f"target_share must be in (0, 1], not {target_share!r}")
    if budget < 0 or floor < 0:
        raise ValueError("budget and floor must be >= 0")
    ranked = _busiest(usage_counts)
    denominator = total if total is not None else sum(n for _, n in ranked)
    chosen: list[tuple[str, int, float]] = []
    running = 0
    for endpoint, n in ranked:
        if chosen and chosen[-1][2] >= target_share - 1e-12:
            break
        running += n
        chosen.append((endpoint, n, running / denominator))
    parts = _apportion([n for _, n, _ in chosen], budget)
    have = have or {}
    return [SampleRow(e, n, cum, n / denominator, min(n, max(floor, part)), int(have.get(e, 0)))
            for (e, n, cum), part in zip(chosen, parts)]


def _apportion(weights: list[int], budget: int) -> list[int]:
    """Integer parts of `budget` in proportion to `weights` (largest remainder method)."""
    total = sum(weights)
    if not total:
        return [0] * len(weights)
    exact = [budget * w / total for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: parts[i] - exact[i])
    for i in by_remainder[: budget - sum(parts)]:
        parts[i] += 1
    return parts


def render_suggestion(rows: list[SampleRow], *, target_share: float,
                      usage_counts: Mapping[str, int] | None = None) -> Table:
    """The `shadowdiff usage --suggest` table: what to capture to cover the target share.

    >>> from rich.console import Console
    >>> Console().print(render_suggestion(rows, target_share=0.99))  # doctest: +SKIP
    """
    reached = rows[-1].cumulative_share if rows else 0.0
    title = (f"Suggested capture: {len(rows):,} endpoint{'s' * (len(rows) != 1)} cover "
             f"{reached:.1%} of production traffic (target {_pct(target_share)}), "
             f"{sum(r.capture for r in rows):,} exchanges")
    out = Table(title=title, caption=_caption(rows, usage_counts), title_justify="left",
                caption_justify="left")
    show_have = any(r.have for r in rows)
    out.add_column("#", justify="right")
    out.add_column("endpoint", no_wrap=True)
    for name in ("requests", "share", "cumulative", "capture") + ("have", "need") * show_have:
        out.add_column(name, justify="right")
    for i, row in enumerate(rows, 1):
        cells = [str(i), row.endpoint, f"{row.requests:,}", f"{row.share:.1%}",
                 f"{row.cumulative_share:.1%}", f"{row.capture:,}"]
        if show_have:
            cells += [f"{row.have:,}", f"{row.need:,}"]
        out.add_row(*cells)
    return out


def _pct(share: float) -> str:
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _caption(rows: list[SampleRow], usage_counts: Mapping[str, int] | None) -> str:
    notes = ["capture: a share of the budget in proportion to traffic, at least the floor, "
             "at most the endpoint's production requests"]
    if usage_counts is not None:
        chosen = {r.endpoint for r in rows}
        rest = [n for e, n in usage_counts.items() if e not in chosen and n > 0]
        if rest:
            notes.insert(0, f"{len(rest):,} quieter endpoints ({sum(rest):,} requests) left out")
    return "\n".join(notes)
