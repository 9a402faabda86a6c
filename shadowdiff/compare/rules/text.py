"""String transforms that normalize applies before masks: HTML, XML, whitespace, case.

Each is pure, total (never raises: text that does not parse is left as it is) and
idempotent. The canonical HTML and XML forms start with a marker line (`<canonical-html>`,
`<canonical-xml>`) that masks treat like a placeholder: text that carries it is already
canonical, so a second pass leaves it alone even after masks have replaced parts of it.
The forms put one node per line, so a text diff (and the old replica's line mask) points
at the node that changed rather than at the whole page.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

HTML_MARK = "<canonical-html>"
XML_MARK = "<canonical-xml>"
#: Placeholder-like names reserved by the transforms; masks never rewrite them.
RESERVED_NAMES: tuple[str, ...] = ("canonical-html", "canonical-xml")

_SPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one space; leading and trailing whitespace goes.

    >>> collapse_whitespace("  a \\n\\t b ")
    'a b'
    """
    return _SPACE.sub(" ", text).strip()


def fold_case(text: str, placeholders: re.Pattern[str] | None = None) -> str:
    """Case-folded text; placeholders (`<Name>`) keep their case so masks stay stable.

    >>> fold_case("Straße OK")
    'strasse ok'
    """
    if placeholders is None:
        return text.casefold()
    parts = placeholders.split(text)
    parts[::2] = [part.casefold() for part in parts[::2]]
    return "".join(parts)


def header_set(value: str) -> str:
    """A comma-separated header value as a sorted set: `GET, HEAD, GET` -> `GET, HEAD`.

    >>> header_set("Origin,  Accept-Encoding")
    'Accept-Encoding, Origin'
    """
    tokens = {token.strip() for token in value.split(",")}
    tokens.discard("")
    return ", ".join(sorted(tokens))


# -- XML ------------------------------------------------------------------------------------


def canonical_xml(text: str) -> str:
    """Canonical XML (C14N 2.0, stdlib): attribute order, quotes, empty elements and
    insignificant whitespace no longer matter; comments are dropped. One element per line.

    >>> canonical_xml('<a y="2"  x="1"><b/> </a>').splitlines()
    ['<canonical-xml>', '<a x="1" y="2">', '<b>', '</b>', '</a>']
    """
    if text.startswith(XML_MARK):
        return text
    try:
        canonical = ET.canonicalize(text, strip_text=True)
    except (ET.ParseError, ValueError, LookupError, TypeError, RecursionError):
        return text  # not XML: compare it as text
    return XML_MARK + "\n" + canonical.replace("><", ">\n<")


# -- HTML -----------------------------------------------------------------------------------


class _Canonical(HTMLParser):
    """Re-serializes what html.parser reads: one node per line, attributes sorted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parts = [tag] + [f'{name}="{_attr(value)}"' for name, value in
                         sorted(attrs, key=lambda a: (a[0], a[1] or ""))]
        self.out.append("<" + " ".join(parts) + ">")

    handle_startendtag = handle_starttag  # `<br/>` and `<br>` are the same element

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        text = collapse_whitespace(data)
        if text:
            # script/style content is raw text to the parser: escaping it would not round-trip
            raw = getattr(self, "cdata_elem", None) is not None
            self.out.append(text if raw else html.escape(text, quote=False))

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{collapse_whitespace(decl).lower()}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{collapse_whitespace(data)}>")

    def handle_comment(self, data: str) -> None:
        pass  # comments carry build stamps and nothing a client sees

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{collapse_whitespace(data)}]>")


def _attr(value: str | None) -> str:
    # `<input disabled>` and `<input disabled="">` are the same attribute
    return (value or "").replace("&", "&amp;").replace('"', "&quot;")


def canonical_html(text: str) -> str:
    """HTML with whitespace, attribute order, quoting, character references and comments
    normalized away; one tag or text node per line.

    >>> canonical_html('<p  class="a" id=x>Hi <b>there</b></p>').splitlines()
    ['<canonical-html>', '<p class="a" id="x">', 'Hi', '<b>', 'there', '</b>', '</p>']
    """
    if text.startswith(HTML_MARK):
        return text
    parser = _Canonical()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError, TypeError, IndexError):  # html.parser on odd markup
        return text
    return HTML_MARK + "\n" + "\n".join(parser.out)
