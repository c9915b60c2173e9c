"""`cryptoctl watch`: live prices straight from Kafka (no consumer group)."""

from __future__ import annotations

import enum
import sys
import threading
import time
from typing import Any, cast

import typer

from cryptoctl.cli.context import positive_duration_option, state
from cryptoctl.cli.signals import stop_on_signals


class WatchFormat(enum.StrEnum):
    table = "table"
    jsonl = "jsonl"


def watch(
    ctx: typer.Context,
    symbol: list[str] | None = typer.Option(
        None, "--symbol", "-s", help="Only this symbol (repeatable, or comma-separated)."
    ),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Read the topic from its first message."
    ),
    duration: str | None = typer.Option(
        None,
        "--duration",
        "-d",
        callback=positive_duration_option,
        help="Stop after this long (e.g. 30s, 5m).",
    ),
    fmt: WatchFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="table: live display (default on a terminal); jsonl: one tick per line "
        "(default when stdout is not a terminal).",
    ),
) -> None:
    """Live prices straight from the Kafka topic.

    Reads every partition directly (no consumer group: starts at once and never disturbs
    the aggregator), beginning with the last few messages of each partition unless
    `--from-beginning`. One row per symbol with the price flashing on up/down ticks,
    change since the watch started, 24h change, session high/low, ticks, ticks/s, age,
    a sparkline and the aggregator's 1-minute candle from Redis with its minute (UTC),
    marked (stale) when older than the symbol's latest tick. On a narrow terminal the
    lesser columns are left out; symbol and price are always whole.
    """
    from cryptoctl.watch.session import CandlePoller, symbols_of
    from cryptoctl.watch.state import WatchState

    st = state(ctx)
    settings = st.settings()
    live = (fmt or (WatchFormat.table if st.stdout_is_tty else WatchFormat.jsonl)) is WatchFormat.table
    if live and not st.stdout_is_tty:
        live = False  # never a live display into a pipe or file; fall back to data
    duration_s = cast(int, duration) / 1000 if duration is not None else None  # ms, from the callback
    watch_state = WatchState.create(time.time(), symbols_of(symbol))
    stop = threading.Event()
    with stop_on_signals(stop):
        if live:
            _watch_live(st, settings, watch_state, stop, from_beginning, duration_s, CandlePoller)
        else:
            _watch_jsonl(st, settings, watch_state, stop, from_beginning, duration_s)
    from cryptoctl.render.watch import summary

    st.err.print(summary(watch_state, time.time()))


def _watch_jsonl(
    st: Any,
    settings: Any,
    watch_state: Any,
    stop: threading.Event,
    from_beginning: bool,
    duration_s: float | None,
) -> None:
    import os

    from cryptoctl.watch.session import run_watch

    out = sys.stdout

    def closed_pipe() -> None:
        # The reader went away (`| head -1`): stop quietly, like any Unix filter. Later
        # writes and the interpreter's last flush of stdout go to /dev/null instead.
        stop.set()
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

    st.err.print(f"[dim]watching {settings.topic} on {settings.kafka_bootstrap}…[/]")
    run_watch(
        settings,
        watch_state,
        stop,
        from_beginning=from_beginning,
        duration_s=duration_s,
        on_tick=write,
        on_refresh=flush,
    )
    flush()


def _watch_live(
    st: Any,
    settings: Any,
    watch_state: Any,
    stop: threading.Event,
    from_beginning: bool,
    duration_s: float | None,
    poller: Any,
) -> None:
    from rich.live import Live

    from cryptoctl.render.watch import watch_view
    from cryptoctl.watch.session import run_watch

    title = f"cryptoctl watch · {settings.topic} @ {settings.kafka_bootstrap}"
    console = st.out
    # The width is read at every redraw, so a resized terminal gets the columns that fit.
    with Live(
        watch_view(watch_state, time.time(), title=title, width=console.width),
        console=console,
        auto_refresh=False,
        transient=False,
    ) as live:

        def refresh() -> None:
            view = watch_view(watch_state, time.time(), title=title, width=console.width)
            live.update(view, refresh=True)

        run_watch(
            settings,
            watch_state,
            stop,
            from_beginning=from_beginning,
            duration_s=duration_s,
            on_refresh=refresh,
            candles=poller(settings),
        )
        refresh()


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
