"""Normalize: the stage between lift and diff.

    lift() -> Tree -> normalize(tree, rules) -> Tree -> compare()

Both the old and the new tree go through the same `Rules`, so whatever the rules remove or
mask can no longer show up as a divergence. The functions here are pure: the input tree is
never mutated, and subtrees no rule touches are returned as the very same objects (copy on
write), so a tree with nothing to normalize costs a few dictionary look-ups.

Rules name locations with path patterns (docs/ARCHITECTURE.md, "The lifted tree"):

    body.items[3].price      a concrete location
    body.items[*].id         `[*]` any list index
    header.*                 `*` any one step (a key or an index)
    body.**.created_at       `**` zero or more steps

What each rule does:

- `ignore_headers`: header names dropped from `tree["header"]` (case-insensitive).
- `ignore_paths`: matching dict entries are deleted; a matching list element is replaced by
  `"<ignored>"` instead, so the indices (and the locations) of its siblings stay put and
  normalizing twice gives the same tree.
- `masks`: in string leaves at matching locations, every non-empty match of the regex is
  replaced by `<name>`. Text already in the form `<name>` (of any mask) is left alone, and
  masking repeats until nothing changes, which makes it idempotent even for patterns whose
  matches depend on context.
- `unordered`: matching lists are sorted by a canonical key (sorted-keys JSON of the
  normalized element). Inside such a list positions mean nothing, so literal indices
  (`[3]`) do not match its elements; only `[*]`, `*` and `**` do.

The root of the tree is not a location: `**` alone matches every location but never the
tree itself.

Rules compile once (cached per `Rules` value) into a lazily built automaton whose states
know which actions apply and whether anything below them can still match, so the walk
skips every subtree no rule can reach.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, TypeVar

import orjson

from shadowdiff.paths import (
    ANY_POSITION,
    KEY,
    POS,
    Probe,
    Step,
    advance,
    closure,
    compile_path,
)

#: Headers that change on every response, or that describe transport rather than content.
#: `x-powered-by` is deliberately kept: a platform change is something users care about.
DEFAULT_IGNORE_HEADERS: frozenset[str] = frozenset({
    "date", "server", "via", "x-request-id", "x-correlation-id", "x-amzn-trace-id",
    "traceparent", "tracestate", "x-runtime", "x-response-time", "age", "expires",
    "connection", "keep-alive", "transfer-encoding",
    "content-length",    # a length difference shows in the body anyway
    "content-encoding",  # bodies are decoded before lift
})

#: What an ignored list element is replaced by.
IGNORED = "<ignored>"

_SCALARS = frozenset({int, float, bool, type(None)})

# -- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mask:
    """Replace what `pattern` matches in string leaves at `paths` by `<name>`."""

    name: str
    """Label; a match is replaced by f"<{name}>"."""
    pattern: re.Pattern[str]
    """The regex; a string is compiled."""
    paths: tuple[str, ...] = ("body", "body.**", "header.*")
    """Location patterns the mask applies to."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a mask needs a non-empty name")
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", re.compile(self.pattern))
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        for path in paths:
            compile_path(path)
        object.__setattr__(self, "paths", paths)


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

    def __post_init__(self) -> None:
        # Config hands over lists and mixed-case names; keep the value hashable and canonical.
        object.__setattr__(self, "ignore_headers", frozenset(h.lower() for h in self.ignore_headers))
        for name in ("ignore_paths", "masks", "unordered"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        for path in self.ignore_paths + self.unordered:
            compile_path(path)


class _State:
    """A set of (rule, position) pairs: what applies here and what can match below."""

    __slots__ = ("nfa", "dead", "ignore", "masks", "search", "unordered", "descends",
                 "only_keys", "cache", "auto", "_masks_everywhere")

    def __init__(self, auto: _Automaton, nfa: frozenset[tuple[int, int]], root: bool = False):
        self.auto = auto
        self.nfa = nfa
        self.dead = not nfa
        self.cache: dict[Any, _State] = {}
        done = set() if root else {r for r, i in nfa if i == len(auto.steps[r])}
        actions = [auto.actions[r] for r in sorted(done)]
        self.ignore = "ignore" in actions
        self.unordered = "unordered" in actions
        mask_ids = sorted({a for a in actions if isinstance(a, int)})
        self.masks: tuple[Mask, ...] = tuple(auto.masks[m] for m in mask_ids)
        # A cheap first look at a string: does any mask of this location match it at all?
        self.search: Callable[[str], Any] | None = None
        if len(self.masks) == 1:
            self.search = self.masks[0].pattern.search
        elif self.masks:
            searches = [m.pattern.search for m in self.masks]
            self.search = lambda text: any(search(text) for search in searches)
        pending = [auto.steps[r][i] for r, i in nfa if i < len(auto.steps[r])]
        self.descends = bool(pending)
        # When every continuation is a literal key or index, visit just those children.
        literal = all(kind in (KEY, POS) for kind, _ in pending)
        self.only_keys = tuple(dict.fromkeys(v for _, v in pending)) if literal else None
        self._masks_everywhere: bool | None = None

    def child(self, key: Any) -> _State:
        state = self.cache.get(key)
        if state is None:
            state = self.auto.transition(self, key)
            if len(self.cache) < 4096:  # keys like ids in a map would grow it without bound
                self.cache[key] = state
        return state

    def masks_everywhere(self) -> bool:
        """True when every location below is this same state, which only masks (`body.**`)."""
        if self._masks_everywhere is None:
            self._masks_everywhere = bool(self.masks) and not (self.ignore or self.unordered) \
                and self.auto.is_uniform(self)
        return self._masks_everywhere


class _Automaton:
    """Rules compiled: every location pattern, its action, and the interned states."""

    def __init__(self, rules: Rules) -> None:
        self.steps: list[tuple[Step, ...]] = []
        self.actions: list[str | int] = []  # "ignore", "unordered" or a mask index
        for path in rules.ignore_paths:
            self._add(path, "ignore")
        for index, mask in enumerate(rules.masks):
            for path in mask.paths:
                self._add(path, index)
        for path in rules.unordered:
            self._add(path, "unordered")
        self.masks = rules.masks
        self.ignore_headers = rules.ignore_headers
        names = "|".join(re.escape(m.name) for m in rules.masks) or "(?!)"
        self.placeholders = re.compile(f"(<(?:{names})>)")
        self.states: dict[frozenset[tuple[int, int]], _State] = {}
        start = frozenset((r, i) for r in range(len(self.steps)) for i in closure(self.steps[r], {0}))
        self.root = _State(self, start, root=True)

    def _add(self, path: str, action: str | int) -> None:
        self.steps.append(compile_path(path).steps)
        self.actions.append(action)

    def is_uniform(self, state: _State) -> bool:
        """True when every key leads from `state` back to `state` itself."""
        # Probes: a key and an index no literal step can name, and an unordered position.
        # Any literal key leads to at least what the probes lead to, plus the successors
        # of the literal steps that name it; those must be in the state already.
        for probe in (Probe(), -1, ANY_POSITION):
            if self.transition(state, probe) is not state:
                return False
        for r, i in state.nfa:
            steps = self.steps[r]
            if i < len(steps) and steps[i][0] in (KEY, POS):
                if any((r, j) not in state.nfa for j in closure(steps, {i + 1})):
                    return False
        return True

    def transition(self, state: _State, key: Any) -> _State:
        nfa: set[tuple[int, int]] = set()
        for r, i in state.nfa:
            steps = self.steps[r]
            nfa.update((r, j) for j in closure(steps, advance(steps, i, key)))
        frozen = frozenset(nfa)
        found = self.states.get(frozen)
        if found is None:
            found = self.states[frozen] = _State(self, frozen)
        return found


_LAST: list[tuple[Rules, _Automaton]] = []


def _automaton(rules: Rules) -> _Automaton:
    # An identity check first: a run normalizes millions of trees with one Rules object.
    last = _LAST[0] if _LAST else None
    if last is not None and last[0] is rules:
        return last[1]
    auto = _automaton_for(rules)
    _LAST[:] = [(rules, auto)]
    return auto


@lru_cache(maxsize=64)
def _automaton_for(rules: Rules) -> _Automaton:
    return _Automaton(rules)


# -- the walk --------------------------------------------------------------------------------


def normalize(tree: dict[str, Any], rules: Rules) -> dict[str, Any]:
    """Apply `rules` to a lifted tree; return a normalized tree, never mutating the input.

    >>> normalize({"status": 200, "header": {"date": "x"}, "body": {"id": 7}},
    ...           Rules(ignore_paths=("body.id",)))
    {'status': 200, 'header': {}, 'body': {}}
    """
    auto = _automaton(rules)
    if auto.ignore_headers and type(tree) is dict:
        headers = tree.get("header")
        if isinstance(headers, dict):
            kept = {k: v for k, v in headers.items()
                    if not (isinstance(k, str) and k.lower() in auto.ignore_headers)}
            if len(kept) != len(headers):
                tree = {**tree, "header": kept}
    return _deep_call(_walk, tree, auto.root)


def _walk(value: Any, state: _State) -> Any:
    if isinstance(value, str):
        if state.search is None or not state.search(value):
            return value
        return _mask(value, state.masks, state.auto.placeholders)
    if isinstance(value, dict):
        if not state.descends:
            return value
        if state.masks and state.masks_everywhere():
            return _mask_all(value, state)
        return _walk_dict(value, state)
    if isinstance(value, list) and (state.descends or state.unordered):
        if state.masks and state.masks_everywhere():
            return _mask_all(value, state)
        return _walk_list(value, state)
    return value


def _walk_dict(value: dict[Any, Any], state: _State) -> dict[Any, Any]:
    out: dict[Any, Any] | None = None
    cache = state.cache
    keys = value.keys() if state.only_keys is None else [k for k in state.only_keys if k in value]
    for key in keys:
        child = cache.get(key) or state.child(key)
        if child.dead:
            continue
        if child.ignore:
            if out is None:
                out = dict(value)
            del out[key]
            continue
        item = value[key]
        kind = type(item)
        if kind in _SCALARS:
            continue  # rules only ever change strings and containers
        if kind is str:  # inline the commonest case of `_walk`
            if child.search is None or not child.search(item):
                continue
            new = _mask(item, child.masks, state.auto.placeholders)
        else:
            new = _walk(item, child)
        if new is not item:
            if out is None:
                out = dict(value)
            out[key] = new
    return value if out is None else out


def _walk_list(value: list[Any], state: _State) -> list[Any]:
    out: list[Any] | None = None
    if state.descends:
        shared = state.child(ANY_POSITION) if state.unordered else None
        indices: Any = range(len(value))
        if shared is None and state.only_keys is not None:
            indices = [i for i in state.only_keys if type(i) is int and i < len(value)]
        cache = state.cache
        for index in indices:
            child = shared or cache.get(index) or state.child(index)
            if child.dead:
                continue
            item = value[index]
            if child.ignore:
                new = IGNORED
            elif type(item) is str:  # inline the commonest case of `_walk`
                if child.search is None or not child.search(item):
                    continue
                new = _mask(item, child.masks, state.auto.placeholders)
            else:
                new = _walk(item, child)
            if new is not item:
                if out is None:
                    out = list(value)
                out[index] = new
    result = value if out is None else out
    return _sorted_canonically(result) if state.unordered else result


def _mask_all(value: dict[Any, Any] | list[Any], state: _State) -> Any:
    """The walk below a state every location shares (`body.**`): mask every string leaf.

    The hot loop of a typical rule set, so it avoids a call per leaf.
    """
    masks, placeholders = state.masks, state.auto.placeholders
    search = state.search or bool  # a state with masks always has a search

    def walk(node: Any) -> Any:
        out: Any = None
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in pairs:
            kind = type(item)
            if kind in _SCALARS:
                continue
            if kind is str or isinstance(item, str):
                if not search(item):
                    continue
                new = _mask(item, masks, placeholders)
            elif isinstance(item, (dict, list)):
                new = walk(item)
            else:
                continue
            if new is not item:
                if out is None:
                    out = dict(node) if isinstance(node, dict) else list(node)
                out[key] = new
        return node if out is None else out

    return walk(value)


def _sorted_canonically(items: list[Any]) -> list[Any]:
    if len(items) < 2:
        return items
    kinds = {type(item) for item in items}
    if kinds == {str} or kinds == {int}:
        # Lists of plain names or ids: their own order is canonical, and cheaper.
        ordered = sorted(items)
        return items if ordered == items else ordered
    keys = canonical_keys(items)
    order = sorted(range(len(items)), key=keys.__getitem__)
    if all(i == j for i, j in enumerate(order)):
        return items
    return [items[i] for i in order]


def canonical_keys(items: list[Any]) -> list[bytes]:
    """One sort key per JSON value: equal values get equal keys, whatever their dict order."""
    return [_canonical(item) for item in items]


def _canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, ValueError, RecursionError):
        pass  # huge ints, lone surrogates, non-str keys, nesting beyond orjson's limit
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text.encode("utf-8", "backslashreplace")


def _mask(text: str, masks: tuple[Mask, ...], placeholders: re.Pattern[str]) -> str:
    split = placeholders.split
    # Each pass that changes anything turns at least one unmasked character into a
    # placeholder, so this ends; running to the fixed point is what makes it idempotent.
    while True:
        new = text
        for mask in masks:
            parts = split(new)
            sub = mask.pattern.sub
            repl = _replacement(mask.name)
            parts[::2] = [sub(repl, part) if part else part for part in parts[::2]]
            new = "".join(parts)
        if new == text:
            return text
        text = new


@lru_cache(maxsize=256)
def _replacement(name: str) -> Callable[[re.Match[str]], str]:
    placeholder = f"<{name}>"
    # An empty match would insert placeholders between characters: leave it alone.
    return lambda m: placeholder if m.end() > m.start() else ""


T = TypeVar("T")


def _deep_call(fn: Callable[..., T], *args: Any) -> T:
    """Call a recursive walker; retry with a higher recursion limit for deeply nested trees."""
    try:
        return fn(*args)
    except RecursionError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))
        try:
            return fn(*args)
        finally:
            sys.setrecursionlimit(limit)
