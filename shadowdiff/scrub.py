"""Capture-time redaction: secrets are replaced by a stable keyed hash before anything is
stored, unless the user asks to keep them (`--keep-secrets`, `[redact] keep_secrets`).

    importer / live mirror ──> Redactor.exchange(ex) ──> CaptureWriter / replay ──> run dir

What counts as a secret: the values of credential headers (Authorization, Proxy-Authorization,
Cookie, Set-Cookie, X-Api-Key, ...), query parameters and form or JSON fields whose name is
token-like (password, token, secret, api_key, access_token, ...), and SMTP AUTH arguments.
Each value becomes `redacted:` and 16 hex digits of HMAC-SHA256 under a key of this
installation (`key.py`), so equal values stay equal and two captures made here diff alike,
while nobody without the key can test a guess against the capture. A value that is already
`redacted:<hex>` is left alone: redacting twice changes nothing.

Report-time redaction (`redact.py`) still applies on top, for captures kept with secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson

from shadowdiff.errors import ConfigError
from shadowdiff.model import Exchange, Headers, Outcome, Request, Response
from shadowdiff.redact import SECRET_HEADERS

#: Field and parameter names that are secrets (exact, case-insensitive).
SECRET_FIELDS: tuple[str, ...] = (
    "password", "passwd", "pwd", "pass", "token", "secret", "api_key", "apikey", "access_token",
    "refresh_token", "id_token", "client_secret", "auth", "sid", "session", "sessionid",
    "signature", "sig", "otp", "code_verifier",
)
#: Regexes (searched, case-insensitive) that make a field or parameter name a secret.
SECRET_PATTERNS: tuple[str, ...] = (
    r"token", r"secret", r"passw", r"api[_-]?key", r"credential", r"private[_-]?key",
    r"session[_-]?id", r"authorization",
)
#: Headers whose value is `scheme credentials`: the scheme is kept (`Bearer redacted:...`).
_SCHEMED = frozenset({"authorization", "proxy-authorization"})
PREFIX = "redacted:"
_DONE = re.compile(r"redacted:[0-9a-f]{16}")
_PAIR = re.compile(r"(?<![^?&;])([^=&#;?]+)=([^&#;]*)")   # name=value inside a query or form
_JSON_TYPE = re.compile(r"json", re.I)
_FORM_TYPE = re.compile(r"application/x-www-form-urlencoded", re.I)
_FORMISH = re.compile(rb"[^\s=&{}\[\]]+=[^\s&]*(?:&[^\s=&]+=[^\s&]*)*")
_SMTP_AUTH = re.compile(r"(?i)^(AUTH\s+\S+)(\s+)(\S.*)$")
_JSON_STRING = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"\s*(:)?')  # a string; (:) when a key


@dataclass(frozen=True)
class RedactConfig:
    """The `[redact]` section: what is a secret, the key, and whether to keep secrets."""

    keep_secrets: bool = False
    """Store secrets as captured (`--keep-secrets`); the capture header says so."""
    headers: tuple[str, ...] = SECRET_HEADERS
    """Header names (lower case) whose values are secrets; `[redact] headers` adds to them."""
    fields: tuple[str, ...] = SECRET_FIELDS
    """Exact query parameter / form / JSON field names (lower case); `fields` adds to them."""
    patterns: tuple[str, ...] = SECRET_PATTERNS
    """Regexes searched in those names; `patterns` adds to them."""
    key_file: str | None = None
    """Where the HMAC key lives (None: $SHADOWDIFF_REDACT_KEY_FILE, else the user's config dir)."""

    def keeping(self, keep: bool) -> RedactConfig:
        """This policy, or the same keeping every secret when `keep` (the flag wins)."""
        return replace(self, keep_secrets=True) if keep else self


class Redactor:
    """Applies a RedactConfig to exchanges; the key is read (or made) at the first secret.

    >>> r = Redactor(RedactConfig())                       # doctest: +SKIP
    >>> r.exchange(ex).request.header("Authorization")     # doctest: +SKIP
    'Bearer redacted:3f2a9c0e1b7d4a55'
    """

    def __init__(self, config: RedactConfig = RedactConfig(),
                 key: Callable[[], bytes] | None = None) -> None:
        self.config = config
        self.keep = config.keep_secrets
        self._headers = frozenset(h.lower() for h in config.headers)
        self._fields = frozenset(f.lower() for f in config.fields)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in config.patterns) or r"(?!)", re.I)
        self._key_fn = key
        self._key: bytes | None = None
        self._is_secret = lru_cache(maxsize=4096)(self._secret_name)
        self._last_json: tuple[bytes, bool] = (b"", False)  # the last JSON body looked at
        self.found = 0
        """How many values were replaced (the capture header's `secrets.replaced`)."""

    # -- the parts of an exchange ---------------------------------------------------------
    def exchange(self, ex: Exchange) -> Exchange:
        """`ex` with its secrets replaced (the same object when it holds none)."""
        if self.keep:
            return ex
        request = self.request(ex.request)
        recorded = self.response(ex.recorded) if ex.recorded is not None else None
        observed = (tuple((role, self._outcome(o)) for role, o in ex.observed)
                    if ex.observed else ex.observed)   # most exchanges: none, and no generator
        if (request is ex.request and recorded is ex.recorded
                and (observed is ex.observed
                     or all(a[1] is b[1] for a, b in zip(observed, ex.observed)))):
            return ex
        return replace(ex, request=request, recorded=recorded, observed=observed)

    def request(self, req: Request) -> Request:
        """A request with secret headers, query values and body fields replaced."""
        if req.protocol == "smtp":
            return self._smtp(req)
        headers = self.headers(req.headers)
        target = self.query(req.target) if "?" in req.target else req.target
        body = self.body(req.body, headers) if req.body else req.body
        if headers is req.headers and target is req.target and body is req.body:
            return req
        return replace(req, headers=_fix_length(headers, body, req.body), target=target, body=body)

    def response(self, resp: Response) -> Response:
        """A response with Set-Cookie values and secret body fields replaced."""
        headers = self.headers(resp.headers)
        body = self.body(resp.body, headers) if resp.body else resp.body
        if headers is resp.headers and body is resp.body:
            return resp
        return replace(resp, headers=_fix_length(headers, body, resp.body), body=body)

    def _outcome(self, outcome: Outcome) -> Outcome:
        return self.response(outcome) if isinstance(outcome, Response) else outcome

    def headers(self, headers: Headers) -> Headers:
        """Header pairs with secret values hashed (the same tuple when nothing changed)."""
        out: list[tuple[str, str]] | None = None
        for i, (name, value) in enumerate(headers):
            new = self._header_value(name.lower(), value)
            if out is None and new != value:
                out = list(headers[:i])
            if out is not None:
                out.append((name, new))
        return headers if out is None else tuple(out)

    def _header_value(self, lname: str, value: str) -> str:
        if lname in self._headers:
            if lname in _SCHEMED:
                scheme, sep, cred = value.partition(" ")
                return f"{scheme} {self.hash(cred.strip())}" if sep and cred.strip() else self.hash(value)
            if lname == "cookie":
                return "; ".join(self._cookie(c.strip()) for c in value.split(";") if c.strip())
            if lname == "set-cookie":
                first, sep, attrs = value.partition(";")
                return self._cookie(first.strip()) + sep + attrs
            return self.hash(value)
        return self.query(value) if "?" in value else value  # Referer, Location: ?token=...

    def _cookie(self, pair: str) -> str:
        name, sep, value = pair.partition("=")
        return f"{name}={self.hash(value)}" if sep else self.hash(pair)

    def query(self, text: str) -> str:
        """`/p?token=abc&x=1` -> `/p?token=redacted:...&x=1` (only token-like names)."""
        def sub(m: re.Match[str]) -> str:
            if not self._is_secret(m.group(1)):
                return m.group(0)
            return f"{m.group(1)}={self.hash(m.group(2))}"
        head, sep, query = text.partition("?")
        new = _PAIR.sub(sub, query)
        return text if new == query else head + sep + new

    def body(self, body: bytes, headers: Headers) -> bytes:
        """A urlencoded or JSON body with secret fields hashed; others as they were."""
        ctype, coding = "", ""
        for name, value in headers:
            lname = name.lower()
            if lname == "content-type":
                ctype = value
            elif lname == "content-encoding":
                coding = value.strip().lower()
        if coding not in ("", "identity"):
            return body  # still compressed (see docs/security.md)
        # the kind first (cheap), then each name of a form or JSON body: most bodies are neither.
        # Names, not the whole body: a pattern such as ^card is searched in each name
        if _FORM_TYPE.search(ctype) or (not ctype and _FORMISH.fullmatch(body)):
            # no Content-Type (a HAR keeps it in postData.mimeType): judged by the look
            text = body.decode("latin-1")
            new = self.query("?" + text)[1:]
            return body if new == text else new.encode("latin-1")
        if _JSON_TYPE.search(ctype) or body.lstrip()[:1] in (b"{", b"["):
            return self._json(body) if self._secret_key_in(body) else body
        return body

    def _secret_key_in(self, body: bytes) -> bool:
        """Whether a JSON body has a key that `_walk` takes for a secret, read from the raw
        text so that a body without one is never parsed. Exact for valid JSON, which is all
        `_json` changes. (The names' regex searched over the whole body cost ~320 us per
        1.5 KB under re.I; this ~20 us.)"""
        last, found = self._last_json
        if body == last:  # a mirror's old and new answers, and production's, are mostly alike
            return found
        if b"\\" not in body:
            # no escapes: every '"' opens or closes a string, so the odd pieces are strings,
            # and a string is a key when a ':' follows it
            parts = body.split(b'"')
            keys = {s for s, after in zip(parts[1::2], parts[2::2]) if after.lstrip()[:1] == b":"}
        else:  # strings read one after another from the first, escapes and all
            keys = {m[0] for m in _JSON_STRING.findall(body) if m[1]}
        found = any(self._is_secret(_key_text(k)) for k in keys)
        self._last_json = (body, found)
        return found

    def _json(self, body: bytes) -> bytes:
        try:
            tree = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        before = self.found
        tree = self._walk(tree, False)
        return orjson.dumps(tree) if self.found != before else body

    def _walk(self, node: Any, secret: bool) -> Any:
        if isinstance(node, dict):
            return {k: self._walk(v, secret or self._is_secret(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, secret) for v in node]
        if secret and node is not None and not isinstance(node, bool):
            return self.hash(node if isinstance(node, str) else orjson.dumps(node).decode())
        return node

    def _smtp(self, req: Request) -> Request:
        headers = tuple((k, self._auth_line(v)) if k.upper() == "AUTH" else (k, v)
                        for k, v in req.headers)
        target = req.target
        if req.method.upper() == "AUTH":
            target = self._auth_line("AUTH " + target)[5:]
        if headers == req.headers and target == req.target:
            return req
        return replace(req, headers=headers, target=target)

    def _auth_line(self, line: str) -> str:
        m = _SMTP_AUTH.match(line)
        return f"{m.group(1)}{m.group(2)}{self.hash(m.group(3))}" if m else line

    # -- names, hashes, text ---------------------------------------------------------------
    def _secret_name(self, name: str) -> bool:
        plain = unquote_plus(name).strip().lower()
        return plain in self._fields or bool(self._pattern.search(plain))

    def hash(self, value: str) -> str:
        """`redacted:` + 16 hex digits of HMAC-SHA256(key, value); idempotent."""
        if _DONE.fullmatch(value):
            return value
        self.found += 1
        digest = hmac.new(self._secret_key(), value.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()
        return PREFIX + digest[:16]

    def _secret_key(self) -> bytes:
        if self._key is None:
            if self._key_fn is not None:
                self._key = self._key_fn()
            else:
                self._key = load_key(self.config.key_file)
        return self._key

    def text(self, value: str) -> str:
        """A free text (an importer's error or quoted log line) with query secrets hashed."""
        if self.keep or "=" not in value:
            return value
        return re.sub(r"\S*\?\S*", lambda m: self.query(m.group(0)), value)

    def describe(self) -> dict[str, Any]:
        """The capture header's `secrets` object (docs/capture-format.md)."""
        if self.keep:
            return {"mode": "kept"}
        out: dict[str, Any] = {"mode": "hashed", "algorithm": "hmac-sha256/64",
                               "replaced": self.found}
        if self._key is not None:
            out["key_id"] = key_id(self._key)
        return out


# -- the key -------------------------------------------------------------------------------


def key_path(key_file: str | None = None) -> Path:
    """Where the key lives: `key_file`, else $SHADOWDIFF_REDACT_KEY_FILE, else
    $XDG_CONFIG_HOME/shadowdiff/redact.key (~/.config/shadowdiff/redact.key)."""
    chosen = key_file or os.environ.get("SHADOWDIFF_REDACT_KEY_FILE")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "shadowdiff" / "redact.key"


def load_key(key_file: str | None = None) -> bytes:
    """The installation's HMAC key, made (32 random bytes, hex, mode 0600) on first use."""
    path = key_path(key_file)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _make_key(path)
        except OSError as exc:
            raise ConfigError(f"cannot create the redaction key: {exc.strerror or exc}",
                              path=str(path), key="redact.key_file") from exc
    try:
        text = path.read_text("ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"not a redaction key (64 hex digits expected): {exc}",
                          path=str(path), key="redact.key_file") from exc
    if len(key) < 16:
        raise ConfigError("redaction key too short (at least 32 hex digits)", path=str(path),
                          key="redact.key_file")
    return key


def _make_key(path: Path) -> None:
    """Write a new key beside `path`, then link it into place. Why not create `path` with
    O_EXCL and write it: another process (a partitioned run's workers meet their first
    secrets at once) could read it in between, empty. A link is all or nothing, and fails
    if another process got there first: then its key is the key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".redact-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def key_id(key: bytes) -> str:
    """8 hex digits that tell keys apart without revealing them (the header's `key_id`)."""
    return hmac.new(key, b"shadowdiff redaction key id", hashlib.sha256).hexdigest()[:8]


def _key_text(raw: bytes) -> str:
    """A JSON key's raw bytes as the text orjson makes of it."""
    if b"\\" in raw:
        try:
            return orjson.loads(b'"' + raw + b'"')
        except orjson.JSONDecodeError:
            pass  # a bad escape: the body is no JSON, and _json leaves it as it is
    return raw.decode("utf-8", "replace")


def _fix_length(headers: Headers, body: bytes, before: bytes) -> Headers:
    """Content-Length follows a body that redaction changed."""
    if body is before:
        return headers
    return tuple((k, str(len(body))) if k.lower() == "content-length" else (k, v)
                 for k, v in headers)


KEEP_SECRETS = Redactor(RedactConfig(keep_secrets=True))
"""A redactor that keeps everything (used where another stage redacts)."""

__all__ = ["KEEP_SECRETS", "PREFIX", "RedactConfig", "Redactor", "SECRET_FIELDS",
           "SECRET_PATTERNS", "key_id", "key_path", "load_key"]
