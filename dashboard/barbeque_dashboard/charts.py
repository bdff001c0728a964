"""Charts as inline SVG, built on the server: no JavaScript library, no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _nice(value: float) -> float:
    """A round upper bound for an axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value and value < 10 and value != int(value) else f"{value:.0f}"


def bar_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 200,
    label_every: int | None = None,
    css_class: str = "bars",
) -> Markup:
    """A bar chart of (label, value) points, with a y axis and hover titles."""
    left, bottom, top, right = 44, 28, 12, 8
    plot_w = width - left - right
    plot_h = height - top - bottom
    peak = _nice(max((v for _, v in points), default=0.0))
    if all(v == int(v) for _, v in points):
        peak = max(peak, 4.0)  # whole counts: keep the four grid steps whole numbers
    count = max(1, len(points))
    slot = plot_w / count
    bar_w = max(1.0, slot * 0.8)
    every = label_every or max(1, count // 8)
    parts = [
        f'<svg class="chart {css_class}" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    for index, (label, value) in enumerate(points):
        x = left + index * slot + (slot - bar_w) / 2
        h = plot_h * (value / peak) if peak else 0
        y = top + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>"
        )
        if index % every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    series: Sequence[tuple[str, Sequence[float]]],
    labels: Sequence[str],
    *,
    title: str,
    width: int = 720,
    height: int = 180,
) -> Markup:
    """Lines sharing one x axis (one point per label), with a legend."""
    left, bottom, top, right = 44, 28, 22, 8
    plot_w = width - left - right
    plot_h = height - top - bottom
    peak = _nice(max((v for _, values in series for v in values), default=0.0))
    peak = max(peak, 4.0)
    count = max(2, len(labels))
    parts = [
        f'<svg class="chart lines" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(peak * i / 4)}</text>"
        )
    every = max(1, len(labels) // 6)
    for index, label in enumerate(labels):
        if index % every == 0:
            x = left + plot_w * index / (count - 1)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    for number, (name, values) in enumerate(series):
        points = " ".join(
            f"{left + plot_w * i / (count - 1):.1f},{top + plot_h - plot_h * v / peak:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(f'<polyline class="line line-{number}" fill="none" points="{points}"/>')
        parts.append(
            f'<text class="legend line-{number}" x="{left + 8 + 110 * number}" y="14">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
