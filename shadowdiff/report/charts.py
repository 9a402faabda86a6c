"""Charts for report.html: matplotlib figures as inline SVG that obey the page's CSP.

Report stage, beside html.py. matplotlib draws (the SVG backend, no GUI), then the SVG
is made fit for a page whose Content-Security-Policy allows no inline style: its
`<style>` element and every `style="..."` attribute become SVG presentation attributes
(which CSP does not govern), ids get a per-chart prefix so two charts never clash, text
and axes use `currentColor` so the chart follows the page's light or dark theme, and
the metadata goes. Labels come from captured traffic (endpoint names): matplotlib and
ElementTree escape them, and `$` is escaped so no label is read as mathtext.

matplotlib is imported on first use (~0.5 s), only when a report is rendered.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
XLINK = "{http://www.w3.org/1999/xlink}href"
_INK = "#010203"  # drawn in this, rewritten to currentColor
_COLOURS = {"diverging": "#e5534b", "verified": "#2da44e", "old": "#8c959f", "new": "#0969da",
            "slow": "#cf222e"}
_PROPERTIES = {"fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity",
               "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset",
               "stroke-miterlimit", "opacity", "font-size", "font-weight", "font-style",
               "text-anchor", "clip-path"}
MAX_BARS = 12


def trend_chart(trend: Sequence[Mapping[str, Any]]) -> Markup | None:
    """Diverging and verified share of production traffic per run, oldest first."""
    if len(trend) < 2:
        return None
    fig, ax = _figure(6.4, 1.9)
    xs = list(range(len(trend)))
    for key, label in (("diverging_share", "diverging"), ("verified_share", "verified")):
        ys = [100 * p[key] for p in trend]
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.6, color=_COLOURS[label],
                label=f"{label} %")
        ax.annotate(f"{ys[-1]:.1f}%", (xs[-1], ys[-1]), textcoords="offset points",
                    xytext=(6, -3), fontsize=8, color=_COLOURS[label])
    ax.set_xticks(xs, [_label(str(p["started_at"])[5:10]) for p in trend], fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("% of traffic", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", ncols=2)
    return _svg(fig, "trend", "trend of the diverging and verified share over recent runs")


def latency_chart(latency: Mapping[str, Any]) -> Markup | None:
    """Old vs new `metric` per endpoint as paired bars; regressions in red."""
    metric = latency["metric"]
    rows = [e for e in latency["endpoints"] if e["old"][metric] is not None
            and e["new"][metric] is not None]
    rows.sort(key=lambda e: (not e["regression"], -(e["new"][metric] or 0)))
    rows = rows[:MAX_BARS][::-1]  # barh draws bottom-up: worst at the top
    if not rows:
        return None
    fig, ax = _figure(6.4, 0.45 + 0.32 * len(rows))
    ys = list(range(len(rows)))
    ax.barh([y + 0.2 for y in ys], [e["old"][metric] for e in rows], height=0.38,
            color=_COLOURS["old"], label=f"old {metric}")
    ax.barh([y - 0.2 for y in ys], [e["new"][metric] for e in rows], height=0.38,
            color=[_COLOURS["slow"] if e["regression"] else _COLOURS["new"] for e in rows],
            label=f"new {metric}")
    ax.set_yticks(ys, [_label(e["endpoint"]) for e in rows], fontsize=7)
    ax.set_xlabel(f"{metric} response time, ms (red: sound regression)", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _svg(fig, "latency", f"old vs new {metric} response time per endpoint")


def load_chart(steps: Sequence[Mapping[str, Any]], max_p99_ms: float) -> Markup | None:
    """p99 latency against the target rate, old and new; a step that broke is a red cross."""
    rows = [s for s in steps if s["p99_ms"] is not None]
    if not rows:
        return None
    fig, ax = _figure(6.4, 2.6)
    for role in ("old", "new"):
        mine = [s for s in rows if s["role"] == role]
        if not mine:
            continue
        ax.plot([s["target_rate"] for s in mine], [s["p99_ms"] for s in mine], marker="o",
                markersize=4, linewidth=1.6, color=_COLOURS[role], label=f"{role} p99")
    ax.axhline(max_p99_ms, linewidth=0.8, linestyle="--", color=_COLOURS["slow"],
               label=f"limit {max_p99_ms:g} ms")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("target rate, requests/s", fontsize=8)
    ax.set_ylabel("p99 latency, ms", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return _svg(fig, "load", "p99 latency against load, old and new")


def warm() -> None:
    """Import matplotlib now rather than at the first chart: for a caller with a moment when
    this process would only wait (partitioned.py, while the workers' processes start)."""
    _figure_class()


def _figure_class() -> Any:
    import matplotlib

    matplotlib.use("svg", force=False)
    from matplotlib.figure import Figure

    return Figure


def _figure(width: float, height: float) -> tuple[Any, Any]:
    fig = _figure_class()(figsize=(width, height), layout="constrained", facecolor="none")
    ax = fig.add_subplot()
    ax.set_facecolor("none")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(_INK)
    ax.tick_params(colors=_INK, labelsize=7)
    ax.yaxis.label.set_color(_INK)
    ax.xaxis.label.set_color(_INK)
    ax.grid(axis="both", linewidth=0.4, alpha=0.35, color=_INK)
    return fig, ax


def _label(text: str, limit: int = 42) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")  # never mathtext


def _svg(fig: Any, name: str, title: str) -> Markup:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                 "Format": None, "Type": None})
    return Markup(csp_safe_svg(buf.getvalue(), name, title))  # noqa: S704 - sanitised XML


def csp_safe_svg(text: str, prefix: str, title: str) -> str:
    """matplotlib's SVG rewritten for a strict CSP (see the module docstring)."""
    ET.register_namespace("", SVG_NS)
    root = ET.fromstring(text[text.index("<svg"):])
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}metadata", f"{{{SVG_NS}}}style"):
                parent.remove(child)
    for el in root.iter():
        _unstyle(el)
        if "id" in el.attrib:
            el.set("id", f"{prefix}-{el.get('id')}")
        href = el.attrib.pop(XLINK, None)
        if href is not None:
            el.set("href", f"#{prefix}-{href[1:]}" if href.startswith("#") else href)
        for key, value in el.attrib.items():
            if "url(#" in value:
                el.set(key, value.replace("url(#", f"url(#{prefix}-"))
    for attr in ("width", "height"):
        root.attrib.pop(attr, None)
    root.attrib.update({"class": f"chart chart-{prefix}", "role": "img", "aria-label": title,
                        "stroke-linejoin": "round", "stroke-linecap": "butt"})
    heading = ET.Element(f"{{{SVG_NS}}}title")
    heading.text = title
    root.insert(0, heading)
    out = ET.tostring(root, encoding="unicode")
    return re.sub(_INK, "currentColor", out, flags=re.I)


def _unstyle(el: ET.Element) -> None:
    style = el.attrib.pop("style", None)
    if not style:
        return
    for declaration in style.split(";"):
        name, _, value = declaration.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name in _PROPERTIES and value:
            el.set(name, value)
