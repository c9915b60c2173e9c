"""Human formatting of prices, percentages, volumes, rates and ages (for tables only;
JSON and CSV carry the raw numbers)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from cryptoctl.times import format_duration_ms


def price(value: float | None) -> str:
    """Enough decimals for the magnitude: 67,012.35 · 3,456.78 · 145.23 · 0.4567 · 0.00001234."""
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.2f}"
    if magnitude >= 1:
        return f"{value:.2f}" if magnitude >= 100 else f"{value:.4f}"
    if magnitude == 0:
        return "0"
    decimals = min(12, 3 - math.floor(math.log10(magnitude)))
    return f"{value:.{decimals}f}"


def pct(value: float | None, *, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.2f}%" if signed else f"{value:.2f}%"


def quantity(value: float | None) -> str:
    """Volumes: 1,234.5 · 12.3456 · 0 · 1.2M."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:,.2f}M"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def age(seconds: float) -> str:
    """0.4s · 12s · 3m05s · 2h10m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return format_duration_ms(seconds * 1000)


def utc_minute(ms: int) -> str:
    """Epoch ms -> ``2026-11-01 14:05`` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def utc_second(ms: int) -> str:
    """Epoch ms -> ``2026-11-01 14:05:09`` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc_clock(ms: int) -> str:
    """Epoch ms -> ``14:05:09`` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def direction_style(first: float, last: float) -> str:
    if last > first:
        return "green"
    if last < first:
        return "red"
    return ""
