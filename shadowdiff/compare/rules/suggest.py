"""Proposed rules from measured noise: `shadowdiff rules suggest RUN_DIR`.

Reads a run's noise.json (noise.py) and writes a TOML fragment of rules for a person to
review and commit. Evidence, strongest first:

1. locations where old disagreed with its replica (measured noise): volatile by definition,
   unless old-vs-new differs there significantly more often (then a rule would hide a change);
2. old-vs-new divergences whose every sampled value, on both sides, looks volatile (matches
   a ready-made mask such as `uuid`, and masking makes the two sides equal).

For each location the narrowest rule that explains its samples is proposed: a set-valued
header, a reordered list, a ready-made mask, case or whitespace, a numeric tolerance, and
only then ignoring the location. Status changes are never proposed for hiding. Each rule
carries a comment with its evidence; a rule proposed for two or more endpoints goes in
`[normalize]`, others in `[[endpoint]]` sections.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shadowdiff.compare.rules.presets import preset
from shadowdiff.compare.rules.text import collapse_whitespace, header_set
from shadowdiff.compare.rules.volatile import mask_name, volatile_pattern
from shadowdiff.compare.texthunks import is_hunk_location

#: Presets tried in this order: the most specific first.
_PRESET_ORDER = ("uuid", "ulid", "jwt", "iso-datetime", "iso-date", "http-date", "unix-time",
                 "hex-token", "ipv4")
_QUOTED = re.compile(r'\["(?:[^"\\]|\\.)*"\]')
#: A numeric tolerance is proposed only when the samples differ by at most this fraction.
_MAX_RELATIVE = 0.05


@dataclass(frozen=True)
class Proposal:
    """One proposed rule: where it goes, what it says, and why."""

    endpoint: str
    key: str        # a rules key: ignore_headers, ignore_paths, masks, unordered, ...
    value: Any      # a string, or a table (dict) for masks and tolerance
    evidence: str


def suggest(record: dict[str, Any]) -> list[Proposal]:
    """Proposals from a noise.json record, one per noisy or volatile-looking location."""
    out: list[Proposal] = []
    seen: set[tuple[str, str]] = set()
    for entry in record.get("noise", []):
        if entry.get("reported"):
            continue  # also a significant old-vs-new divergence: hiding it would hide a change
        measured = max(entry.get("measured", 0), 1)
        why = (f"old vs old replica differed in {entry['old_replica']}/{measured} exchanges"
               f" ({100 * entry['old_replica'] / measured:.0f}%)")
        out += _propose(entry, entry.get("samples", []), why, seen, require_volatile=False)
    for entry in record.get("divergences", []):
        why = (f"old vs new differed in {entry['affected']}/{entry['replayed']} exchanges; "
               "every sampled value looks volatile")
        out += _propose(entry, entry.get("samples", []), why, seen, require_volatile=True)
    return out


def _propose(entry: dict[str, Any], samples: list[list[Any]], why: str,
             seen: set[tuple[str, str]], *, require_volatile: bool) -> list[Proposal]:
    endpoint, location, kind = entry["endpoint"], entry["location"], entry["kind"]
    if (endpoint, location) in seen or kind in ("status_changed", "failure") \
            or location in ("status", "outcome"):
        return []
    rule = _rule_for(location, kind, samples)
    # A learned pattern needs the replica's evidence: old vs new text differing in numbers
    # may be the very change the run is looking for.
    if rule is None or (require_volatile and (rule[0] != "masks" or "pattern" in rule[1])):
        return []
    seen.add((endpoint, location))
    return [Proposal(endpoint, rule[0], rule[1], f"{endpoint} {location}: {why}")]


def _rule_for(location: str, kind: str, samples: list[list[Any]]) -> tuple[str, Any] | None:
    pairs = [p for p in samples if isinstance(p, list) and len(p) == 2]
    if location.startswith("header."):
        name = location[len("header."):]
        if pairs and all(isinstance(a, str) and isinstance(b, str) and header_set(a) == header_set(b)
                         for a, b in pairs):
            return "header_sets", name
        return "ignore_headers", name
    if kind == "order_changed":
        return "unordered", location
    strings = [p for p in pairs if all(isinstance(v, str) for v in p)]
    if pairs and len(strings) == len(pairs) and in_text_body(location):
        return _text_body_rule(location, strings)
    if pairs and len(strings) == len(pairs):
        return _string_rule(location, kind, strings)
    if pairs and all(_number(a) and _number(b) for a, b in pairs):
        gap = max(abs(a - b) / max(abs(a), abs(b), 1e-300) for a, b in pairs)
        if gap <= _MAX_RELATIVE:
            return "tolerance", {"paths": [location], "relative": _round_up(gap)}
    return None if kind == "body_changed" else ("ignore_paths", location)


def _string_rule(location: str, kind: str, pairs: list[list[str]]) -> tuple[str, Any] | None:
    for name in _PRESET_ORDER:
        pattern = preset(name)
        if all(pattern.search(a) and pattern.search(b)
               and pattern.sub("<m>", a) == pattern.sub("<m>", b) for a, b in pairs):
            paths = ["body"] if kind == "body_changed" else [location]
            return "masks", {"name": name, "paths": paths}
    if kind == "body_changed":
        return None  # a whole text body: too much to hide on a guess
    if all(a.casefold() == b.casefold() for a, b in pairs):
        return "case_insensitive", location
    if all(collapse_whitespace(a) == collapse_whitespace(b) for a, b in pairs):
        return "whitespace_insensitive", location
    return "ignore_paths", location


def in_text_body(location: str) -> bool:
    """True for a location inside an HTML, XML or text body (compare/markup.py, texthunks.py):
    an element's text or attribute, or a text hunk. Such a body is one string in the tree."""
    bare = _QUOTED.sub("", location)  # `body["@id"]` is a JSON key (JSON-LD), `p@id` an attribute
    return is_hunk_location(location) or location.startswith(("body.html.", 'body["!doctype"]')) \
        or "@" in bare or (location.startswith("body.") and location.endswith(".text"))


def _text_body_rule(location: str, pairs: list[list[str]]) -> tuple[str, Any] | None:
    """A mask on the whole body: a ready-made one, else one learned from the samples. Paths
    cannot name a node inside a string, so the regex's literal context keeps it narrow.
    The location stays in `paths` too: in a JSON body, `body.note.text` is a real leaf."""
    paths = ["body"] if location.startswith("body.html.") or is_hunk_location(location) \
        else ["body", location]
    for name in _PRESET_ORDER:
        pattern = preset(name)
        if all(pattern.search(a) and pattern.search(b)
               and pattern.sub("<m>", a) == pattern.sub("<m>", b) for a, b in pairs):
            return "masks", {"name": name, "paths": paths}
    learned = volatile_pattern(pairs)
    if learned is None:
        return None  # never ignore the whole body on a guess
    return "masks", {"name": mask_name(learned), "pattern": learned, "paths": paths}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _round_up(gap: float) -> float:
    """Twice the largest gap seen, to two significant digits: room for what was not sampled."""
    return float(f"{max(gap * 2, 1e-6):.2g}")


# -- TOML -----------------------------------------------------------------------------------


def render_toml(proposals: Iterable[Proposal], run_dir: str, source: str | None) -> str:
    """The proposals as a rules file: global where two or more endpoints agree."""
    proposals = list(proposals)
    by_rule: dict[str, set[str]] = defaultdict(set)
    for p in proposals:
        by_rule[_identity(p)].add(p.endpoint)
    sections: dict[str, list[Proposal]] = defaultdict(list)
    for p in proposals:
        sections["" if len(by_rule[_identity(p)]) > 1 else p.endpoint].append(p)
    lines = [f"# Rules proposed by `shadowdiff rules suggest` from the run in {run_dir}",
             f"# (noise measured with: {source or 'nothing: no old replica, values only'}).",
             "# Review each rule before you commit it: every rule hides differences.", ""]
    if not proposals:
        lines.append("# Nothing to propose: no noisy or volatile-looking location was found.")
    if "" in sections:
        lines += ["[normalize]", *_keys(sections.pop("")), ""]
    for endpoint in sorted(sections):
        lines += ["[[endpoint]]", f"match = {_str(endpoint)}", *_keys(sections[endpoint]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _identity(p: Proposal) -> str:
    return p.key + json.dumps(p.value, sort_keys=True)


def _keys(proposals: list[Proposal]) -> list[str]:
    grouped: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for p in proposals:
        grouped[p.key].setdefault(_value(p.value), []).append(p.evidence)
    out = []
    for key in sorted(grouped):
        out.append(f"{key} = [")
        for value, evidence in grouped[key].items():
            out += [f"  # {_comment(e)}" for e in evidence] + [f"  {value},"]
        out.append("]")
    return out


def _value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return _str(str(value))


def _str(text: str) -> str:
    # JSON's escapes are TOML's, except DEL, which TOML wants escaped too
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    # a TOML comment may not hold control characters; captured keys might
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))[:300]


__all__ = ["Proposal", "render_toml", "suggest"]
