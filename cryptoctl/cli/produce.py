"""`cryptoctl produce`: prices from CoinGecko, a synthetic market, a file or an exchange's
trade feed, onto Kafka."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import (
    ViewFormat,
    duration_option,
    exchange_quote_option,
    exchange_since_option,
    format_option,
    metrics_host_option,
    metrics_port_option,
    rest_url_option,
    source_option,
    stop_after_option,
    symbols_option,
    topic_option,
    ws_url_option,
)
from cryptoctl.errors import DeliveryFailed
from cryptoctl.sources.spec import SourceKind, SourceSpec, default_shown

if TYPE_CHECKING:
    from cryptoctl.cli.live import LiveRun
    from cryptoctl.producer import ProducerRun, ProducerSummary


class KeyType(enum.StrEnum):
    demo = "demo"
    pro = "pro"


def produce(
    ctx: typer.Context,
    source: SourceKind = source_option(SourceKind.coingecko, "Where prices come from."),
    symbols: list[str] | None = symbols_option(
        None,
        "Symbols, comma-separated or repeated: the base assets of the markets (binance, coinbase,"
        f" kraken), or coins (coingecko, synthetic). {default_shown('symbols')}",
    ),
    interval: int | None = duration_option(
        None, "--interval", help=f"CoinGecko poll interval, e.g. 10s, 1m. {default_shown('interval_ms')}"
    ),
    api_key: str | None = typer.Option(None, "--api-key", help="CoinGecko API key [env COINGECKO_API_KEY]."),
    key_type: KeyType | None = typer.Option(
        None, "--key-type", help="Plan of the key: demo (default with a key) or pro."
    ),
    api_url: str | None = typer.Option(None, "--api-url", help="CoinGecko base URL (default: by key type)."),
    coin_id: list[str] = typer.Option(
        [], "--coin-id", help="SYMBOL=coingecko-id for a symbol the built-in table lacks (repeatable)."
    ),
    max_rpm: int | None = typer.Option(
        None,
        "--max-requests-per-minute",
        min=1,
        help="CoinGecko request budget, retries included [default: 30 public/demo, 250 pro].",
    ),
    rate: float | None = typer.Option(
        None,
        "--rate",
        min=0,
        help=f"Synthetic ticks per second over all symbols; 0 = unthrottled. {default_shown('rate')}",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Synthetic: same seed (and --start) -> same ticks."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Synthetic: generate history from TIME (ISO-8601, epoch ms, or a duration back like 2h).",
    ),
    out_of_order: float | None = typer.Option(
        None,
        "--out-of-order",
        min=0.0,
        max=1.0,
        help=f"Synthetic: share of ticks emitted late (0..1). {default_shown('out_of_order')}",
    ),
    max_delay: int | None = duration_option(
        None,
        "--max-delay",
        help=f"Synthetic: how late an out-of-order tick may be. {default_shown('max_delay_ms')}",
    ),
    file: Path | None = typer.Option(
        None, "--file", help="Replay: CSV or JSON Lines file (ts,symbol,price[,qty])."
    ),
    speed: float | None = typer.Option(
        None,
        "--speed",
        min=0,
        help=f"Replay: factor on the recorded pace; 0 = as fast as possible. {default_shown('speed')}",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Replay: stop at the first bad row (exit 5) instead of skipping it."
    ),
    quote: str | None = exchange_quote_option(),
    since: str | None = exchange_since_option(),
    ws_url: str | None = ws_url_option(),
    rest_url: str | None = rest_url_option(),
    topic: str | None = topic_option(),
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N ticks."),
    duration: int | None = stop_after_option(),
    fmt: ViewFormat = format_option(
        ViewFormat.table, "Summary on exit: table (stderr), or json (one object on stdout)."
    ),
    metrics_port: int | None = metrics_port_option(),
    metrics_host: str | None = metrics_host_option(),
) -> None:
    """Put price ticks on Kafka (key = symbol, value = tick JSON, timestamp = event time).

    Sources: `coingecko` (default; /simple/price every --interval), `synthetic` (a GBM
    market, --rate ticks/s, --seed, --start for history), `replay` (a recorded file,
    --speed), and the live trades of `binance`, `coinbase` or `kraken` (--symbols, --quote,
    --since; gap-free: re-sent trades dropped, missed ones fetched over REST, what cannot be
    fetched put on the topic as a gap marker). Shows a live status line on stderr; Ctrl-C
    flushes what is in flight and prints a summary (a second Ctrl-C aborts). A flag of
    another source is refused. Exit codes: 2 bad usage (an unknown market), 3 Kafka or the
    exchange unreachable or banning this IP, 5 bad data (a bad row with --strict, a replay
    file that is not UTF-8 or lacks the ts,symbol,price header), after the summary. With
    --metrics-port, serves Prometheus metrics while it runs.
    """
    st = state(ctx)
    settings = st.settings(topic=topic, metrics_port=metrics_port, metrics_host=metrics_host)
    spec = SourceSpec(
        source, symbols=tuple(symbols) if symbols else None, interval_ms=interval,
        api_key=api_key, key_type=key_type.value if key_type else None, api_url=api_url,
        coin_ids=tuple(coin_id), max_rpm=max_rpm, rate=rate, seed=seed, start=start,
        out_of_order=out_of_order, max_delay_ms=max_delay, file=file, speed=speed, strict=strict,
        quote=quote, since=since, ws_url=ws_url, rest_url=rest_url,
    )  # fmt: skip
    summary = _produce(st, settings, spec, count, duration, fmt)
    _print_summary(st, summary, fmt)
    if summary.undelivered or summary.failed:
        lost = summary.undelivered + summary.failed
        raise DeliveryFailed(
            f"{lost} ticks were not delivered to {settings.topic} on {settings.kafka_bootstrap}",
            hint="see the warnings above; the broker may be down or the topic gone",
        )


def _produce(
    st: CliState, settings: Any, spec: SourceSpec, count: int | None, duration_ms: int | None,
    fmt: ViewFormat,
) -> ProducerSummary:  # fmt: skip
    """Build the source (usage errors first), check the broker, run with a status line."""
    from cryptoctl.metrics.server import serving
    from cryptoctl.producer import ProducerOptions, ProducerRun, SourceFailed
    from cryptoctl.sources.spec import build_source

    duration_s = duration_ms / 1000 if duration_ms is not None else None
    run = ProducerRun(settings, build_source(settings, spec), ProducerOptions(count, duration_s))
    run.preflight()
    try:
        with serving(settings, producer=run):
            return _live(st, run).run(run.run)
    except SourceFailed as exc:  # what was produced before the bad data, then the error
        _print_summary(st, exc.summary, fmt)
        raise


def _live(st: CliState, run: ProducerRun) -> LiveRun[ProducerSummary]:
    from rich.text import Text

    from cryptoctl.cli.live import LiveRun, Status
    from cryptoctl.render.produce import abort_line, status_line, stopping_line

    status = Status(view=lambda: Text(status_line(run.stats())), line=lambda: status_line(run.stats()))
    return LiveRun(
        st, status, on_stop=lambda: stopping_line(run.stats()), on_abort=lambda: abort_line(run.stats())
    )


def _print_summary(st: CliState, summary: ProducerSummary, fmt: ViewFormat) -> None:
    from cryptoctl.render.produce import summary_json, summary_table

    if fmt is ViewFormat.json:
        st.out.print(json.dumps(summary_json(summary)), markup=False, highlight=False, soft_wrap=True)
        return
    st.err.print(summary_table(summary))  # a report, not data: only --format json puts it on stdout


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=False)(produce)
