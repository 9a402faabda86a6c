"""Markup bodies for the diff stage: HTML and XML parsed into element trees, compared node by node.

    diff.compare() -> a text body -> body_format() -> markup_divergences() -> [(location, kind, old, new)]

A text body compared as one `body` location lets the old replica's per-request mask hide
a whole page because its footer prints a timing. Compared element by element, a location
names the node that changed, so noise masks only that node:

    body.html.body.footer.p[2].text      the text directly inside the third <p> of <footer>
    body.html.head.link[1]@href          an attribute
    body.html.body.main.ul.li[4]         an element present on one side only
    body["!doctype"]                     the document type declaration

A step is the element's name; `[i]` (0-based) is added when the parent has more than one
child of that name, so `[*]` in a signature folds repeated rows into one. A child named
`text` is always indexed, so it cannot be mistaken for the `.text` of its parent. XML keeps
namespaces: names carry their prefix (`body["soap:Envelope"]`), and the URIs an element
declares are compared as `@xmlns:prefix` attributes.

Kinds are JSON's: `value_changed` for text and attribute values, `field_added` /
`field_missing` for elements and attributes on one side only, `order_changed` when a
parent's children are the same elements in another order (at the parent's location).

Canonical as `rules/text.py`'s canonical_html: whitespace collapsed, attribute order and
quoting, character references and comments do not matter. The parser is lxml (libxml2):
forgiving like a browser for HTML, and it keeps namespaces for XML. Measured on a 54 KB page:
lxml 0.9 ms, selectolax (lexbor) 0.5 ms but HTML only, html5lib 28 ms.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any, Union

from lxml import etree

from shadowdiff.compare.markup_lines import LineMap, pair_keys, spans_end, subtree_key, unmatched_keys
from shadowdiff.compare.markup_steps import INDEXED, Steps, name_opcodes
from shadowdiff.compare.rules.text import HTML_MARK, XML_MARK
from shadowdiff.paths import join_attribute, join_location

#: What the differ reports: (location, kind, old, new).
Found = tuple[str, str, Any, Any]

#: Longest text quoted in a divergence, as in diff.py.
MAX_VALUE_CHARS = 500
#: Past this many divergences in one body, only new signatures are still reported, and
#: elements like ones already visited (`tr[*]`) are not descended: a page redesign must not
#: make one exchange carry thousands of divergences, nor cost a second.
MAX_DIVERGENCES = 50  # as many as an example exchange keeps (rank/tally.py)
#: Bodies longer than this are not parsed (libxml2 would, but the diff would cost too much).
MAX_MARKUP_CHARS = 4_000_000

_SPACE = re.compile(r"\s+")
_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)
_XML_START = re.compile(r"\s*<\?xml[\s?]", re.I)
_TAG_START = re.compile(r"\s*<[A-Za-z!?]")
#: (fmt, text, parse_markup's answer, the bytes parsed), oldest first.
_CACHE: list[tuple[str, str, Union[tuple[str, Any], None], bytes]] = []
_CACHE_SIZE = 4  # old is compared with new and then with the replica: keep its parse
# HTML's boolean attributes: `disabled`, `disabled=""` and `disabled="disabled"` are one value.
_BOOLEAN = frozenset({
    "allowfullscreen", "async", "autofocus", "autoplay", "checked", "controls", "default",
    "defer", "disabled", "formnovalidate", "hidden", "inert", "ismap", "itemscope", "loop",
    "multiple", "muted", "nomodule", "novalidate", "open", "playsinline", "readonly",
    "required", "reversed", "selected",
})


def body_format(text: str, content_type: str | None = None) -> str | None:
    """`html`, `xml` or `text` for a text body, from the canonical marker, the content type
    or a look at its start; None for JSON (whose bodies diff.py compares as before).

    >>> body_format("<!DOCTYPE html><p>x"), body_format("a,b\\n1,2", "text/csv")
    ('html', 'text')
    """
    if text.startswith(HTML_MARK):
        return "html"
    if text.startswith(XML_MARK):
        return "xml"
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if "json" in ctype:
        return None
    if ctype in ("text/html", "application/xhtml+xml") or _HTML_START.match(text):
        return "html"
    if ctype.endswith(("/xml", "+xml")) or _XML_START.match(text):
        return "xml"
    if not ctype and _TAG_START.match(text) and text.rstrip().endswith(">"):
        return "html"  # markup of unknown type: the forgiving parser reads HTML and XML
    return "text"


def markup_divergences(old: str, new: str, fmt: str, loc: str = "body") -> list[Found] | None:
    """(location, kind, old, new) per node that differs; None when either side does not parse.

    >>> markup_divergences("<p class=a>Hi</p>", "<p class=b>Hi</p>", "html")
    [('body.html.body.p@class', 'value_changed', 'a', 'b')]
    """
    (old_doc, old_data), (new_doc, new_data) = _parsed(old, fmt), _parsed(new, fmt)
    if old_doc is None or new_doc is None:
        return None
    differ = _Differ(fmt == "xml", LineMap(old_data, new_data))
    if old_doc[0] != new_doc[0]:
        differ.add(join_location(loc, "!doctype"), "value_changed", old_doc[0], new_doc[0])
    o, n = old_doc[1], new_doc[1]
    o_name, n_name = differ.name(o), differ.name(n)
    if o_name != n_name:
        differ.add(join_location(loc, o_name), "field_missing", outer(o), None)
        differ.add(join_location(loc, n_name), "field_added", None, outer(n))
    else:
        differ.node(o, n, join_location(loc, o_name), old.count("\n") + 1)
    return differ.out


def _source(text: str) -> str:
    """The text the parser saw (without a canonical marker line): its lines are sourcelines."""
    return text.split("\n", 1)[1] if text.startswith((HTML_MARK, XML_MARK)) else text


def parse_markup(text: str, fmt: str) -> tuple[str, Any] | None:
    """(doctype, root element) of an HTML or XML text, None if it has no element; cached."""
    return _parsed(text, fmt)[0]


def _parsed(text: str, fmt: str) -> tuple[tuple[str, Any] | None, bytes]:
    """parse_markup's answer and the bytes parsed (the line map's source), cached: old is
    compared with new and then with the replica."""
    for entry in _CACHE:
        # == on two str is a length check, then a memcmp: a dict key would hash each
        # 60 KB body (~0.3 M instructions) on every look-up
        if entry[0] == fmt and entry[1] == text:
            return entry[2], entry[3]
    if len(text) > MAX_MARKUP_CHARS:
        found, data = None, b""
    else:
        # Bytes with the encoding stated: a str carrying an XML encoding declaration is refused.
        data = _source(text).encode("utf-8", "surrogatepass")
        found = _parse(data, fmt)
    if len(_CACHE) >= _CACHE_SIZE:
        del _CACHE[0]
    _CACHE.append((fmt, text, found, data))
    return found, data


def _parse(data: bytes, fmt: str) -> tuple[str, Any] | None:
    try:
        if fmt == "xml":
            # Entities stay unexpanded and nothing is fetched: captured bodies are untrusted.
            parser = etree.XMLParser(encoding="utf-8", recover=True, resolve_entities=False,
                                     no_network=True, load_dtd=False)
            root = etree.fromstring(data, parser)
        else:
            # etree's own HTML parser: lxml.html's element classes cost a look-up per access
            # collect_ids=False: no id hash table (ids stay attributes): ~15% of a parse
            root = etree.fromstring(data, etree.HTMLParser(encoding="utf-8", remove_comments=True,
                                                           remove_pis=True, no_network=True,
                                                           collect_ids=False))
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    if root is None:
        return None
    doctype = root.getroottree().docinfo.doctype or ""
    return (_SPACE.sub(" ", doctype).lower() if fmt == "html" else doctype), root


def _elements(el: Any) -> list[Any]:
    """Child elements, not comments, PIs or entities (filtered in C)."""
    return list(el.iterchildren(etree.Element))


def _raw_text(el: Any) -> list[str | None]:
    """The pieces `_text` joins and collapses, as parsed: equal pieces, equal text."""
    return [el.text, *[c.tail for c in el]]


def _collapse(text: str | None) -> str:
    """A leaf's `_text`: its own text, collapsed."""
    return _SPACE.sub(" ", text).strip() if text else ""


def _text(el: Any) -> str:
    """The text directly inside an element (its own and its children's tails), collapsed."""
    texts = [el.text] if el.text else []
    texts += [c.tail for c in el if c.tail]
    return _SPACE.sub(" ", " ".join(texts)).strip() if texts else ""


class _Differ:
    """Collects the differences of two element trees while descending both."""

    __slots__ = ("out", "xml", "lines", "_seen", "_visited")

    def __init__(self, xml: bool, lines: LineMap) -> None:
        self.out: list[Found] = []
        self.xml = xml
        self.lines = lines
        self._seen: set[tuple[str, str]] = set()
        self._visited: set[str] = set()  # element locations descended, indices folded

    def add(self, location: str, kind: str, old: Any, new: Any) -> None:
        signature = (INDEXED.sub("[*]", location), kind)
        if len(self.out) >= MAX_DIVERGENCES and signature in self._seen:
            return
        self._seen.add(signature)
        self.out.append((location, kind, old, new))

    def name(self, el: Any) -> str:
        if not self.xml:
            return str(el.tag)
        local = el.tag.rsplit("}", 1)[-1]
        return f"{el.prefix}:{local}" if el.prefix else local

    def attributes_of(self, el: Any) -> dict[str, str]:
        if not self.xml:
            return {str(k): "" if k in _BOOLEAN and (v or k) == k else v or ""
                    for k, v in el.items()}
        return _xml_attributes(el)

    def pruned(self, folded: str) -> bool:
        """Past the cap, another element like one already descended is not visited again."""
        return len(self.out) >= MAX_DIVERGENCES and folded in self._visited

    def node(self, o: Any, n: Any, loc: str, o_end: int | None = None,
             folded: str | None = None) -> None:
        """Two elements of the same name; reports what differs in and below them.
        `o_end` is the last source line of old's element, when known; `folded`, its location
        with indices folded, when the caller has it."""
        if folded is None:
            folded = INDEXED.sub("[*]", loc)
        if self.pruned(folded):
            return  # past the cap, another row like one already seen: bounded work
        self._visited.add(folded)
        # Equal as parsed is equal canonically: the canonical forms are made only for a
        # difference (XML's also depend on the namespaces in scope, so always made there).
        if self.xml or o.items() != n.items():
            o_attrs, n_attrs = self.attributes_of(o), self.attributes_of(n)
            if o_attrs != n_attrs:
                self.attributes(o_attrs, n_attrs, loc)
        if not len(o) and not len(n):  # two leaves (most nodes): their text is all there is
            o_text, n_text = o.text, n.text
            if o_text != n_text:
                self.texts(_collapse(o_text), _collapse(n_text), loc)
            return
        if self.xml:
            if _raw_text(o) != _raw_text(n):
                self.text(o, n, loc)
            o_kids, n_kids = _elements(o), _elements(n)
        else:  # the HTML parser keeps no comments or PIs: every child is an element, and
            # one list of them serves both the text check and the descent (an lxml proxy
            # made once, not twice)
            o_kids, n_kids = list(o), list(n)
            if o.text != n.text or [c.tail for c in o_kids] != [c.tail for c in n_kids]:
                self.text(o, n, loc)
        if o_kids or n_kids:
            self.children(o_kids, n_kids, loc, o_end)

    def text(self, o: Any, n: Any, loc: str) -> None:
        """The text directly inside two elements, compared collapsed."""
        self.texts(_text(o), _text(n), loc)

    def texts(self, o_text: str, n_text: str, loc: str) -> None:
        if o_text != n_text:
            self.add(join_location(loc, "text"), "value_changed", _cut(o_text), _cut(n_text))

    def attributes(self, o: dict[str, str], n: dict[str, str], loc: str) -> None:
        for name, value in o.items():
            if name not in n:
                self.add(join_attribute(loc, name), "field_missing", _cut(value), None)
            elif n[name] != value:
                self.add(join_attribute(loc, name), "value_changed", _cut(value), _cut(n[name]))
        for name, value in n.items():
            if name not in o:
                self.add(join_attribute(loc, name), "field_added", None, _cut(value))

    def children(self, o: list[Any], n: list[Any], loc: str, o_end: int | None) -> None:
        if self.xml:
            o_names, n_names = [self.name(c) for c in o], [self.name(c) for c in n]
        else:  # an HTML name is the tag as parsed
            o_names, n_names = [c.tag for c in o], [c.tag for c in n]
        if o_names == n_names:
            self.in_place(o, n, loc, (Steps(o_names, loc), o_names), o_end)
            return
        self.aligned(o, n, (o_names, n_names), (Steps(o_names, loc), Steps(n_names, loc)))

    def in_place(self, o: list[Any], n: list[Any], loc: str,
                 steps_names: tuple[Steps, list[str]], o_end: int | None) -> None:
        """Children with the same names in the same order: the common case of a change.
        Unchanged source lines settle most pairs; a serialization settles the rest.
        `o_end`: the last source line of their old parent, when known."""
        steps, names = steps_names
        # Each child's first line, read once (an lxml attribute read costs more than a
        # Python call): a child's span ends where its next sibling starts.
        starts, n_starts = [c.sourceline for c in o], [c.sourceline for c in n]
        ends = spans_end(starts, o_end)
        maybe = self.lines.changed(starts, n_starts, ends)
        # Descending is cheaper than serializing (lines prune the walk below), so serialize
        # only where a reordering is possible: two children of one name, or more children.
        swap = len(maybe) == 2 and names[maybe[0]] == names[maybe[1]]
        keys = self.keys(o, n, maybe) if len(maybe) > 2 or swap else {}
        if keys is None:  # no child's text is on the other side: all differ, none moved
            differing = maybe
            if len(differing) > 2:  # what aligned() makes of keys that are all unmatched
                if len(maybe) == len(o):
                    self.run(o, n, (names, names), (steps, steps), (0, len(o), 0, len(n)))
                else:
                    self.aligned(o, n, (names, names), (steps, steps), unmatched_keys(maybe))
                return
        else:
            differing = [i for i in maybe if i not in keys or keys[i][0] != keys[i][1]]
            if len(differing) > 1 and keys and Counter(keys[i][0] for i in differing) \
                    == Counter(keys[i][1] for i in differing):
                self.add(loc, "order_changed", _labels(names, o), _labels(names, n))
                return
            if len(differing) > 2:  # maybe a row removed here and one added there: align them
                self.aligned(o, n, (names, names), (steps, steps), keys)
                return
        for i in differing:
            folded = steps.folded(i)
            if not self.pruned(folded):
                self.node(o[i], n[i], steps[i], ends[i], folded)

    def keys(self, o: list[Any], n: list[Any], at: list[int]) -> dict[int, tuple[Any, Any]] | None:
        """pair_keys, but HTML leaves (a row's cells) compared in place first, and keyed only
        if two or more differ: the keys then serve the reorder check and the alignment; else
        only to tell which differ, and a mark (0, 0) equal, (0, 1) not, does that. Same cells
        differ either way: a leaf's key is its tag (the same: same names), attributes, text."""
        if not self.xml:
            marks: dict[int, tuple[Any, Any]] = {}
            differing = 0
            for i in at:
                a, b = o[i], n[i]
                if len(a) or len(b):
                    break
                if a.text == b.text and a.items() == b.items():
                    marks[i] = (0, 0)
                else:
                    marks[i] = (0, 1)
                    differing += 1
            else:
                if differing < 2:
                    return marks
        return pair_keys(o, n, at, self.xml)

    def aligned(self, o: list[Any], n: list[Any], names: tuple[list[str], list[str]],
                steps: tuple[Steps, Steps], known: dict[int, tuple[Any, Any]] | None = None) -> None:
        """Children whose names differ: aligned by equal subtrees, then paired by name.
        `known`: keys already made, by position (old, new)."""
        known = known or {}
        o_keys = [known[i][0] if i in known else subtree_key(c, self.xml) for i, c in enumerate(o)]
        n_keys = [known[j][1] if j in known else subtree_key(c, self.xml) for j, c in enumerate(n)]
        o_names, n_names = names
        o_steps, n_steps = steps
        # Align equal subtrees first, like lines in a text diff: an inserted row must not
        # make every row after it look changed.
        if set(o_keys).isdisjoint(n_keys):  # nothing to align on: one replaced run
            opcodes = [("replace", 0, len(o), 0, len(n))]
        else:
            opcodes = difflib.SequenceMatcher(None, o_keys, n_keys, autojunk=False).get_opcodes()
        for tag, i1, i2, j1, j2 in opcodes:
            if tag != "equal":
                self.run(o, n, (o_names, n_names), (o_steps, n_steps), (i1, i2, j1, j2))

    def run(self, o: list[Any], n: list[Any], names: tuple[list[str], list[str]],
            steps: tuple[Steps, Steps], span: tuple[int, int, int, int]) -> None:
        """A replaced run of children: pair them by name, the rest is missing or added."""
        a, b, c, d = span
        for tag, i1, i2, j1, j2 in name_opcodes(names[0][a:b], names[1][c:d]):
            if tag == "equal":
                self.pairs(o, n, steps[0], (a + i1, a + i2, c + j1))
                continue
            for i in range(a + i1, a + i2):
                self.add(steps[0][i], "field_missing", outer(o[i]), None)
            for j in range(c + j1, c + j2):
                self.add(steps[1][j], "field_added", None, outer(n[j]))

    def pairs(self, o: list[Any], n: list[Any], steps: Steps, span: tuple[int, int, int]) -> None:
        """Old children i1..i2 paired in order with new ones from j1, all of the same names.
        Past the cap, rows like ones already visited are passed over by name: a name once
        pruned stays pruned (divergences and visited locations only grow)."""
        i1, i2, j1 = span
        pruned: set[str] = set()
        names = 0  # how many names the span has, counted when one is first pruned
        for i in range(i1, i2):
            name = steps.names[i]
            if name in pruned:
                continue
            folded = steps.folded(i)
            if self.pruned(folded):
                pruned.add(name)
                names = names or len(set(steps.names[i1:i2]))
                if len(pruned) == names:
                    break  # every row left bears a pruned name: 400 rows not looped over
                continue
            self.node(o[i], n[j1 + i - i1], steps[i], None, folded)


def _xml_attributes(el: Any) -> dict[str, str]:
    ns = el.nsmap
    parent = el.getparent()
    parent_ns = parent.nsmap if parent is not None else {}
    prefixes = {uri: p for p, uri in ns.items() if p}
    attrs = {}
    for name, value in el.items():
        if name.startswith("{"):
            uri, local = name[1:].split("}", 1)
            name = f"{prefixes[uri]}:{local}" if uri in prefixes else name
        attrs[name] = value
    # Declarations are where an element's namespaces come from: compare them as attributes.
    for prefix, uri in ns.items():
        if parent_ns.get(prefix) != uri:
            attrs[f"xmlns:{prefix}" if prefix else "xmlns"] = uri
    return attrs


def outer(el: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """An element as markup (without its tail), cut at `limit` characters.

    >>> outer(parse_markup("<p class=x>Hi</p>", "html")[1][0][0])
    '<p class="x">Hi</p>'
    """
    return _cut(etree.tostring(el, with_tail=False, encoding="unicode"), limit)


def _labels(names: list[str], children: list[Any]) -> list[str]:
    """Short labels of children, for an order_changed: name and the start of its text."""
    labels = []
    for name, child in zip(names[:20], children):
        text = " ".join(child.itertext())[:40].strip()
        labels.append(f"{name}: {_SPACE.sub(' ', text)}" if text else name)
    return labels + ([f"... ({len(children) - 20} more)"] if len(children) > 20 else [])


def _cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars]"


__all__ = ["Found", "body_format", "markup_divergences", "outer", "parse_markup"]
