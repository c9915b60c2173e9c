"""`cryptoctl candles`, `prices`, `stats`: the stored data, as a table, JSON or CSV."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import typer

from cryptoctl.cli.context import state
from cryptoctl.cli.options import (
    FILTER_SYMBOLS_HELP,
    OutputFormat,
    format_option,
    market_source_option,
    quote_option,
    symbols_option,
)
from cryptoctl.errors import UsageError


class Interval(enum.StrEnum):
    m1 = "1m"
    m5 = "5m"
    m15 = "15m"
    h1 = "1h"
    h4 = "4h"
    d1 = "1d"


FORMAT_HELP = "Output format: a table for people, json or csv for scripts."


def filter_symbols_option() -> Any:
    return symbols_option(None, FILTER_SYMBOLS_HELP)


def output_format_option() -> Any:
    return format_option(OutputFormat.table, FORMAT_HELP)


def parse_time(flag: str, text: str, now_ms: int) -> int:
    from cryptoctl.times import parse_time_ms

    try:
        return parse_time_ms(text, now_ms=now_ms)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def time_range(since: str, until: str | None, now_ms: int) -> tuple[int, int]:
    start = parse_time("--since", since, now_ms)
    end = parse_time("--until", until, now_ms) if until else now_ms
    if start >= end:
        raise UsageError(
            f"--since must be before --until (got {since!r} .. {until or 'now'!r})",
            hint="e.g. --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z",
        )
    return start, end


def emit(
    fmt: OutputFormat,
    rows: Sequence[Any],
    *,
    record: Callable[[Any], dict[str, Any]],
    fields: Sequence[str],
    table: Callable[[Sequence[Any]], Any],
    ctx: typer.Context,
) -> None:
    """Data to stdout in the chosen format."""
    from cryptoctl.render.serialize import to_csv, to_json

    out = state(ctx).out
    if fmt is OutputFormat.json:
        out.file.write(to_json(record(r) for r in rows))
    elif fmt is OutputFormat.csv:
        out.file.write(to_csv((record(r) for r in rows), fields))
    else:
        out.print(table(rows))


def selection(symbols: Sequence[str] | None, source: str | None, quote: str | None) -> str:
    """The markets asked for, in words: ``BTC from binance in USDT``, ``any symbol``."""
    which = ", ".join(symbols) if symbols else "any symbol"
    return which + (f" from {source}" if source else "") + (f" in {quote}" if quote else "")


def candles(
    ctx: typer.Context,
    symbols: list[str] | None = filter_symbols_option(),
    source: str | None = market_source_option(),
    quote: str | None = quote_option(),
    since: str = typer.Option(
        "1h", "--since", help="Start: a duration back from now (1h, 30m) or ISO-8601 UTC."
    ),
    until: str | None = typer.Option(None, "--until", help="End (exclusive), like --since. Default: now."),
    interval: Interval = typer.Option(
        Interval.m1, "--interval", "-i", help="Candle width, rolled up from 1-minute candles."
    ),
    fmt: OutputFormat = output_format_option(),
    chart: bool = typer.Option(
        False, "--chart", help="Draw a candlestick chart per symbol (one market each: see --source)."
    ),
    height: int = typer.Option(15, "--height", min=4, max=60, help="Chart height in rows."),
) -> None:
    """Stored OHLC candles of any interval (1m, 5m, 15m, 1h, 4h, 1d), UTC-aligned, per market.

    A market is (source, symbol, quote): Binance BTC/USDT and Coinbase BTC/USD have candles
    of their own; `--source`/`--quote` pick among them. Larger intervals are rolled up in
    SQL from the 1-minute candles. `--since` is rounded down to the interval so the first
    candle is whole. An open (not yet final) candle is marked ● in the table and has
    `"final": false` in JSON/CSV; one the exchange feed missed trades of is marked ! and has
    `"complete": false`.
    """
    from cryptoctl.db.queries import load_candles
    from cryptoctl.render.serialize import CANDLE_FIELDS, candle_record

    st = state(ctx)
    now_ms = int(time.time() * 1000)
    start, end = time_range(since, until, now_ms)
    rows = load_candles(
        st.settings(), interval=interval.value, since_ms=start, until_ms=end, symbols=symbols,
        source=source, quote=quote,
    )  # fmt: skip
    if not rows:
        _say_empty(ctx, selection(symbols, source, quote), start, end)
        if fmt is OutputFormat.table:
            return
    if chart and fmt is OutputFormat.table:
        _print_charts(ctx, rows, interval.value, height)
        return
    table = partial(_candles_tables, interval=interval.value, width=st.out.width)
    emit(fmt, rows, record=candle_record, fields=CANDLE_FIELDS, table=table, ctx=ctx)


def _candles_tables(rows: Sequence[Any], interval: str, width: int) -> Any:
    from cryptoctl.render.tables import candles_tables

    return candles_tables(rows, interval=interval, width=width)


def _say_empty(ctx: typer.Context, which: str, start: int, end: int) -> None:
    from cryptoctl.times import iso_utc

    state(ctx).err.print(
        f"no candles for {which} between {iso_utc(start)} and {iso_utc(end)} "
        "[dim](is the aggregator running? `cryptoctl run` starts the whole pipeline)[/]"
    )


def chart_markets(rows: Sequence[Any]) -> list[Any]:
    """The market of each symbol's chart, by symbol; a usage error naming the markets when
    a symbol has several (a chart draws one market)."""
    markets = sorted({c.market for c in rows})
    for symbol in sorted({m.symbol for m in markets}):
        mine = [m for m in markets if m.symbol == symbol]
        if len(mine) > 1:
            raise UsageError(
                f"--chart draws one market at a time, and {symbol} has {len(mine)} here: "
                + ", ".join(str(m) for m in mine),
                hint=f"pick one with --source/--quote, e.g. --source {mine[0].source}"
                f" --quote {mine[0].quote}",
            )
    return markets


def _print_charts(ctx: typer.Context, rows: Sequence[Any], interval: str, height: int) -> None:
    from cryptoctl.render.chart import candle_chart

    out = state(ctx).out
    for market in chart_markets(rows):
        mine = [c for c in rows if c.market == market]
        title = f"{market} · {interval} · {len(mine)} candles"
        out.print(candle_chart(mine, width=out.width, height=height, title=title))
        out.print()


def prices(
    ctx: typer.Context,
    symbols: list[str] | None = filter_symbols_option(),
    source: str | None = market_source_option(),
    quote: str | None = quote_option(),
    fmt: OutputFormat = output_format_option(),
) -> None:
    """Latest price per market: from Redis, or PostgreSQL (v_latest_prices) as a fallback."""
    from cryptoctl.cache.reader import latest_prices_with_fallback
    from cryptoctl.render.serialize import PRICE_FIELDS, price_record
    from cryptoctl.render.tables import prices_table

    st = state(ctx)
    rows, note = latest_prices_with_fallback(st.settings(), symbols, source=source, quote=quote)
    if note:
        st.err.print(f"[dim]{note}[/]")
    if not rows:
        st.err.print(
            f"no prices yet for {selection(symbols, source, quote)}"
            " [dim](start the pipeline with `cryptoctl run`)[/]"
        )
        if fmt is OutputFormat.table:
            return
    table = partial(prices_table, width=st.out.width)
    emit(fmt, rows, record=price_record, fields=PRICE_FIELDS, table=table, ctx=ctx)


def stats(
    ctx: typer.Context,
    symbols: list[str] | None = filter_symbols_option(),
    source: str | None = market_source_option(),
    quote: str | None = quote_option(),
    fmt: OutputFormat = output_format_option(),
) -> None:
    """24-hour open/high/low/last/change/volume per market (view v_price_stats_24h)."""
    from cryptoctl.db.queries import load_stats_24h
    from cryptoctl.render.serialize import STATS_FIELDS, stats_record
    from cryptoctl.render.tables import stats_table

    st = state(ctx)
    rows = load_stats_24h(st.settings(), symbols, source=source, quote=quote)
    if not rows:
        st.err.print(
            f"no candles for {selection(symbols, source, quote)} in the last 24 hours"
            " [dim](`cryptoctl run` starts the pipeline)[/]"
        )
        if fmt is OutputFormat.table:
            return
    table = partial(stats_table, width=st.out.width)
    emit(fmt, rows, record=stats_record, fields=STATS_FIELDS, table=table, ctx=ctx)


def register(app: typer.Typer) -> None:
    app.command("candles")(candles)
    app.command("prices")(prices)
    app.command("stats")(stats)
