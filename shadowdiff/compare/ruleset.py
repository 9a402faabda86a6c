"""`Rules`: everything normalize may do to a lifted tree, as one hashable value.

The value is what the configuration builds (shadowdiff.config.rules) and what
`normalize()` compiles once per distinct value into an automaton over locations.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowdiff.compare.rules.masks import Mask
from shadowdiff.compare.rules.tolerance import Tolerance
from shadowdiff.paths import compile_path


#: Headers that change on every response, or that describe transport rather than content.
#: `x-powered-by` is deliberately kept: a platform change is something users care about.
DEFAULT_IGNORE_HEADERS: frozenset[str] = frozenset({
    "date", "server", "via", "x-request-id", "x-correlation-id", "x-amzn-trace-id",
    "traceparent", "tracestate", "x-runtime", "x-response-time", "age", "expires",
    "connection", "keep-alive", "transfer-encoding",
    "content-length",    # a length difference shows in the body anyway
    "content-encoding",  # bodies are decoded before lift
})


#: Headers whose comma-separated values mean the same in any order (RFC 9110).
DEFAULT_HEADER_SETS: frozenset[str] = frozenset({
    "allow", "vary", "access-control-allow-methods", "access-control-allow-headers",
    "access-control-expose-headers",
})


#: The string transforms, in the order they apply; each is a field of Rules.
TEXT_RULES = ("html", "xml", "whitespace_insensitive", "case_insensitive")


@dataclass(frozen=True)
class Rules:
    """Everything normalize does to a tree. Hashable: compiled once per distinct value."""

    ignore_headers: frozenset[str] = DEFAULT_IGNORE_HEADERS
    """Lower-case header names removed from `header`."""
    ignore_paths: tuple[str, ...] = ()
    """Location patterns removed from the tree."""
    masks: tuple[Mask, ...] = ()
    """Masks, applied in order."""
    unordered: tuple[str, ...] = ()
    """Location patterns of lists compared as multisets (sorted canonically)."""
    unordered_keys: tuple[tuple[str, str], ...] = ()
    """(pattern, field): unordered lists of objects, sorted by `field` first."""
    tolerances: tuple[Tolerance, ...] = ()
    """Numeric tolerances (a filter after diff)."""
    case_insensitive: tuple[str, ...] = ()
    """Location patterns of strings compared case-insensitively."""
    whitespace_insensitive: tuple[str, ...] = ()
    """Location patterns of strings whose whitespace runs count as one space."""
    html: tuple[str, ...] = ()
    """Location patterns of strings compared as canonical HTML."""
    xml: tuple[str, ...] = ()
    """Location patterns of strings compared as canonical XML."""
    header_sets: frozenset[str] = DEFAULT_HEADER_SETS
    """Lower-case header names whose comma-separated values are compared as sets."""

    def __post_init__(self) -> None:
        # Config hands over lists and mixed-case names; keep the value hashable and canonical.
        for name in ("ignore_headers", "header_sets"):
            object.__setattr__(self, name, frozenset(h.lower() for h in getattr(self, name)))
        for name in ("ignore_paths", "masks", "unordered", "tolerances") + TEXT_RULES:
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        keyed = self.unordered_keys
        object.__setattr__(self, "unordered_keys", tuple((str(p), str(k)) for p, k in keyed))
        for path in self.ignore_paths + self.unordered + self.text_paths() \
                + tuple(p for p, _ in self.unordered_keys):
            compile_path(path)

    def text_paths(self) -> tuple[str, ...]:
        """Every pattern of the string transforms."""
        return tuple(p for name in TEXT_RULES for p in getattr(self, name))
