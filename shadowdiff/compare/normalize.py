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
- `unordered_keys`: (path, field) pairs: like `unordered`, but elements are sorted by the
  value of `field` first, so the elements with the same key face each other in the diff
  (a changed price shows at that item, not as a reshuffled list).
- `html`, `xml`, `whitespace_insensitive`, `case_insensitive`: string transforms
  (rules/text.py) applied, in that order, to string leaves at matching locations, before
  the masks.
- `header_sets`: header names whose comma-separated values are compared as sets.
- `tolerances`: numeric tolerance; not a tree rewrite but a filter on the diff's output
  (rules/tolerance.py), carried here so every rule lives in one value.

The root of the tree is not a location: `**` alone matches every location but never the
tree itself.

Rules compile once (cached per `Rules` value) into a lazily built automaton whose states
know which actions apply and whether anything below them can still match, so the walk
skips every subtree no rule can reach.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from typing import Any, Callable, TypeVar

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
from shadowdiff.compare.rules.masks import Mask
from shadowdiff.compare.rules.masks import mask_text as _mask
from shadowdiff.compare.rules.order import canonical_keys
from shadowdiff.compare.rules.order import sorted_canonically as _sorted_canonically
from shadowdiff.compare.rules.text import (
    RESERVED_NAMES,
    canonical_html,
    canonical_xml,
    collapse_whitespace,
    fold_case,
    header_set,
)
from shadowdiff.compare.rules.tolerance import Tolerance
from shadowdiff.compare.ruleset import TEXT_RULES, DEFAULT_HEADER_SETS, DEFAULT_IGNORE_HEADERS, Rules

__all__ = ["DEFAULT_HEADER_SETS", "DEFAULT_IGNORE_HEADERS", "IGNORED", "Mask", "Rules", "Tolerance",
           "canonical_keys", "normalize"]



#: What an ignored list element is replaced by.
IGNORED = "<ignored>"

_SCALARS = frozenset({int, float, bool, type(None)})

class _State:
    """A set of (rule, position) pairs: what applies here and what can match below."""

    __slots__ = ("nfa", "dead", "ignore", "masks", "search", "unordered", "unordered_key",
                 "rewrite", "descends", "only_keys", "cache", "auto", "_masks_everywhere")

    def __init__(self, auto: _Automaton, nfa: frozenset[tuple[int, int]], root: bool = False):
        self.auto = auto
        self.nfa = nfa
        self.dead = not nfa
        self.cache: dict[Any, _State] = {}
        done = set() if root else {r for r, i in nfa if i == len(auto.steps[r])}
        actions = [auto.actions[r] for r in sorted(done)]
        self.ignore = ("ignore", None) in actions
        keys = [arg for kind, arg in actions if kind == "unordered"]
        self.unordered = bool(keys)
        # A keyed rule wins over a plain one: it sorts the same multiset, only better aligned.
        self.unordered_key: str | None = next((k for k in keys if k is not None), None)
        mask_ids = sorted({arg for kind, arg in actions if kind == "mask"})
        self.masks: tuple[Mask, ...] = tuple(auto.masks[m] for m in mask_ids)
        # A cheap first look at a string: does any mask of this location match it at all?
        self.search: Callable[[str], Any] | None = None
        if len(self.masks) == 1:
            self.search = self.masks[0].pattern.search
        elif self.masks:
            searches = [m.pattern.search for m in self.masks]
            self.search = lambda text: any(search(text) for search in searches)
        texts = {arg for kind, arg in actions if kind == "text"}
        self.rewrite = auto.rewriter(tuple(t for t in TEXT_RULES if t in texts), self) \
            if texts else None
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
            self._masks_everywhere = bool(self.masks) and not (
                self.ignore or self.unordered or self.rewrite) and self.auto.is_uniform(self)
        return self._masks_everywhere


Action = tuple[str, Any]  # ("ignore", None) | ("mask", index) | ("unordered", key) | ("text", name)


class _Automaton:
    """Rules compiled: every location pattern, its action, and the interned states."""

    def __init__(self, rules: Rules) -> None:
        self.steps: list[tuple[Step, ...]] = []
        self.actions: list[Action] = []
        for path in rules.ignore_paths:
            self._add(path, ("ignore", None))
        for index, mask in enumerate(rules.masks):
            for path in mask.paths:
                self._add(path, ("mask", index))
        for path in rules.unordered:
            self._add(path, ("unordered", None))
        for path, key in rules.unordered_keys:
            self._add(path, ("unordered", key))
        for name in TEXT_RULES:
            for path in getattr(rules, name):
                self._add(path, ("text", name))
        self.masks = rules.masks
        self.ignore_headers = rules.ignore_headers
        self.header_sets = rules.header_sets
        names = "|".join(re.escape(n) for n in (*(m.name for m in rules.masks), *RESERVED_NAMES))
        self.placeholders = re.compile(f"(<(?:{names})>)")
        self.states: dict[frozenset[tuple[int, int]], _State] = {}
        start = frozenset((r, i) for r in range(len(self.steps)) for i in closure(self.steps[r], {0}))
        self.root = _State(self, start, root=True)

    def _add(self, path: str, action: Action) -> None:
        self.steps.append(compile_path(path).steps)
        self.actions.append(action)

    def rewriter(self, texts: tuple[str, ...], state: _State) -> Callable[[str], str]:
        """The string function of a state with transforms: transforms first, then masks."""
        placeholders = self.placeholders
        fns: list[Callable[[str], str]] = [_TRANSFORMS[t] for t in texts if t in _TRANSFORMS]
        if "case_insensitive" in texts:
            fns.append(lambda text: fold_case(text, placeholders))

        def rewrite(text: str) -> str:
            for fn in fns:
                text = fn(text)
            if state.search is not None and state.search(text):
                text = _mask(text, state.masks, placeholders)
            return text
        return rewrite

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


_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "html": canonical_html, "xml": canonical_xml, "whitespace_insensitive": collapse_whitespace,
}


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
    sets: dict[Any, str] = {}
    if (auto.ignore_headers or auto.header_sets) and type(tree) is dict:
        headers = tree.get("header")
        if isinstance(headers, dict):
            kept, sets = _headers(headers, auto)
            if kept is not headers:
                tree = {**tree, "header": kept}
    out = deep_call(_walk, tree, auto.root)
    if sets:
        # A set-valued header is the set of its own tokens: other string rules would make
        # the sorted form depend on what they rewrote, and normalizing twice would differ.
        out = {**out, "header": {**out["header"], **sets}}
    return out


def _headers(headers: dict[Any, Any], auto: _Automaton) -> tuple[dict[Any, Any], dict[Any, str]]:
    """Headers without the ignored ones (the same dict if none), and the set-valued ones."""
    ignore, names = auto.ignore_headers, auto.header_sets
    kept: dict[Any, Any] | None = None
    sets: dict[Any, str] = {}
    for key, value in headers.items():
        name = key.lower() if isinstance(key, str) else None
        if name in ignore:
            kept = dict(headers) if kept is None else kept
            del kept[key]
        elif name in names and isinstance(value, str):
            sets[key] = header_set(value)
    return (headers if kept is None else kept), sets


def _walk(value: Any, state: _State) -> Any:
    if isinstance(value, str):
        if state.rewrite is not None:
            return state.rewrite(value)
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
        if kind is str and child.rewrite is None:  # inline the commonest case of `_walk`
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
            elif type(item) is str and child.rewrite is None:  # inline the commonest case
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
    return _sorted_canonically(result, state.unordered_key) if state.unordered else result


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


T = TypeVar("T")


def deep_call(fn: Callable[..., T], *args: Any) -> T:
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
