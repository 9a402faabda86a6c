"""report/charts.py: matplotlib SVG made safe for the report's CSP (no style, no clashes)."""

from __future__ import annotations

import re

from shadowdiff.report.charts import latency_chart, trend_chart


def _latency(endpoint: str) -> dict:
    row = {"endpoint": endpoint, "old": {"n": 40, "p50": 1.0, "p95": 2.0, "p99": 3.0},
           "new": {"n": 40, "p50": 5.0, "p95": 9.0, "p99": 12.0},
           "old_error_rate": 0.0, "new_error_rate": 0.0, "regression": True}
    return {"metric": "p95", "min_ratio": 1.2, "confidence": 0.95, "endpoints": [row],
            "regressions": []}


def test_charts_have_no_inline_style_and_prefixed_ids() -> None:
    trend = [{"started_at": f"2024-05-0{i}T02:15:00+00:00", "diverging_share": 0.1 * i,
              "verified_share": 0.5} for i in range(1, 4)]
    for svg, prefix in ((trend_chart(trend), "trend"), (latency_chart(_latency("GET /a")), "latency")):
        text = str(svg)
        assert text.startswith("<svg") and "<style" not in text and "style=" not in text
        assert "<script" not in text and "xlink:" not in text and "currentColor" in text
        ids = re.findall(r' id="([^"]+)"', text)
        assert ids and all(i.startswith(prefix + "-") for i in ids)
        for ref in re.findall(r'(?:url\(#|href="#)([^")]+)', text):
            assert ref in ids


def test_captured_text_in_labels_is_escaped_and_never_mathtext() -> None:
    text = str(latency_chart(_latency("GET /<script>alert(1)</script>/$x$")))
    assert "<script>" not in text and "&lt;script&gt;" in text and "$x$" in text


def test_one_run_has_no_trend_and_no_samples_no_latency_chart() -> None:
    assert trend_chart([{"started_at": "x", "diverging_share": 0, "verified_share": 1}]) is None
    empty = _latency("GET /a")
    empty["endpoints"][0]["new"]["p95"] = None
    assert latency_chart(empty) is None
