"""`cryptoctl aggregate`: ticks -> 1-minute candles in PostgreSQL (exactly once) + Redis."""

from __future__ import annotations

import enum
import json
import threading
import time
from typing import Any

import typer

from cryptoctl.cli.context import duration_option, positive_duration_option, state


class SummaryFormat(enum.StrEnum):
    table = "table"
    json = "json"


LOG_EVERY_S = 5.0


def aggregate(
    ctx: typer.Context,
    group: str | None = typer.Option(None, "--group", "-g", help="Consumer group [env CRYPTOCTL_GROUP]."),
    topic: str | None = typer.Option(None, "--topic", "-t", help="Input topic [env CRYPTOCTL_TOPIC]."),
    delay: str = typer.Option("5s", "--delay", callback=duration_option,
                              help="Watermark delay: how out of order ticks may arrive."),
    lateness: str = typer.Option("60s", "--lateness", callback=duration_option,
                                 help="Allowed lateness: how long a closed candle still takes ticks."),
    flush_interval: str = typer.Option(
        "250ms", "--flush-interval", callback=positive_duration_option,
        help="Longest time between two commits to PostgreSQL under load.",
    ),
    store_ticks: bool = typer.Option(True, "--store-ticks/--no-store-ticks",
                                     help="Also store every raw tick in raw_price_data."),
    until_idle: str | None = typer.Option(
        None, "--until-idle", callback=positive_duration_option,
        help="Stop once no message arrived for this long (backfill mode), e.g. 5s.",
    ),
    duration: str | None = typer.Option(None, "--duration", "-d", callback=positive_duration_option,
                                        help="Stop after this long, e.g. 10m."),
    wedged_after: str = typer.Option(
        "30s", "--wedged-after", callback=duration_option,
        help="No partitions for this long while messages wait and no member commits: take"
        " the consumer group as wedged and move to a fresh one (0 = never).",
    ),
    fmt: SummaryFormat = typer.Option(SummaryFormat.table, "--format", "-f",
                                      help="Summary at exit: table (stderr) or json (one object on stdout)."),
) -> None:
    """Aggregate ticks into 1-minute event-time OHLC candles, exactly once.

    Joins the consumer group (run several to split the partitions), keeps one watermark
    per partition, writes candles, raw ticks, late ticks and offsets to PostgreSQL in one
    transaction per flush, then the latest price and candles to Redis. Invalid messages
    go to the dead-letter topic. Ctrl-C/SIGTERM: final flush and a summary; a second
    Ctrl-C aborts.
    """
    from cryptoctl.aggregator import Aggregator, AggregatorOptions

    st = state(ctx)
    settings = st.settings(topic=topic, group=group)
    options = AggregatorOptions(
        delay_ms=delay, lateness_ms=lateness, flush_interval_ms=flush_interval,  # type: ignore[arg-type]
        store_ticks=store_ticks, until_idle_ms=until_idle, duration_ms=duration,  # type: ignore[arg-type]
        wedged_after_ms=wedged_after or None,  # type: ignore[arg-type]
    )
    aggregator = Aggregator(settings, options)
    final = _run_with_status(st, aggregator)
    _print_summary(st, final, fmt)


def _run_with_status(st: Any, aggregator: Any) -> Any:
    """Run the aggregator in a worker thread; this thread shows status and handles signals."""
    import logging

    from cryptoctl.cli.signals import stop_on_signals

    _log_to_stderr(logging.getLogger("cryptoctl.aggregator"))
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["stats"] = aggregator.run(stop)
        except BaseException as exc:  # re-raised on this thread, reported in one place
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="aggregator", daemon=True)
    with stop_on_signals(stop):
        worker.start()
        if st.stderr_is_tty:
            _live_status(st, aggregator, worker)
        else:
            _log_status(st, aggregator, worker)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["stats"]


def _live_status(st: Any, aggregator: Any, worker: threading.Thread) -> None:
    from rich.live import Live
    from rich.text import Text

    from cryptoctl.render.aggregate import status_line

    with Live(console=st.err, refresh_per_second=4, transient=True) as live:
        while worker.is_alive():
            live.update(Text(status_line(aggregator.stats()), overflow="ellipsis"))
            worker.join(0.25)


def _log_status(st: Any, aggregator: Any, worker: threading.Thread) -> None:
    from cryptoctl.render.aggregate import status_line

    next_log = time.monotonic() + LOG_EVERY_S
    while worker.is_alive():
        worker.join(0.2)
        if time.monotonic() >= next_log and worker.is_alive():
            st.err.print(status_line(aggregator.stats()), markup=False, soft_wrap=True)
            next_log += LOG_EVERY_S


def _log_to_stderr(logger: Any) -> None:
    import logging
    import sys

    if not any(getattr(h, "_cryptoctl", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s aggregate: %(message)s", "%H:%M:%S"))
        handler._cryptoctl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _print_summary(st: Any, stats: Any, fmt: SummaryFormat) -> None:
    from cryptoctl.render.aggregate import summary, summary_table

    if fmt is SummaryFormat.json:
        st.out.print(json.dumps(summary(stats)), markup=False, highlight=False)
        return
    st.err.print(summary_table(stats))  # a report, not data: only --format json puts it on stdout


def register(app: typer.Typer) -> None:
    app.command()(aggregate)
