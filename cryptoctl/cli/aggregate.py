"""`cryptoctl aggregate`: ticks -> 1-minute candles in PostgreSQL (exactly once) + Redis."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import (
    ViewFormat,
    duration_option,
    format_option,
    metrics_host_option,
    metrics_port_option,
    stop_after_option,
    topic_option,
)

if TYPE_CHECKING:
    from cryptoctl.aggregator import Aggregator, AggregatorStats
    from cryptoctl.cli.live import LiveRun


def aggregate(
    ctx: typer.Context,
    group: str | None = typer.Option(None, "--group", "-g", help="Consumer group [env CRYPTOCTL_GROUP]."),
    topic: str | None = topic_option("Input topic [env CRYPTOCTL_TOPIC, default crypto-prices]."),
    delay: int = duration_option("5s", "--delay", positive=False,
                                 help="Watermark delay: how out of order ticks may arrive."),
    lateness: int = duration_option("60s", "--lateness", positive=False,
                                    help="Allowed lateness: how long a closed candle still takes ticks."),
    flush_interval: int = duration_option(
        "250ms", "--flush-interval", help="Longest time between two commits to PostgreSQL under load."
    ),
    store_ticks: bool = typer.Option(True, "--store-ticks/--no-store-ticks",
                                     help="Also store every raw tick in raw_price_data."),
    until_idle: int | None = duration_option(
        None, "--until-idle", help="Stop once no message arrived for this long (backfill mode), e.g. 5s."
    ),
    duration: int | None = stop_after_option("Stop after this long, e.g. 10m."),
    wedged_after: int = duration_option(
        "30s", "--wedged-after", positive=False,
        help="No partitions for this long while messages wait and no member commits: take"
        " the consumer group as wedged and move to a fresh one (0 = never).",
    ),
    fmt: ViewFormat = format_option(
        ViewFormat.table, "Summary at exit: table (stderr) or json (one object on stdout)."
    ),
    metrics_port: int | None = metrics_port_option(),
    metrics_host: str | None = metrics_host_option(),
) -> None:
    """Aggregate ticks into 1-minute event-time OHLC candles, exactly once.

    Joins the consumer group (run several to split the partitions), keeps one watermark
    per partition, writes candles, raw ticks, late ticks and offsets to PostgreSQL in one
    transaction per flush, then the latest price and candles to Redis. Invalid messages
    go to the dead-letter topic. Fired price alerts are delivered from the outbox by a
    thread beside it (`cryptoctl alerts`). Ctrl-C/SIGTERM: final flush and a summary; a
    second Ctrl-C aborts. With --metrics-port, serves Prometheus metrics while it runs.
    """
    from cryptoctl.aggregator import Aggregator, AggregatorOptions
    from cryptoctl.alerts.delivery import DeliveryWorker
    from cryptoctl.metrics.server import serving

    st = state(ctx)
    settings = st.settings(
        topic=topic, group=group, metrics_port=metrics_port, metrics_host=metrics_host
    )
    options = AggregatorOptions(
        delay_ms=delay, lateness_ms=lateness, flush_interval_ms=flush_interval,
        store_ticks=store_ticks, until_idle_ms=until_idle, duration_ms=duration,
        wedged_after_ms=wedged_after or None,
    )  # fmt: skip
    aggregator = Aggregator(settings, options)
    # Fired alerts go out from a thread of their own: delivery never slows the aggregator.
    deliverer = DeliveryWorker(settings).start()
    try:
        with serving(settings, aggregator=aggregator):
            final = _live(st, aggregator).run(aggregator.run, in_thread=True)
    finally:
        deliverer.stop()
    _print_summary(st, final, fmt)


def _live(st: CliState, aggregator: Aggregator) -> LiveRun[AggregatorStats]:
    """The aggregator in a worker thread; this thread shows its status and takes signals."""
    from rich.text import Text

    from cryptoctl.cli.live import LiveRun, Status
    from cryptoctl.render.aggregate import status_line

    status = Status(
        view=lambda: Text(status_line(aggregator.stats()), overflow="ellipsis"),
        line=lambda: status_line(aggregator.stats()),
    )
    return LiveRun(st, status)


def _print_summary(st: CliState, stats: AggregatorStats, fmt: ViewFormat) -> None:
    from cryptoctl.render.aggregate import summary, summary_table

    if fmt is ViewFormat.json:
        st.out.print(json.dumps(summary(stats)), markup=False, highlight=False)
        return
    st.err.print(summary_table(stats))  # a report, not data: only --format json puts it on stdout


def register(app: typer.Typer) -> None:
    app.command()(aggregate)
