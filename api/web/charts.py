"""Bar charts as inline SVG, drawn on the server: no chart library, nothing to download,
and the figures are in the page itself (each bar carries its label and value).

A bar may stack several series (input and output tokens); one series is a plain bar
chart. Colours come from the stylesheet (`.chart .s0`, `.s1`, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 28, 24
LABEL_EVERY_PX = 80  # at most one x-axis label this close together

Bar = tuple[str, Sequence[float]]  # label, one value per series (stacked bottom up)


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if value <= step * power * 1.000001)


def bar_chart(
    bars: Sequence[Bar],
    *,
    series: Sequence[str],
    title: str,
    value_text: Callable[[float], str],
    axis_text: Callable[[float], str] | None = None,
) -> Markup:
    """One bar per (label, values); zero values make zero-height bars, still labelled."""
    axis_text = axis_text or value_text
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((sum(values) for _, values in bars), default=0.0))
    slot = plot_w / max(len(bars), 1)
    label_every = max(1, math.ceil(LABEL_EVERY_PX / slot))
    base = TOP + plot_h

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = base - fraction * plot_h
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(axis_text(top * fraction))}</text>"
        )
    if len(series) > 1:
        for i, name in enumerate(series):
            key_x = LEFT + i * 90
            parts.append(
                f'<rect class="s{i}" x="{key_x}" y="6" width="10" height="10"/>'
                f'<text x="{key_x + 14}" y="15">{escape(name)}</text>'
            )
    for i, (label, values) in enumerate(bars):
        x = LEFT + i * slot + slot * 0.15
        width = max(slot * 0.7, 1.0)
        described = ", ".join(
            f"{value_text(v)} {name}" if len(series) > 1 else value_text(v)
            for name, v in zip(series, values, strict=True)
        )
        parts.append(
            f'<g class="bar" data-label="{escape(label)}" data-value="{sum(values)!r}">'
            f"<title>{escape(label)}: {escape(described)}</title>"
        )
        y = base
        for s, value in enumerate(values):
            height = value / top * plot_h
            y -= height
            parts.append(
                f'<rect class="s{s}" x="{x:.2f}" y="{y:.2f}" width="{width:.2f}" '
                f'height="{height:.2f}" data-series="{escape(series[s])}"/>'
            )
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
