"""Rich tables for ``candles``, ``prices`` and ``stats`` (pure: rows in, Table out)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from cryptoctl.db.queries import Candle, LatestPrice, Stats24h
from cryptoctl.render import numbers as fmt

OPEN_MARK = "● open"


def _pct_text(value: float | None) -> Text:
    style = "green" if value and value > 0 else "red" if value and value < 0 else ""
    return Text(fmt.pct(value), style=style)


def candles_table(candles: Sequence[Candle], *, title: str | None = None) -> Table:
    """One row per candle, green when it closed above its open, red below; a non-final
    (still open) candle is marked."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("symbol")
    table.add_column("bucket (UTC)", no_wrap=True)
    for name in ("open", "high", "low", "close", "chg", "volume", "trades", "vwap"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for c in candles:
        change = (c.close / c.open - 1) * 100 if c.open else None
        table.add_row(
            c.symbol,
            fmt.utc_minute(c.bucket_ms),
            fmt.price(c.open),
            fmt.price(c.high),
            fmt.price(c.low),
            fmt.price(c.close),
            fmt.pct(change),
            fmt.quantity(c.volume),
            str(c.trades),
            fmt.price(c.vwap),
            Text("" if c.final else OPEN_MARK, style="bold yellow"),
            style=fmt.direction_style(c.open, c.close),
        )
    return table


def prices_table(prices: Sequence[LatestPrice]) -> Table:
    table = Table(header_style="bold")
    table.add_column("symbol")
    table.add_column("price", justify="right")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("source")
    table.add_column("from", style="dim")
    for p in prices:
        table.add_row(
            p.symbol,
            Text(fmt.price(p.price), style="bold"),
            fmt.utc_second(p.time_ms) if p.time_ms is not None else "—",
            p.source or "—",
            p.origin,
        )
    return table


def stats_table(stats: Sequence[Stats24h]) -> Table:
    table = Table(title="last 24 hours", title_justify="left", header_style="bold")
    table.add_column("symbol")
    for name in ("open", "high", "low", "last", "change", "volume", "trades"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in stats:
        table.add_row(
            s.symbol,
            fmt.price(s.open),
            fmt.price(s.high),
            fmt.price(s.low),
            Text(fmt.price(s.last), style="bold"),
            _pct_text(s.change_pct),
            fmt.quantity(s.volume),
            str(s.trades),
        )
    return table
