"""The ``watch`` display: a table per symbol, a footer of totals, and the exit summary.

Pure: a WatchState and ``now`` (wall-clock seconds) in, Rich renderables out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cryptoctl.render import numbers as fmt
from cryptoctl.render.sparkline import sparkline
from cryptoctl.watch.state import SymbolState, WatchState

FLASH_S = 1.0  # how long a price stays green/red after it moved
STALE_S = 30.0  # rows not updated for this long are dimmed
SPARK_WIDTH = 24


def _signed(value: float | None) -> Text:
    style = "green" if value and value > 0 else "red" if value and value < 0 else ""
    return Text(fmt.pct(value), style=style)


def price_text(sym: SymbolState, now: float) -> Text:
    """The last price, flashing green/red right after an up/down move."""
    arrow = {1: "▲", -1: "▼"}.get(sym.direction, " ")
    flashing = sym.moved_at is not None and now - sym.moved_at < FLASH_S and sym.direction
    style = ("bold green" if sym.direction > 0 else "bold red") if flashing else "bold"
    return Text(f"{fmt.price(sym.last_price)} {arrow}", style=style)


def candle_text(candle: Mapping[str, Any] | None) -> Text:
    """The aggregator's current 1-minute candle: ``O 1.00 H 1.20 L 0.90 C 1.10 · 12``."""
    if not candle:
        return Text("—", style="dim")
    try:
        o, h, low, c = (float(candle[k]) for k in ("open", "high", "low", "close"))
    except (KeyError, TypeError, ValueError):
        return Text("—", style="dim")
    text = Text(f"O {fmt.price(o)} H {fmt.price(h)} L {fmt.price(low)} ")
    text.append(f"C {fmt.price(c)}", style=fmt.direction_style(o, c))
    trades = candle.get("trades")
    if isinstance(trades, int | float) and not isinstance(trades, bool):
        text.append(f" · {int(trades)}", style="dim")
    return text


def watch_table(state: WatchState, now: float, *, show_candles: bool = True) -> Table:
    table = Table(header_style="bold", expand=False)
    table.add_column("symbol")
    for name in ("price", "chg", "24h", "high", "low", "ticks", "t/s", "age"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("recent", no_wrap=True)
    if show_candles:
        table.add_column("1m candle", no_wrap=True)
    for sym in state.ordered():
        cells: list[Text | str] = [
            sym.symbol,
            price_text(sym, now),
            _signed(sym.change_pct),
            _signed(sym.change_24h_pct),
            fmt.price(sym.high),
            fmt.price(sym.low),
            str(sym.ticks),
            fmt.rate(sym.rate(now)),
            fmt.age(sym.age(now)),
            Text(sparkline(sym.recent, SPARK_WIDTH), style="cyan"),
        ]
        if show_candles:
            cells.append(candle_text(state.candles.get(sym.symbol)))
        table.add_row(*cells, style="dim" if sym.age(now) >= STALE_S else None)
    return table


def footer(state: WatchState, now: float) -> Text:
    elapsed = state.elapsed(now)
    rate = state.ticks / elapsed if elapsed > 0 else 0.0
    text = Text()
    text.append(f"{state.ticks} ticks", style="bold")
    text.append(f" · {len(state.symbols)} symbols · {fmt.rate(rate)}/s · {fmt.age(elapsed)}")
    style = "bold red" if state.invalid else "dim"
    text.append(f" · invalid {state.invalid}", style=style)
    sources = ", ".join(f"{name} {count}" for name, count in sorted(state.sources.items()))
    text.append(f" · sources: {sources or '—'}")
    text.append(f" · candles: {state.cache_status}", style="dim")
    return text


def watch_view(state: WatchState, now: float, *, title: str | None = None) -> RenderableType:
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    if state.symbols:
        parts.append(watch_table(state, now))
    else:
        parts.append(Text("waiting for ticks…", style="dim"))
    parts.append(footer(state, now))
    hint = Text("Ctrl-C to stop", style="dim")
    parts.append(hint)
    return Group(*parts)


def summary(state: WatchState, now: float) -> Text:
    """The lines left after the watch ends (stderr)."""
    elapsed = state.elapsed(now)
    text = Text()
    text.append("watch summary: ", style="bold")
    text.append(
        f"{state.ticks} ticks from {len(state.symbols)} symbols in {fmt.age(elapsed)}, "
        f"{state.invalid} invalid"
    )
    for sym in state.ordered():
        text.append(
            f"\n  {sym.symbol:<6} last {fmt.price(sym.last_price)} ({fmt.pct(sym.change_pct)})"
            f"  high {fmt.price(sym.high)}  low {fmt.price(sym.low)}  ticks {sym.ticks}"
        )
    return text
