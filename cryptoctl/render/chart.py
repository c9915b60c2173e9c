"""A candlestick chart drawn with box characters, as wide as the terminal.

Each candle gets an equal slot of the width: a wick ``│`` (high to low) in the middle of
a body ``█`` (open to close) up to :data:`MAX_BODY` columns wide, green when the candle
closed at or above its open, red below; an open (non-final) candle is drawn dim. When there
are more candles than columns, the newest that fit are shown. The price axis is on the
left; under the plot a volume row (``▁`` to ``█``, scaled to the largest volume shown) and
time labels, each centred under the candle it names and never past the end of the chart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rich.text import Text

from cryptoctl.db.queries import CandleRow
from cryptoctl.render import numbers as fmt

BODY = "█"
WICK = "│"
VOLUME_BARS = "▁▂▃▄▅▆▇█"
MAX_BODY = 7  # wider bodies only look like blocks
LABEL_GAP = 3  # spaces at least between two time labels
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Layout:
    """Columns per candle (``slot``) and the odd width of its body, centred in the slot."""

    slot: int
    body: int

    @classmethod
    def for_slot(cls, slot: int) -> Layout:
        body = min(MAX_BODY, max(1, slot - 1))
        return cls(slot, body - 1 if body % 2 == 0 else body)

    @property
    def lead(self) -> int:
        """Blank columns before the body."""
        return (self.slot - self.body) // 2

    def centre(self, index: int) -> int:
        """Column of the wick of candle ``index``, from the start of the plot."""
        return index * self.slot + self.lead + self.body // 2


def fit(candles: Sequence[CandleRow], plot_width: int) -> tuple[list[CandleRow], int]:
    """The newest candles that fit, and the columns per candle (the width shared out)."""
    plot_width = max(1, plot_width)
    shown = list(candles)[-plot_width:]
    return shown, max(1, plot_width // max(1, len(shown)))


def _row(price: float, top: float, bottom: float, height: int) -> int:
    """Row of a price, 0 at the top."""
    if top == bottom:
        return height // 2
    return round((top - price) / (top - bottom) * (height - 1))


def _slot(candle: CandleRow, layout: Layout, row: int, top: float, bottom: float, height: int) -> str:
    """One row of one candle's slot: blanks, then the body (or the wick in its middle)."""
    body_top = _row(max(candle.open, candle.close), top, bottom, height)
    body_bottom = _row(min(candle.open, candle.close), top, bottom, height)
    in_wick = _row(candle.high, top, bottom, height) <= row <= _row(candle.low, top, bottom, height)
    half = layout.body // 2
    if body_top <= row <= body_bottom:
        body = BODY * layout.body
    elif in_wick:
        body = " " * half + WICK + " " * half
    else:
        body = " " * layout.body
    return " " * layout.lead + body + " " * (layout.slot - layout.lead - layout.body)


def _style(candle: CandleRow) -> str:
    colour = "green" if candle.close >= candle.open else "red"
    return colour if candle.final else f"dim {colour}"


def _labels(top: float, bottom: float, height: int) -> dict[int, str]:
    """Price labels at the top, middle and bottom rows."""
    rows = {0, height - 1} | ({(height - 1) // 2} if height >= 5 else set())
    return {row: fmt.price(top - (top - bottom) * row / max(1, height - 1)) for row in rows}


def _volume_bar(volume: float, most: float) -> str:
    if volume <= 0 or most <= 0:
        return " "
    return VOLUME_BARS[min(len(VOLUME_BARS) - 1, int(volume / most * len(VOLUME_BARS)))]


Form = Callable[[int], str]


def _date(ms: int) -> str:
    return fmt.utc_minute(ms)[:10]  # 2026-11-01


def _month_day(ms: int) -> str:
    return fmt.utc_minute(ms)[5:10]  # 11-01


def _month_day_time(ms: int) -> str:
    return fmt.utc_minute(ms)[5:]  # 11-01 14:05


def _time(ms: int) -> str:
    return fmt.utc_minute(ms)[11:]  # 14:05


def _forms(shown: Sequence[CandleRow]) -> list[tuple[Form, Form]]:
    """(first label, other labels) formats, most telling first. The date is said once
    when all candles are on one day; daily candles have no time of day."""
    stamps = [c.bucket_ms for c in shown]
    if len(stamps) > 1 and all(ms % DAY_MS == 0 for ms in stamps):
        return [(_date, _month_day), (_month_day, _month_day)]
    minute, month_day_time, time = fmt.utc_minute, _month_day_time, _time
    if len({ms // DAY_MS for ms in stamps}) == 1:
        return [(minute, time), (month_day_time, time), (time, time)]
    return [(minute, month_day_time), (month_day_time, month_day_time), (time, time)]


def _place(texts: list[str], centres: list[int], limit: int) -> dict[int, int] | None:
    """Start column per labelled candle: the first, the last, and every k-th between for
    the smallest k whose labels keep :data:`LABEL_GAP` spaces apart. ``None`` when first and
    last alone do not fit in ``limit`` columns."""
    last = len(texts) - 1

    def start(i: int) -> int:  # centred under its wick, moved inside at either end
        return max(0, min(centres[i] - len(texts[i]) // 2, limit - len(texts[i])))

    def apart(chosen: list[int]) -> bool:
        ends = [(start(i), start(i) + len(texts[i])) for i in chosen]
        return all(b[0] - a[1] >= LABEL_GAP for a, b in pairwise(ends))

    if max(len(texts[0]), len(texts[last])) > limit:
        return None
    for every in range(1, last + 1):
        chosen = [*range(0, last, every), last]
        if len(chosen) > 2 and not apart(chosen[-2:]):
            chosen.pop(-2)  # the regular label just before the last one gives way
        if apart(chosen):
            return {i: start(i) for i in chosen}
    return {0: start(0)} if last == 0 else None


def _time_axis(shown: Sequence[CandleRow], layout: Layout, room: int) -> tuple[str, str]:
    """The axis line with a ``┬`` under each labelled candle, and the label line."""
    plot = len(shown) * layout.slot
    centres = [layout.centre(i) for i in range(len(shown))]
    placed: dict[int, int] = {}
    texts: list[str] = []
    for limit in (plot, room):  # under the chart; past it only if not even HH:MM fits
        for first, other in _forms(shown):
            texts = [(first if i == 0 else other)(c.bucket_ms) for i, c in enumerate(shown)]
            placed = _place(texts, centres, limit) or {}
            if placed:
                break
        if placed:
            break
    if not placed:  # too narrow for two labels: the first one alone
        for limit in (plot, room):
            for first, _ in _forms(shown):
                texts = [first(shown[0].bucket_ms)]
                if len(texts[0]) <= limit:
                    at = centres[0] - len(texts[0]) // 2
                    placed = {0: max(0, min(at, limit - len(texts[0])))}
                    break
            if placed:
                break
    axis = ["─"] * plot
    labels = [" "] * max([plot, *(at + len(texts[i]) for i, at in placed.items())])
    for i, at in placed.items():
        axis[centres[i]] = "┬"
        labels[at : at + len(texts[i])] = texts[i]
    return "└" + "".join(axis), "".join(labels).rstrip()


def candle_chart(
    candles: Sequence[CandleRow], *, width: int, height: int = 15, title: str | None = None
) -> Text:
    """The chart as Rich Text: ``height`` plot rows, a volume row and a time axis, at most
    ``width`` wide."""
    if not candles:
        return Text("no candles")

    def gutter_of(rows: Sequence[CandleRow]) -> tuple[dict[int, str], str, int]:
        labels = _labels(max(c.high for c in rows), min(c.low for c in rows), height)
        most = max(c.volume for c in rows)
        volume = f"vol {fmt.quantity(most)}" if most > 0 else ""
        return labels, volume, max(len(volume), *map(len, labels.values()))

    *_, gutter = gutter_of(candles)
    shown, slot = fit(candles, width - gutter - 2)
    labels, volume_label, gutter = gutter_of(shown)
    # The shown candles' labels can be wider than all candles' (another price range):
    # fit again to the gutter actually drawn, so no line is wider than ``width``.
    while gutter + 2 + len(shown) * slot > width and len(shown) > 1:
        shown, slot = fit(shown, width - gutter - 2)
        labels, volume_label, gutter = gutter_of(shown)
    layout = Layout.for_slot(slot)
    top, bottom = max(c.high for c in shown), min(c.low for c in shown)
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    for row in range(height):
        prefix = labels[row].rjust(gutter) + " ┤" if row in labels else " " * gutter + " │"
        out.append(prefix, style="dim")
        for candle in shown:
            out.append(_slot(candle, layout, row, top, bottom, height), style=_style(candle))
        out.append("\n")
    if volume_label:
        most = max(c.volume for c in shown)
        out.append(volume_label.rjust(gutter) + " ┤", style="dim")
        for candle in shown:
            bar = _volume_bar(candle.volume, most) * layout.body
            cell = " " * layout.lead + bar + " " * (layout.slot - layout.lead - layout.body)
            out.append(cell, style=f"dim {_style(candle).removeprefix('dim ')}")
        out.append("\n")
    axis, times = _time_axis(shown, layout, width - gutter - 2)
    out.append(" " * (gutter + 1) + axis + "\n", style="dim")
    out.append(" " * (gutter + 2) + times, style="dim")
    return out
