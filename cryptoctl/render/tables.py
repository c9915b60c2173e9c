"""Rich tables for ``candles``, ``prices`` and ``stats`` (pure: rows in, Table out).

Rows are per market (source, symbol, quote). Candles get one table per market, the market
in its title; prices and stats one row per market, with quote and source columns. Given
a terminal width, a table leaves out its lesser columns until it fits, rather than cut a
price short.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cryptoctl.db.queries import CandleRow, LatestPrice, Stats24h
from cryptoctl.render import numbers as fmt

OPEN_MARK = "●"
INCOMPLETE_MARK = "!"
OPEN_LEGEND = f"{OPEN_MARK} = open candle, still updating"
INCOMPLETE_LEGEND = f"{INCOMPLETE_MARK} = incomplete: the exchange feed missed trades of it (feed_gaps)"


def _pct_text(value: float | None) -> Text:
    style = "green" if value and value > 0 else "red" if value and value < 0 else ""
    return Text(fmt.pct(value), style=style)


def natural_width(table: Table) -> int:
    """Columns the table takes when nothing limits it (measured without a terminal)."""
    console = Console(width=10_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, table).maximum


def fitted(build: Callable[[set[str]], Table], droppable: Sequence[str], width: int | None) -> Table:
    """``build(left_out)`` leaving out the ``droppable`` columns, the first first, until
    the table fits ``width`` (or nothing is left to leave out)."""
    left_out: set[str] = set()
    table = build(left_out)
    for name in droppable:
        if width is None or natural_width(table) <= width:
            break
        left_out.add(name)
        table = build(left_out)
    return table


WIDE = 110  # below this many columns the candles table leaves out volume and VWAP


def candles_tables(
    candles: Sequence[CandleRow], *, interval: str, width: int | None = None
) -> RenderableType:
    """One table per market (``binance BTC/USDT · 1m candles``), in market order, then the
    legend of the marks used."""
    markets = sorted({c.market for c in candles})
    parts: list[RenderableType] = [
        candles_table([c for c in candles if c.market == m], title=f"{interval} candles", width=width)
        for m in markets
    ]
    parts += [Text(line) for line in candle_legend(candles)]
    return Group(*parts)


def candle_legend(candles: Sequence[CandleRow]) -> list[str]:
    """The lines explaining the marks these candles get."""
    return [OPEN_LEGEND] * any(not c.final for c in candles) + [INCOMPLETE_LEGEND] * any(
        not c.complete for c in candles
    )


def candle_marks(c: CandleRow) -> str:
    return ("" if c.final else OPEN_MARK) + ("" if c.complete else INCOMPLETE_MARK)


def candles_table(
    candles: Sequence[CandleRow], *, title: str | None = None, width: int | None = None
) -> Table:
    """The candles of one market, its name leading the title: one row per candle, green when
    it closed above its open, red below; a non-final (still open) candle is marked ●, an
    incomplete one (a feed gap) !. Narrow terminals get OHLC, change and trades only."""
    markets = {c.market for c in candles}
    if len(markets) > 1:
        raise ValueError(f"candles of {len(markets)} markets: one table per market (candles_tables)")
    if markets:
        market = str(next(iter(markets)))
        title = f"{market} · {title}" if title else market
    wide = width is None or width >= WIDE
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    # Narrow: short bucket times, no volume/VWAP.
    columns = ["bucket (UTC)", "open", "high", "low", "close", "chg", "trades"]
    columns += ["volume", "vwap"] if wide else []
    when = fmt.utc_minute if wide else (lambda ms: fmt.utc_minute(ms)[5:])
    for name in columns:
        table.add_column(name, justify="left" if name.startswith("bucket") else "right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for c in candles:
        change = (c.close / c.open - 1) * 100 if c.open else None
        cells: list[str | Text] = [
            when(c.bucket_ms),
            fmt.price(c.open),
            fmt.price(c.high),
            fmt.price(c.low),
            fmt.price(c.close),
            fmt.pct(change),
            str(c.trades),
        ]
        if wide:
            cells += [fmt.quantity(c.volume), fmt.price(c.vwap)]
        cells.append(Text(candle_marks(c), style="bold yellow"))
        table.add_row(*cells, style=fmt.direction_style(c.open, c.close))
    return table


def prices_table(prices: Sequence[LatestPrice], width: int | None = None) -> Table:
    """One row per market. Narrow terminals lose ``from``, then the time, never a price."""

    def build(left_out: set[str]) -> Table:
        table = Table(header_style="bold")
        table.add_column("symbol", no_wrap=True)
        table.add_column("quote", no_wrap=True)
        table.add_column("source", no_wrap=True)
        table.add_column("price", justify="right", no_wrap=True)
        if "time" not in left_out:
            table.add_column("time (UTC)", no_wrap=True)
        if "from" not in left_out:
            table.add_column("from", style="dim", no_wrap=True)
        for p in prices:
            cells: list[str | Text] = [p.symbol, p.quote or "—", p.source or "—",
                                       Text(fmt.price(p.price), style="bold")]
            if "time" not in left_out:
                cells.append(fmt.utc_second(p.time_ms) if p.time_ms is not None else "—")
            if "from" not in left_out:
                cells.append(p.origin)
            table.add_row(*cells)
        return table

    return fitted(build, ["from", "time"], width)


STATS_COLUMNS = ("open", "high", "low", "last", "change", "volume", "trades")


def stats_table(stats: Sequence[Stats24h], width: int | None = None) -> Table:
    """One row per market. Narrow terminals lose trades, then open, then volume (the change
    says where it opened)."""

    def build(left_out: set[str]) -> Table:
        table = Table(
            title="last 24 hours", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
            pad_edge=False, collapse_padding=True,
        )  # fmt: skip
        table.add_column("symbol", no_wrap=True, min_width=4)
        table.add_column("quote", no_wrap=True)
        table.add_column("source", no_wrap=True)
        shown = [n for n in STATS_COLUMNS if n not in left_out]
        for name in shown:
            table.add_column(name, justify="right", no_wrap=True)
        for s in stats:
            cells: dict[str, str | Text] = {
                "open": fmt.price(s.open),
                "high": fmt.price(s.high),
                "low": fmt.price(s.low),
                "last": Text(fmt.price(s.last), style="bold"),
                "change": _pct_text(s.change_pct),
                "volume": fmt.quantity(s.volume),
                "trades": str(s.trades),
            }
            table.add_row(s.symbol, s.quote, s.source, *(cells[n] for n in shown))
        return table

    return fitted(build, ["trades", "open", "volume"], width)
