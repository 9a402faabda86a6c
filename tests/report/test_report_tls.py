"""shadowdiff/report/tls.py and the `tls` part of the summary schema: what each target was
replayed over, with counts and why HTTP/2 was or was not used, in words and as checked JSON."""

from __future__ import annotations

from typing import Any

import pytest

from shadowdiff.report.json import SUMMARY_SPEC, _check
from shadowdiff.report.tls import fact_text, markdown_section


def facts(**kw: Any) -> dict[str, Any]:
    return {"address": "127.0.0.1:443", "server_name": "shop.test", "verified": True,
            "insecure": False, "error": None, "tls_version": "TLSv1.3", "alpn": "h2", **kw}


@pytest.mark.parametrize(("over", "counts", "why", "text"), [
    ("HTTP/2 and HTTP/1.1", {"HTTP/2": 12, "HTTP/1.1": 3}, "used", "HTTP/2 (12), HTTP/1.1 (3)"),
    ("HTTP/2", {"HTTP/2": 4, "HTTP/1.1": 0}, "used", "HTTP/2 (4)"),
    ("HTTP/1.1", {"HTTP/2": 0, "HTTP/1.1": 5}, "not_offered",
     "HTTP/1.1 (5); the target does not offer h2 by ALPN"),
    ("HTTP/1.1", {"HTTP/2": 0, "HTTP/1.1": 5}, "off", "HTTP/1.1 (5); HTTP/2 off (--http2 off)"),
    ("HTTP/1.1", {"HTTP/2": 0, "HTTP/1.1": 0}, "not_captured",
     "HTTP/1.1; no exchange was captured as HTTP/2"),
    ("HTTP/1.1", None, None, "HTTP/1.1"),   # a summary from before HTTP/2 replay
])
def test_replayed_over_in_words(over: str, counts: Any, why: Any, text: str) -> None:
    shown = facts(replayed_over=over, **({"replayed_over_counts": counts} if counts else {}),
                  **({"http2": why} if why else {}))
    assert fact_text(shown, "replayed_over") == text
    section = markdown_section({"tls": {"targets": {"old": shown, "new": shown},
                                        "divergences": [], "insecure": []}})
    assert f"| replayed over | `{text}` | `{text}` |" in section


def test_the_schema_checks_what_was_replayed_over() -> None:
    spec = SUMMARY_SPEC["tls"].spec

    def problems(**kw: Any) -> list[str]:
        out: list[str] = []
        _check({"targets": {"old": facts(**kw)}, "divergences": [], "insecure": []}, spec,
               "tls", out)
        return out
    assert problems(replayed_over="HTTP/2 and HTTP/1.1", http2="used",
                    replayed_over_counts={"HTTP/2": 1, "HTTP/1.1": 2}) == []
    assert problems(replayed_over="HTTP/1.1") == []          # older summaries stay valid
    assert any("replayed_over" in p for p in problems(replayed_over="SPDY"))
    assert any("http2" in p for p in problems(http2="maybe"))
    assert any("replayed_over_counts.HTTP/2" in p
               for p in problems(replayed_over_counts={"HTTP/1.1": 2}))
