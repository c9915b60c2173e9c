"""`cryptoctl run`: the whole pipeline in one command, on the local stack, with a dashboard."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import (
    duration_option,
    exchange_quote_option,
    metrics_host_option,
    metrics_port_option,
    rest_url_option,
    source_option,
    stop_after_option,
    symbols_option,
    ws_url_option,
)

if TYPE_CHECKING:
    from cryptoctl.alerts.delivery import DeliveryWorker
    from cryptoctl.cli.live import LiveRun
    from cryptoctl.pipeline.runner import Pipeline

REFRESH_S = 0.5


class RunSource(enum.StrEnum):
    binance = "binance"
    coinbase = "coinbase"
    kraken = "kraken"
    coingecko = "coingecko"
    synthetic = "synthetic"


def run(
    ctx: typer.Context,
    source: RunSource | None = source_option(
        None,
        "binance, coinbase or kraken (live trades), coingecko or synthetic. Default: Binance "
        "trades, or the synthetic market when Binance cannot be reached. Given explicitly: "
        "no check, no fallback.",
    ),
    symbols: list[str] = symbols_option(["BTC,ETH,SOL"], "Symbols, comma-separated or repeated."),
    quote: str | None = exchange_quote_option(),
    ws_url: str | None = ws_url_option(),
    rest_url: str | None = rest_url_option("; the default's check pings it"),
    interval: int = duration_option("10s", "--interval", help="CoinGecko poll interval."),
    rate: float = typer.Option(10.0, "--rate", min=0.1, help="Synthetic ticks per second."),
    duration: int | None = stop_after_option("Stop after this long."),
    metrics_port: int | None = metrics_port_option(),
    metrics_host: str | None = metrics_host_option(),
) -> None:
    """Run the whole pipeline with a live dashboard: stack, producer, aggregator.

    Brings up the local stack if it is not running (broker, PostgreSQL, Redis; no Docker),
    makes sure the topic and schema exist, then produces prices (by default Binance's live
    BTC, ETH and SOL trades, no key needed) and aggregates them into candles in this one
    process. Ctrl-C stops producer and aggregator cleanly; the stack
    keeps running (`cryptoctl down` stops it). With --metrics-port, serves the producer's
    and the aggregator's Prometheus metrics on that one port.
    """
    from cryptoctl.alerts.delivery import DeliveryWorker
    from cryptoctl.metrics.server import serving
    from cryptoctl.pipeline.runner import Pipeline, RunOptions
    from cryptoctl.sources.spec import build_source, choose_source, run_quote, run_spec
    from cryptoctl.stack.local import up

    st = state(ctx)
    settings = st.settings(metrics_port=metrics_port, metrics_host=metrics_host)
    _start_stack(st, settings, up)
    choice = choose_source(settings, source.value if source else None, rest_url=rest_url)
    if choice.note:
        st.err.print(f"[yellow]{choice.note}[/]")
    spec = run_spec(
        choice, tuple(symbols), interval_ms=interval, rate=rate, quote=quote, ws_url=ws_url,
        rest_url=rest_url,
    )  # fmt: skip
    options = RunOptions(
        symbols=symbols, duration_s=duration / 1000 if duration is not None else None,
        quote=run_quote(spec),
    )  # fmt: skip
    pipeline = Pipeline(settings, build_source(settings, spec), choice, options)
    deliverer = DeliveryWorker(settings).start()  # fired alerts, beside the aggregator
    try:
        with serving(settings, aggregator=pipeline.aggregator, producer=pipeline.producer):
            _live(st, pipeline, deliverer).run(pipeline.run, in_thread=True)
    finally:
        deliverer.stop()
    pipeline.raise_failure()
    _summary(st, pipeline)


def _live(st: CliState, pipeline: Pipeline, deliverer: DeliveryWorker) -> LiveRun[None]:
    """The dashboard on a terminal (stdout), else a status line on stderr now and then."""
    from cryptoctl.cli.live import LiveRun, Status
    from cryptoctl.render.dashboard import dashboard, status_line

    topic, symbols = pipeline.settings.topic, pipeline.options.symbols

    def view() -> Any:
        return dashboard(
            pipeline.snapshot(), symbols=symbols, topic=topic, width=st.out.width,
            alerts=deliverer.recent(),
        )  # fmt: skip

    status = Status(
        view=view, line=lambda: status_line(pipeline.snapshot()), screen="stdout", transient=False,
        refresh_s=REFRESH_S,
    )  # fmt: skip
    return LiveRun(st, status)


def _start_stack(st: Any, settings: Any, up: Any) -> None:
    """`cryptoctl up` behind a spinner, then one line: what was started, how long it took."""
    from cryptoctl.render.stack import run_stack_line

    with st.err.status("starting the local stack…") as spinner:
        result = up(settings, progress=lambda msg: spinner.update(f"{msg}…"))
    st.err.print(run_stack_line(result))


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
