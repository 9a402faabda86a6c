"""Rank stage, log formats: an nginx `log_format` or Apache `LogFormat` line -> a parser.

    "combined" | "nginx:<log_format>" | "apache:<LogFormat>" ──> LogFormat ──> RE2 regex
                                                                            (tally.py runs it
                                                                             over Arrow batches)

A format is a list of tokens, literal text or variables. Only a few variables matter for
usage (the request, method, target, status and time); every other one becomes an anonymous
"anything up to the next literal character" pattern. The regex stops after the last
variable that matters, which is why `common` is a prefix of `combined` and why one regex
reads both.

Two regexes per format: a strict one, shaped so RE2 can run it one-pass (fast, used on
every line), and a loose one that takes the request line as opaque text (used only on the
few lines the strict one rejects: lower-case methods, escaped quotes, `"-"` requests).
The patterns stay in the subset RE2 and Python's `re` share, so `LogFormat.parse_line`
(Python) and the Arrow path agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

#: The NCSA combined format, in Apache's spelling: `%l` and `%u` accept any word, so
#: it also reads nginx's `combined` (where `%l` is always `-`) and the `common` prefix.
COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"'
COMMON = '%h %l %u %t "%r" %>s %b'

#: Arrow strptime formats for the time variables (Arrow accepts `+0000` and `+00:00`).
_TIME_FORMATS = {
    "clf": "%d/%b/%Y:%H:%M:%S %z",
    "iso": "%Y-%m-%dT%H:%M:%S%z",
}

# nginx variable -> role. Roles are what usage needs; anything else is opaque.
_NGINX_ROLES = {
    "request": "request",
    "request_method": "method",
    "request_uri": "target",
    "uri": "path",
    "document_uri": "path",
    "args": "query",
    "query_string": "query",
    "status": "status",
    "time_local": "time:clf",
    "time_iso8601": "time:iso",
    "msec": "time:epoch",
}
# Apache directive letter -> role (`%t` and `%{...}t` are handled apart: brackets, formats).
_APACHE_ROLES = {"r": "request", "m": "method", "U": "path", "q": "query", "s": "status"}

_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_APACHE_DIRECTIVE = re.compile(r"%([<>!,0-9]*)(?:\{([^}]*)\})?(\^t[io]|[a-zA-Z%])")
_REGEX_SPECIAL = set("\\.^$|?*+()[]{}")


@dataclass(frozen=True)
class Token:
    """One piece of a format: literal text, or a variable with its role (or None)."""

    literal: str | None = None
    """The literal text, when this token is not a variable."""
    name: str = ""
    """The variable as written (`$status`, `%>s`), for messages."""
    role: str | None = None
    """`request`, `method`, `target`, `path`, `query`, `status`, `time:KIND`, or None."""
    bracketed: bool = False
    """Apache `%t`: the value carries its own `[...]`."""


@dataclass(frozen=True)
class LogFormat:
    """A parsed log format: tokens, plus the regexes and time parsing derived from them.

    >>> fmt = parse_log_format('$remote_addr [$time_local] "$request" $status')
    >>> fmt.parse_line('10.0.0.1 [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200')
    {'time': '10/Oct/2000:13:55:36 -0700', 'method': 'GET', 'target': '/a', 'status': '200'}
    """

    name: str
    """How the user named it (`combined`, `nginx:...`), for messages."""
    tokens: tuple[Token, ...]
    """The format, tokenised."""

    @property
    def roles(self) -> frozenset[str]:
        """The roles this format provides (time kinds folded into `time`)."""
        return frozenset((t.role or "").split(":")[0] for t in self.tokens if t.role) - {""}

    @property
    def time_kind(self) -> str | None:
        """`clf`, `iso`, `epoch`, `epoch_ms`, `epoch_us`, `strftime:FMT`, or None."""
        for t in self.tokens:
            if t.role and t.role.startswith("time:"):
                return t.role.split(":", 1)[1]
        return None

    @property
    def time_format(self) -> str | None:
        """The Arrow strptime format of the time field, when it is a formatted date."""
        kind = self.time_kind or ""
        return _TIME_FORMATS.get(kind) or (kind[9:] if kind.startswith("strftime:") else None)

    def regex(self, *, keep_query: bool = False, loose: bool = False) -> str:
        """The RE2 (and Python `re`) pattern: named groups method, target, query, status, time.

        Without `keep_query` the target stops at `?` (the default endpoint function ignores
        the query, and fewer distinct targets make the aggregation cheaper).
        """
        return _build_regex(self.tokens, keep_query=keep_query, loose=loose)

    @cached_property
    def _python_strict(self) -> re.Pattern[str]:
        return re.compile(self.regex(keep_query=False))

    def parse_line(self, line: str) -> dict[str, str] | None:
        """Parse one line in Python (tests, sniffing): the named groups that matched."""
        m = self._python_strict.match(line)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


# -- tokenising --------------------------------------------------------------------------


def parse_log_format(fmt: str) -> LogFormat:
    """Turn an nginx `log_format` or Apache `LogFormat` string (or directive) into a LogFormat.

    Accepts the bare format (`$remote_addr ... "$request" $status ...` or
    `%h %l %u %t \\"%r\\" %>s %b`), the whole config directive as pasted from the config
    (`log_format main '...' '...';`, `LogFormat "..." combined`), or either with an explicit
    `nginx:` / `apache:` prefix. Raises ValueError when it cannot serve usage counting.
    """
    text = fmt.strip()
    flavour = None
    for prefix in ("nginx:", "apache:"):
        if text.startswith(prefix):
            flavour, text = prefix[:-1], text[len(prefix):].strip()
    if text.startswith("log_format"):
        flavour, text = "nginx", _nginx_directive_body(text)
    elif text.startswith("LogFormat") or text.startswith("CustomLog"):
        flavour, text = "apache", _apache_directive_body(text)
    if flavour is None:
        flavour = "nginx" if _NGINX_VAR.search(text) else "apache"
    tokens = _tokenise_nginx(text) if flavour == "nginx" else _tokenise_apache(text)
    result = LogFormat(name=fmt if len(fmt) < 80 else fmt[:77] + "...", tokens=tuple(tokens))
    _check_usable(result, fmt)
    return result


def named_format(name: str) -> LogFormat:
    """The built-in formats: `combined` and `common` (both read by the same regex)."""
    if name not in ("combined", "common"):
        raise ValueError(f"unknown log format {name!r}")
    return LogFormat(name=name, tokens=tuple(_tokenise_apache(COMBINED)))


def _nginx_directive_body(text: str) -> str:
    # log_format NAME [escape=default|json|none] 'part' "part" ...;  nginx concatenates parts
    parts = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", text)
    if not parts:
        raise ValueError(f"no quoted format string in the nginx directive: {text!r}")
    return "".join(re.sub(r"\\(.)", r"\1", a or b) for a, b in parts)


def _apache_directive_body(text: str) -> str:
    m = re.search(r'"((?:[^"\\]|\\.)*)"', text)
    if m is None:
        raise ValueError(f"no quoted format string in the Apache directive: {text!r}")
    return m.group(1)


def _tokenise_nginx(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    for m in _NGINX_VAR.finditer(text):
        if m.start() > pos:
            tokens.append(Token(literal=text[pos:m.start()]))
        var = m.group(1) or m.group(2)
        tokens.append(Token(name=m.group(0), role=_NGINX_ROLES.get(var)))
        pos = m.end()
    if pos < len(text):
        tokens.append(Token(literal=text[pos:]))
    return tokens


def _tokenise_apache(text: str) -> list[Token]:
    # A pasted config string carries backslash escapes: \" \t \n
    text = re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n"}.get(m.group(1), m.group(1)), text)
    tokens: list[Token] = []
    pos = 0
    for m in _APACHE_DIRECTIVE.finditer(text):
        if m.start() > pos:
            tokens.append(Token(literal=text[pos:m.start()]))
        pos = m.end()
        letter, arg = m.group(3), m.group(2)
        if letter == "%":
            tokens.append(Token(literal="%"))
        elif letter == "t":
            tokens.append(_apache_time(m.group(0), arg))
        else:
            tokens.append(Token(name=m.group(0), role=_APACHE_ROLES.get(letter)))
    if pos < len(text):
        tokens.append(Token(literal=text[pos:]))
    return tokens


def _apache_time(name: str, arg: str | None) -> Token:
    if arg is None:
        return Token(name=name, role="time:clf", bracketed=True)
    arg = re.sub(r"^(begin|end):", "", arg)
    kinds = {"sec": "epoch", "msec": "epoch_ms", "usec": "epoch_us"}
    if arg in kinds:
        return Token(name=name, role=f"time:{kinds[arg]}")
    if arg in ("msec_frac", "usec_frac") or "%" not in arg:
        return Token(name=name)
    return Token(name=name, role=f"time:strftime:{arg}")


def _check_usable(fmt: LogFormat, text: str) -> None:
    roles = fmt.roles
    if not ("request" in roles or ("method" in roles and roles & {"target", "path"})):
        raise ValueError(
            f"log format {text!r} has no request line ($request / %r) and no method plus "
            "URI ($request_method with $request_uri or $uri; %m with %U): usage needs them")


# -- regex building ----------------------------------------------------------------------


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _opaque(term: str) -> str:
    """Anything up to the terminator; quoted fields may hold backslash escapes (Apache)."""
    if term == '"':
        return r'(?:[^"\\]|\\.)*'
    return f"[^{_escape(term)}]*" if term else ".*?"


def _role_pattern(tok: Token, term: str, keep_query: bool, loose: bool) -> str:
    """The pattern of a variable that matters; `term` is the next literal character."""
    t = _escape(term)
    role = tok.role or ""
    if role == "request":
        if loose:
            return f"(?P<request>{_opaque(term)})"
        if keep_query:
            return f"(?P<method>[A-Z]+) (?P<target>[^ {t}]*)(?: [^ {t}]*)?"
        return f"(?P<method>[A-Z]+) (?P<target>[^ ?{t}]*)(?:\\?[^ {t}]*)?(?: [^ {t}]*)?"
    if role == "method":
        return f"(?P<method>[^ {t}]+)" if loose else "(?P<method>[A-Z]+)"
    if role == "target":
        if keep_query or loose:
            return f"(?P<target>[^{t}]*)"
        return f"(?P<target>[^?{t}]*)(?:\\?[^{t}]*)?"
    if role == "path":
        return f"(?P<target>[^?{t}]*)"
    if role == "query":
        return f"\\??(?P<query>[^{t}]*)" if keep_query else _opaque(term)
    if role == "status":
        return "(?P<status>[0-9]{3})"
    if tok.bracketed:
        return r"\[(?P<time>[^\]]*)\]"
    return f"(?P<time>{_opaque(term)})"


def _build_regex(tokens: tuple[Token, ...], *, keep_query: bool, loose: bool) -> str:
    # stop after the last variable that matters (plus the literal that ends it)
    last = max(i for i, t in enumerate(tokens) if t.role)
    seen: set[str] = set()
    out = ["^"]
    for i, tok in enumerate(tokens[: last + 2]):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        term = nxt.literal[0] if nxt is not None and nxt.literal else ""
        if tok.literal is not None:
            out.append(_escape(tok.literal))
        elif tok.role and not _groups_of(tok.role) & seen:
            seen |= _groups_of(tok.role)
            out.append(_role_pattern(tok, term, keep_query, loose))
        else:
            # a variable that does not matter, or a second one for a role already taken
            out.append(r"\[[^\]]*\]" if tok.bracketed else _opaque(term))
    if last == len(tokens) - 1:
        out.append(r"\r?\n?$")  # lines reach the regex with their newline
    return "".join(out)


def _groups_of(role: str) -> set[str]:
    """The named groups a role fills: a second variable for a taken group stays opaque."""
    base = role.split(":")[0]
    return {"request": {"method", "target"}, "path": {"target"}}.get(base, {base})
