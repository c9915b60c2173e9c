"""A candlestick chart drawn with box characters, one column per candle.

Wicks are ``│`` (high to low), bodies ``█`` (open to close), green when the candle closed
at or above its open, red below; an open (non-final) candle is drawn dim. The price axis
is on the left; the first and last bucket times are under the plot.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from cryptoctl.db.queries import Candle
from cryptoctl.render import numbers as fmt

BODY = "█"
WICK = "│"


def _row(price: float, top: float, bottom: float, height: int) -> int:
    """Row of a price, 0 at the top."""
    if top == bottom:
        return height // 2
    return round((top - price) / (top - bottom) * (height - 1))


def _cell(candle: Candle, row: int, top: float, bottom: float, height: int) -> str:
    body_top = _row(max(candle.open, candle.close), top, bottom, height)
    body_bottom = _row(min(candle.open, candle.close), top, bottom, height)
    if body_top <= row <= body_bottom:
        return BODY
    if _row(candle.high, top, bottom, height) <= row <= _row(candle.low, top, bottom, height):
        return WICK
    return " "


def _style(candle: Candle) -> str:
    colour = "green" if candle.close >= candle.open else "red"
    return colour if candle.final else f"dim {colour}"


def fit(candles: Sequence[Candle], plot_width: int) -> tuple[list[Candle], int]:
    """The newest candles that fit, and the columns per candle (2 with a gap, else 1)."""
    step = 2 if len(candles) * 2 <= plot_width else 1
    count = max(1, plot_width // step)
    return list(candles)[-count:], step


def _labels(top: float, bottom: float, height: int) -> dict[int, str]:
    """Price labels at the top, middle and bottom rows."""
    rows = {0, height - 1} | ({(height - 1) // 2} if height >= 5 else set())
    return {row: fmt.price(top - (top - bottom) * row / max(1, height - 1)) for row in rows}


def _axis(shown: Sequence[Candle], step: int, room: int) -> str:
    """First and last bucket under the plot; times only (HH:MM) when dates do not fit."""
    for form in (fmt.utc_minute, lambda ms: fmt.utc_minute(ms)[11:]):
        first, last = form(shown[0].bucket_ms), form(shown[-1].bucket_ms)
        if len(shown) == 1:
            return first
        span = max(len(shown) * step, len(first) + len(last) + 1)
        if span <= room:
            return first + last.rjust(span - len(first))
    return last.rjust(min(room, len(shown) * step))


def candle_chart(
    candles: Sequence[Candle], *, width: int, height: int = 15, title: str | None = None
) -> Text:
    """The chart as Rich Text: ``height`` plot rows and a time axis, at most ``width`` wide."""
    if not candles:
        return Text("no candles")
    gutter = max(
        map(len, _labels(max(c.high for c in candles), min(c.low for c in candles), height).values())
    )
    shown, step = fit(candles, max(1, width - gutter - 2))
    top, bottom = max(c.high for c in shown), min(c.low for c in shown)
    labels = _labels(top, bottom, height)
    gutter = max(map(len, labels.values()))
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    for row in range(height):
        prefix = labels[row].rjust(gutter) + " ┤" if row in labels else " " * gutter + " │"
        out.append(prefix, style="dim")
        for candle in shown:
            out.append(_cell(candle, row, top, bottom, height), style=_style(candle))
            if step == 2:
                out.append(" ")
        out.append("\n")
    out.append(" " * (gutter + 1) + "└" + "─" * (len(shown) * step) + "\n", style="dim")
    out.append(" " * (gutter + 2) + _axis(shown, step, width - gutter - 2), style="dim")
    return out
