"""A one-line sparkline of recent prices."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int | None = None) -> str:
    """The last ``width`` values scaled between their min and max; flat data is mid-height."""
    points = list(values)[-width:] if width else list(values)
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return BARS[len(BARS) // 2 - 1] * len(points)
    top = len(BARS) - 1
    return "".join(BARS[round((v - low) / (high - low) * top)] for v in points)
