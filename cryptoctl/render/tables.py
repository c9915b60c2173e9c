"""Rich tables for ``candles``, ``prices`` and ``stats`` (pure: rows in, Table out)."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from cryptoctl.db.queries import Candle, LatestPrice, Stats24h
from cryptoctl.render import numbers as fmt

OPEN_MARK = "●"


def _pct_text(value: float | None) -> Text:
    style = "green" if value and value > 0 else "red" if value and value < 0 else ""
    return Text(fmt.pct(value), style=style)


WIDE = 110  # below this many columns the candles table leaves out volume and VWAP


def candles_table(candles: Sequence[Candle], *, title: str | None = None, width: int | None = None) -> Table:
    """One row per candle, green when it closed above its open, red below; a non-final
    (still open) candle is marked ●. Narrow terminals get the OHLC columns only, and a
    single symbol moves from a column into the title."""
    symbols = sorted({c.symbol for c in candles})
    one_symbol = len(symbols) == 1
    if one_symbol:
        title = f"{symbols[0]} {title}" if title else symbols[0]
    wide = width is None or width >= WIDE
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        caption=f"{OPEN_MARK} = open candle, still updating" if not all(c.final for c in candles) else None,
        caption_justify="left",
    )
    # Narrow: short bucket times, no volume/VWAP, and no trades when a symbol column is needed.
    columns = ["bucket (UTC)", "open", "high", "low", "close", "chg"]
    columns += ["trades", "volume", "vwap"] if wide else ["trades"] if one_symbol else []
    when = fmt.utc_minute if wide else (lambda ms: fmt.utc_minute(ms)[5:])
    if not one_symbol:
        table.add_column("symbol")
    for name in columns:
        table.add_column(name, justify="left" if name.startswith("bucket") else "right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for c in candles:
        change = (c.close / c.open - 1) * 100 if c.open else None
        cells: list[str | Text] = [] if one_symbol else [c.symbol]
        cells += [
            when(c.bucket_ms),
            fmt.price(c.open),
            fmt.price(c.high),
            fmt.price(c.low),
            fmt.price(c.close),
            fmt.pct(change),
        ]
        if "trades" in columns:
            cells.append(str(c.trades))
        if wide:
            cells += [fmt.quantity(c.volume), fmt.price(c.vwap)]
        cells.append(Text("" if c.final else OPEN_MARK, style="bold yellow"))
        table.add_row(*cells, style=fmt.direction_style(c.open, c.close))
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
    table = Table(
        title="last 24 hours", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        pad_edge=False, collapse_padding=True,
    )
    table.add_column("symbol", no_wrap=True, min_width=4)
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
