"""Which rules apply to an endpoint: the global rules merged with every `[[endpoint]]`
section whose `match` fits the endpoint's template.

The judge asks a `RuleSource` (the run's Config is one) for an endpoint's rules; it never
needs the rest of the configuration.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from shadowdiff.compare.ruleset import Rules


@dataclass(frozen=True)
class EndpointRules:
    """Extra rules for the endpoints whose template matches `match`."""

    match: str
    rules: Rules


class RuleSource(Protocol):
    """What the judge needs of a configuration."""

    def rules_for(self, endpoint: str) -> Rules:
        """The rules that apply to `endpoint`."""
        ...


@lru_cache(maxsize=4096)
def rules_for(rules: Rules, sections: tuple[EndpointRules, ...], endpoint: str) -> Rules:
    """`rules` merged with every section that matches `endpoint` (cached: called per pair)."""
    for section in sections:
        if _endpoint_matches(section.match, endpoint):
            rules = merge_rules(rules, section.rules)
    return rules


def merge_rules(base: Rules, extra: Rules) -> Rules:
    """`base` plus `extra`: name sets are united, pattern lists appended."""
    values = {}
    for f in dataclasses.fields(Rules):
        a, b = getattr(base, f.name), getattr(extra, f.name)
        values[f.name] = a | b if isinstance(a, frozenset) else a + b
    return Rules(**values)


def _endpoint_matches(match: str, endpoint: str) -> bool:
    """`GET /users/{id}` matches exactly; `*` is a wildcard; a bare path matches any method."""
    if " " not in match:
        match = "* " + match
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", match))
    return re.fullmatch(regex, endpoint) is not None
