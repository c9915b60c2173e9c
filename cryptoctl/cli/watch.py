"""`cryptoctl watch`: live prices straight from Kafka (no consumer group)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import (
    FILTER_SYMBOLS_HELP,
    WatchFormat,
    format_option,
    market_source_option,
    quote_option,
    stop_after_option,
    symbols_option,
)

if TYPE_CHECKING:
    from cryptoctl.settings import Settings
    from cryptoctl.watch.state import WatchState


def watch(
    ctx: typer.Context,
    symbols: list[str] | None = symbols_option(None, FILTER_SYMBOLS_HELP),
    source: str | None = market_source_option(),
    quote: str | None = quote_option(),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Read the topic from its first message."
    ),
    duration: int | None = stop_after_option("Stop after this long (e.g. 30s, 5m)."),
    fmt: WatchFormat | None = format_option(
        None,
        "table: live display (default on a terminal); jsonl: one tick per line "
        "(default when stdout is not a terminal).",
    ),
) -> None:
    """Live prices straight from the Kafka topic.

    Reads every partition directly (no consumer group: starts at once and never disturbs
    the aggregator), beginning with the last few messages of each partition unless
    `--from-beginning`. One row per market (source, symbol, quote: Binance BTC/USDT and
    Coinbase BTC/USD are two rows) with the price flashing on up/down ticks,
    change since the watch started, 24h change, session high/low, ticks, ticks/s, age,
    a sparkline and the aggregator's 1-minute candle of that market from Redis with its
    minute (UTC), marked (stale) when older than the market's latest tick. On a narrow
    terminal the lesser columns are left out; market and price are always whole.
    """
    from cryptoctl.render.watch import summary
    from cryptoctl.watch.state import WatchState

    st = state(ctx)
    settings = st.settings()
    # Never a live display into a pipe or a file: there, the data (JSON lines) instead.
    live = st.stdout_is_tty and (fmt or WatchFormat.table) is WatchFormat.table
    duration_s = duration / 1000 if duration is not None else None
    watch_state = WatchState.create(time.time(), symbols, source=source, quote=quote)
    if live:
        _watch_live(st, settings, watch_state, from_beginning, duration_s)
    else:
        _watch_jsonl(st, settings, watch_state, from_beginning, duration_s)
    st.err.print(summary(watch_state, time.time()))


def _watch_jsonl(
    st: CliState,
    settings: Settings,
    watch_state: WatchState,
    from_beginning: bool,
    duration_s: float | None,
) -> None:
    import os

    from cryptoctl.cli.live import LiveRun
    from cryptoctl.watch.session import run_watch

    out = sys.stdout
    live: LiveRun[None] = LiveRun(st, log_level=logging.WARNING)

    def closed_pipe() -> None:
        # The reader went away (`| head -1`): stop quietly, like any Unix filter. Later
        # writes and the interpreter's last flush of stdout go to /dev/null instead.
        live.stop.set()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)

    def write(tick: Any) -> None:
        try:
            out.write(tick.to_json().decode() + "\n")
        except BrokenPipeError:
            closed_pipe()

    def flush() -> None:
        try:
            out.flush()
        except BrokenPipeError:
            closed_pipe()

    def work(stop: threading.Event) -> None:
        run_watch(
            settings, watch_state, stop, from_beginning=from_beginning, duration_s=duration_s,
            on_tick=write, on_refresh=flush,
        )  # fmt: skip
        flush()

    st.err.print(f"[dim]watching {settings.topic} on {settings.kafka_bootstrap}…[/]")
    live.run(work)


def _watch_live(
    st: CliState,
    settings: Settings,
    watch_state: WatchState,
    from_beginning: bool,
    duration_s: float | None,
) -> None:
    from cryptoctl.cli.live import LiveRun, Status
    from cryptoctl.render.watch import watch_view
    from cryptoctl.watch.session import CandlePoller, run_watch

    title = f"cryptoctl watch · {settings.topic} @ {settings.kafka_bootstrap}"
    console = st.out

    def view() -> Any:  # the width is read at every redraw: a resized terminal gets what fits
        return watch_view(watch_state, time.time(), title=title, width=console.width)

    # The state is updated on this thread, so it is redrawn from here (on_refresh) only.
    live: LiveRun[None] = LiveRun(
        st, Status(view=view, screen="stdout", transient=False, self_refresh=False),
        log_level=logging.WARNING,  # a watch shows prices, not the clients' chatter
    )  # fmt: skip

    def work(stop: threading.Event) -> None:
        run_watch(
            settings, watch_state, stop, from_beginning=from_beginning, duration_s=duration_s,
            on_refresh=live.refresh, candles=CandlePoller(settings),
        )  # fmt: skip

    live.run(work)


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
