"""Text formatting and Markdown escaping that every report renderer shares.

Captured bodies and headers are hostile input: anything from a capture goes through
`md_text` or `md_code` before it reaches report.md, so a value cannot open a link, a
table cell or an HTML tag.
"""

from __future__ import annotations

import re

_TEXT_SPECIALS = re.compile(r"([\\`*_\[\]<>|~&#!])")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BACKTICKS = re.compile(r"`+")


def format_pct(share: float, digits: int = 1) -> str:
    """A 0..1 share as a percentage; tiny non-zero shares say so instead of rounding to 0.

    >>> format_pct(0.1234), format_pct(0.00001), format_pct(0)
    ('12.3%', '<0.1%', '0%')
    """
    pct = share * 100
    if pct == 0:
        return "0%"
    floor = 10.0**-digits
    if pct < floor:
        return f"<{floor:.{digits}f}%"
    return f"{pct:.{digits}f}%"


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the last being an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def md_text(text: str) -> str:
    """Plain text made inert: Markdown/HTML punctuation backslash-escaped, one line."""
    one_line = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", _NEWLINES.sub(" ", str(text)))
    return _TEXT_SPECIALS.sub(r"\\\1", one_line)


def md_code(text: str, limit: int = 80) -> str:
    """`text` as an inline code span safe inside a table cell (newlines shown as ⏎)."""
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", _NEWLINES.sub("⏎", str(text)))
    text = truncate(text, limit)
    if not text:
        return "*(empty)*"
    # A fence one backtick longer than any run inside; pad when the content touches it.
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    # GFM splits table cells before parsing code spans, so pipes need `\|` even here.
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"
