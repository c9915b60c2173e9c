"""`cryptoctl run`: the whole pipeline in one command, on the local stack, with a dashboard."""

from __future__ import annotations

import enum
import threading
import time
from typing import Any, cast

import typer

from cryptoctl.cli.context import positive_duration_option, state

REFRESH_S = 0.5
PLAIN_STATUS_EVERY_S = 5.0


class RunSource(enum.StrEnum):
    coingecko = "coingecko"
    synthetic = "synthetic"


def run(
    ctx: typer.Context,
    source: RunSource | None = typer.Option(
        None,
        "--source",
        "-s",
        help="coingecko or synthetic. Default: CoinGecko, or the synthetic market when "
        "CoinGecko cannot be reached. Given explicitly: no fallback.",
    ),
    symbols: str = typer.Option("BTC,ETH,SOL", "--symbols", help="Comma-separated symbols."),
    interval: str = typer.Option(
        "10s", "--interval", callback=positive_duration_option, help="CoinGecko poll interval."
    ),
    rate: float = typer.Option(10.0, "--rate", min=0.1, help="Synthetic ticks per second."),
    duration: str | None = typer.Option(
        None, "--duration", "-d", callback=positive_duration_option, help="Stop after this long."
    ),
) -> None:
    """Run the whole pipeline with a live dashboard: stack, producer, aggregator.

    Brings up the local stack if it is not running (broker, PostgreSQL, Redis; no Docker),
    makes sure the topic and schema exist, then produces prices and aggregates them into
    candles in this one process. Ctrl-C stops producer and aggregator cleanly; the stack
    keeps running (`cryptoctl down` stops it).
    """
    from cryptoctl.pipeline.runner import Pipeline, RunOptions, build_source, choose_source
    from cryptoctl.sources.coins import parse_symbols
    from cryptoctl.stack.local import up

    st = state(ctx)
    settings = st.settings()
    duration_ms = cast("int | None", duration)
    options = RunOptions(
        source=source.value if source else None,
        symbols=parse_symbols(symbols),
        coingecko_interval_s=cast(int, interval) / 1000,
        synthetic_rate=rate,
        duration_s=duration_ms / 1000 if duration_ms is not None else None,
    )
    _start_stack(st, settings, up)
    choice = choose_source(settings, options.source)
    if choice.note:
        st.err.print(f"[yellow]{choice.note}[/]")
    pipeline = Pipeline(settings, build_source(settings, choice, options), choice, options)
    from cryptoctl.cli.signals import stop_on_signals

    stop = threading.Event()
    with stop_on_signals(stop):
        pipeline.start()
        try:
            if st.stdout_is_tty:
                _live(st, pipeline, stop, options.symbols)
            else:
                _plain(st, pipeline, stop)
        finally:
            pipeline.stop()
    pipeline.raise_failure()
    _summary(st, pipeline)


def _wait(pipeline: Any, stop: threading.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when it is time to stop."""
    stop.wait(seconds)
    return stop.is_set() or pipeline.expired() or pipeline.finished()


def _start_stack(st: Any, settings: Any, up: Any) -> None:
    """`cryptoctl up` behind a spinner, then one line: what was started, how long it took."""
    from cryptoctl.render.stack import run_stack_line

    with st.err.status("starting the local stack…") as spinner:
        result = up(settings, progress=lambda msg: spinner.update(f"{msg}…"))
    st.err.print(run_stack_line(result))


def _live(st: Any, pipeline: Any, stop: threading.Event, symbols: Any) -> None:
    from rich.live import Live

    from cryptoctl.render.dashboard import dashboard

    topic = pipeline.settings.topic

    def view() -> Any:
        return dashboard(pipeline.snapshot(), symbols=symbols, topic=topic, width=st.out.width)

    with Live(view(), console=st.out, auto_refresh=False) as live:
        while not _wait(pipeline, stop, REFRESH_S):
            live.update(view(), refresh=True)
        live.update(view(), refresh=True)


def _plain(st: Any, pipeline: Any, stop: threading.Event) -> None:
    """Not a terminal: a status line on stderr now and then, never a live display."""
    from cryptoctl.render.dashboard import status_line

    next_line = time.monotonic() + PLAIN_STATUS_EVERY_S
    while not _wait(pipeline, stop, REFRESH_S):
        if time.monotonic() >= next_line:
            st.err.print(status_line(pipeline.snapshot()))
            next_line += PLAIN_STATUS_EVERY_S


def _summary(st: Any, pipeline: Any) -> None:
    from cryptoctl.db.queries import stored_candle_counts
    from cryptoctl.errors import CryptoctlError
    from cryptoctl.render.dashboard import run_summary

    try:
        stored: tuple[int, int] | None = stored_candle_counts(pipeline.settings)
    except CryptoctlError:
        stored = None
    st.err.print(run_summary(pipeline.snapshot(), stored))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
