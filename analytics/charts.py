"""Geometry of the small SVG charts drawn per request (monitoring, feature importance).

Pages draw these as plain SVG rectangles from the numbers below: cheap, sharp at any size,
readable by screen readers through their titles, and allowed by the strict CSP (presentation
attributes, no inline styles or scripts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 30


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def column_chart(items: Sequence[tuple[str, float, float]], *, marker: float | None = None,
                 label_every: int = 1) -> dict:
    """Columns for (label, value, highlighted part of the value); `marker` is a position in [0, 1] on x."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = nice_ceiling(max((value for _, value, _ in items), default=0))
    step = plot_width / max(len(items), 1)
    baseline = TOP + plot_height
    bars = []
    for index, (label, value, part) in enumerate(items):
        height, part_height = value / peak * plot_height, part / peak * plot_height
        x = LEFT + index * step + step * 0.1
        bars.append({
            "label": label, "value": value, "part": part, "x": round(x, 2), "width": round(step * 0.8, 2),
            "y": round(baseline - height, 2), "height": round(height, 2),
            "part_y": round(baseline - part_height, 2), "part_height": round(part_height, 2),
            "label_x": round(x + step * 0.4, 2), "show_label": index % label_every == 0,
        })
    ticks = [{"y": round(baseline - f * plot_height, 2), "label": _number(peak * f)} for f in (0, 0.5, 1)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "baseline": baseline,
        "label_y": baseline + 16, "bars": bars, "ticks": ticks,
        "marker_x": None if marker is None else round(LEFT + marker * plot_width, 2), "marker_top": TOP,
    }


def share_bars(values: dict[str, float]) -> list[dict]:
    """Horizontal bars, widths in percent of the largest value, largest first."""
    peak = max(values.values(), default=0) or 1.0
    return [{"name": name, "value": value, "width": round(100 * value / peak, 2)}
            for name, value in sorted(values.items(), key=lambda item: -item[1])]
