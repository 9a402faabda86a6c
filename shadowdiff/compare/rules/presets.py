"""Named mask patterns, so a rules file can say `masks = ["uuid", "http-date"]`.

A preset is an ordinary regex mask (normalize.Mask). Where only part of a match is
volatile (the value of a CSRF input, not its name), the pattern marks that part with a
group named `mask...`; normalize replaces just those groups, so the context that found
the token stays visible and comparable.
"""

from __future__ import annotations

import re
from types import MappingProxyType

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_CSRF_NAMES = (r"(?:[^\"]*csrf[^\"]*|authenticity_token|_token|__RequestVerificationToken|"
               r"csrfmiddlewaretoken)")

#: Preset name -> regex. Documented, with examples, in docs/configuration.md.
PRESETS: MappingProxyType[str, str] = MappingProxyType({
    "uuid": r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    "ulid": r"\b[0-9A-HJKMNP-TV-Z]{26}\b",
    "iso-date": (r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                 r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?\b"),
    "iso-datetime": (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                     r"(?:Z\b|[+-]\d{2}(?::?\d{2})?\b)?"),
    "http-date": (rf"{_DAY}, \d{{2}} {_MONTH} \d{{4}} \d{{2}}:\d{{2}}:\d{{2}} GMT"
                  rf"|\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \d{{2}}-{_MONTH}-\d{{2}} "
                  rf"\d{{2}}:\d{{2}}:\d{{2}} GMT|{_DAY} {_MONTH} [ \d]\d \d{{2}}:\d{{2}}:\d{{2}} \d{{4}}"),
    "unix-time": r"\b1\d{9}(?:\d{3})?\b",
    "hex-token": r"\b[0-9a-fA-F]{16,}\b",
    "jwt": r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    "ipv4": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    # HTML, meant for bodies normalized with `html` (attributes sorted, double-quoted):
    "csrf-token": (rf"(?i)\bname=\"{_CSRF_NAMES}\"[^<>]*?\bvalue=\"(?P<mask>[^\"]*)\""
                   rf"|\bcontent=\"(?P<mask_meta>[^\"]*)\"(?= name=\"(?:csrf-token|_csrf|csrf_token)\")"),
    "nonce": r"\bnonce=\"(?P<mask>[^\"]*)\"|'nonce-(?P<mask_csp>[^']+)'",
})


def preset(name: str) -> re.Pattern[str]:
    """The compiled pattern of preset `name`; KeyError (naming the known ones) otherwise.

    >>> bool(preset("uuid").search("id 0f8fad5b-d9cb-469f-a165-70867728950e"))
    True
    """
    try:
        return re.compile(PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown mask name {name!r} (known: {', '.join(sorted(PRESETS))})") from None
