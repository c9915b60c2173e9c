"""`cryptoctl verify`: our stored 1-minute candles against the exchange's own, minute by minute."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import ViewFormat, format_option, symbols_option

if TYPE_CHECKING:
    from cryptoctl.exchanges.trade import Market
    from cryptoctl.exchanges.verify_run import CandleHistory, MarketReport, Plan

# Wall time, in seconds: which minutes are closed. Tests put a fixed clock here.
clock: Callable[[], float] = time.time


class Exchange(enum.StrEnum):
    binance = "binance"
    coinbase = "coinbase"
    kraken = "kraken"


def verify(
    ctx: typer.Context,
    source: Exchange = typer.Option(
        ..., "--source", help="The exchange whose candles to compare with: binance, coinbase or kraken."
    ),
    symbols: list[str] | None = symbols_option(
        None, "Base assets to verify (repeatable, or comma-separated: BTC,ETH)."
    ),
    quote: str | None = typer.Option(
        None,
        "--quote",
        help="Quote asset. Default: the exchange's (USDT on binance, USD on coinbase and kraken).",
    ),
    since: str = typer.Option(
        "1h", "--since", help="Start: a duration back from now (1h, 30m) or ISO-8601 UTC."
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="End (exclusive), like --since. Default: now; never past the last closed minute.",
    ),
    rest_url: str | None = typer.Option(
        None, "--rest-url", help="The exchange's REST API base URL. Default: its public API."
    ),
    fmt: ViewFormat = format_option(
        ViewFormat.table, "table (counts, then the minutes to look at) or json (every minute)."
    ),
) -> None:
    """Compare our 1-minute candles with the exchange's own (Binance klines, Coinbase candles,
    Kraken OHLC), minute by minute, over closed minutes only.

    Each minute is `match`, `differs` (the fields, ours and theirs), `missing_here` (the
    exchange had trades, we have no candle), `missing_there`, `empty` (no trades on either
    side) or `incomplete` (a recorded feed gap). Prices and trade counts compare exactly,
    volume and VWAP to 1e-9 relative. Exit 0 when every minute is match or empty, 8 when
    not (docs/troubleshooting.md).
    """
    from cryptoctl.cli.query import time_range
    from cryptoctl.errors import CandlesDiffer, UsageError
    from cryptoctl.exchanges import verify_run
    from cryptoctl.exchanges.trade import Market
    from cryptoctl.exchanges.verify import all_good, counts
    from cryptoctl.sources.coins import parse_symbols

    if not symbols:
        raise UsageError(
            "verify needs --symbols", hint="e.g. cryptoctl verify --source binance --symbols BTC,ETH"
        )
    st = state(ctx)
    settings = st.settings()
    now_ms = int(clock() * 1000)
    the_quote = parse_symbols([quote])[0] if quote else verify_run.default_quote(source.value)
    planned = verify_run.plan(source.value, *time_range(since, until, now_ms), now_ms)
    for note in planned.notes:
        st.err.print(f"[yellow]{note}[/]", markup=True)
    markets = [Market(source.value, s, the_quote) for s in symbols]
    history = verify_run.history(source.value, rest_url, clock)
    try:
        for market in markets:
            history.check_market(market)  # an unknown market is exit 2, before any work
        reports = _verify_all(st, history, markets, planned, partial(_queries, settings))
    finally:
        history.close()
    _emit(st, fmt, reports, source.value)
    minutes = [m for r in reports for m in r.minutes]
    if not all_good(minutes):
        raise CandlesDiffer(
            source.value, {k: v for k, v in counts(minutes).items() if k not in ("match", "empty")}
        )


def _queries(settings: Any, market: Market) -> tuple[Callable[..., Any], Callable[..., Any]]:
    from cryptoctl.db.queries import recorded_gaps, stored_minutes

    key = (market.source, market.symbol, market.quote)
    return partial(stored_minutes, settings, *key), partial(recorded_gaps, settings, *key)


def _verify_all(
    st: CliState,
    history: CandleHistory,
    markets: Sequence[Market],
    planned: Plan,
    queries: Callable[[Market], tuple[Callable[..., Any], Callable[..., Any]]],
) -> list[MarketReport]:
    """Each market in turn, behind a progress bar on stderr (on a terminal) while the
    exchange's candles are paged through."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cryptoctl.exchanges.verify_run import verify_market

    span = (planned.end_ms - planned.start_ms) // 60_000
    reports = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("minutes"),
        console=st.err, transient=True, disable=not st.stderr_is_tty,
    )  # fmt: skip
    with progress:
        for market in markets:
            task = progress.add_task(f"{market.source} {market.symbol}/{market.quote}", total=span)
            ours, gaps = queries(market)
            done = partial(_advance, progress, task)
            report = verify_market(history, market, planned, ours=ours, gaps=gaps, progress=done)
            reports.append(report)
            for note in report.notes[len(planned.notes) :]:
                progress.console.print(f"[yellow]{market.symbol}/{market.quote}: {note}[/]")
    return reports


def _advance(progress: Any, task: Any, minutes: int) -> None:
    progress.update(task, completed=minutes)


def _emit(st: CliState, fmt: ViewFormat, reports: Sequence[MarketReport], source: str) -> None:
    from cryptoctl.render.serialize import to_json
    from cryptoctl.render.verify import minute_records, verify_tables

    if fmt is ViewFormat.json:
        st.out.file.write(to_json(minute_records(reports)))
    else:
        st.out.print(verify_tables(reports, source))


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
