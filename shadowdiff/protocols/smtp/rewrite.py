"""Rewriting production mail domains to test domains on the wire (`[smtp] rewrite_domains`).

Replayed sessions carry real customers' addresses; a test MTA that relays, bounces or
answers VRFY for them could reach real people. The sender rewrites what it sends (MAIL,
RCPT, VRFY and EXPN arguments, and the message when it delivers one) and nothing else:
the capture and the endpoints keep the production domains, so ranking still joins the
mail logs. A rule matches its domain and its subdomains as whole names:
`customer.com` rewrites `bob@customer.com` and `mx.customer.com`, not `notcustomer.com`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Commands whose arguments hold addresses.
ADDRESS_COMMANDS = frozenset({"MAIL", "RCPT", "VRFY", "EXPN"})


def _pattern(domain: str) -> str:
    # Not inside a longer name on the left; not followed by more name on the right.
    return rf"(?<![A-Za-z0-9-]){re.escape(domain)}(?![A-Za-z0-9-]|\.[A-Za-z0-9])"


class DomainRewriter:
    """Applies (domain, test domain) rules to command lines and message bytes."""

    def __init__(self, rules: Sequence[tuple[str, str]]) -> None:
        self.rules = {old.lower(): new for old, new in rules}
        # The longest domain first, so `a.customer.com` wins over `customer.com`.
        order = sorted(self.rules, key=len, reverse=True)
        self._text = re.compile("|".join(_pattern(d) for d in order), re.IGNORECASE) if order else None
        self._bytes = (re.compile(self._text.pattern.encode("ascii"), re.IGNORECASE)
                       if self._text else None)

    def __bool__(self) -> bool:
        return self._text is not None

    def line(self, line: str) -> str:
        """A command line with its domains rewritten (address commands only).

        >>> DomainRewriter([("customer.com", "test.example")]).line("RCPT TO:<b@Customer.com>")
        'RCPT TO:<b@test.example>'
        """
        verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
        if self._text is None or verb not in ADDRESS_COMMANDS:
            return line
        return self._text.sub(lambda m: self.rules[m.group(0).lower()], line)

    def message(self, data: bytes) -> bytes:
        """A message (headers and body, dot-stuffed) with its domains rewritten."""
        if self._bytes is None:
            return data
        return self._bytes.sub(lambda m: self.rules[m.group(0).decode("ascii").lower()].encode(),
                               data)
