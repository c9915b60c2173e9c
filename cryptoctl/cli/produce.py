"""`cryptoctl produce`: prices from CoinGecko, a synthetic market or a file, onto Kafka."""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from cryptoctl.cli.context import CliState, duration_option, positive_duration_option, state
from cryptoctl.errors import CryptoctlError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from cryptoctl.producer import ProducerRun, ProducerStats, ProducerSummary
    from cryptoctl.sources.base import Source

PLAIN_STATUS_EVERY_S = 5.0


class SourceName(str, enum.Enum):
    coingecko = "coingecko"
    synthetic = "synthetic"
    replay = "replay"


class KeyType(str, enum.Enum):
    demo = "demo"
    pro = "pro"


class SummaryFormat(str, enum.Enum):
    table = "table"
    json = "json"


def produce(
    ctx: typer.Context,
    source: SourceName = typer.Option(SourceName.coingecko, "--source", "-s", help="Where prices come from."),
    symbols: str = typer.Option(
        "BTC,ETH", "--symbols", help="Comma-separated symbols (coingecko, synthetic)."
    ),
    interval: str = typer.Option(
        "10s", "--interval", callback=positive_duration_option, help="CoinGecko poll interval, e.g. 10s, 1m."
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
    rate: float = typer.Option(
        10.0, "--rate", min=0, help="Synthetic ticks per second over all symbols; 0 = unthrottled."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Synthetic: same seed (and --start) -> same ticks."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Synthetic: generate history from TIME (ISO-8601, epoch ms, or a duration back like 2h).",
    ),
    out_of_order: float = typer.Option(
        0.0, "--out-of-order", min=0.0, max=1.0, help="Synthetic: share of ticks emitted late (0..1)."
    ),
    max_delay: str = typer.Option(
        "5s",
        "--max-delay",
        callback=positive_duration_option,
        help="Synthetic: how late an out-of-order tick may be.",
    ),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Replay: CSV or JSON Lines file (ts,symbol,price[,qty])."
    ),
    speed: float = typer.Option(
        1.0, "--speed", min=0, help="Replay: factor on the recorded pace; 0 = as fast as possible."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Replay: stop at the first bad row (exit 5) instead of skipping it."
    ),
    topic: str | None = typer.Option(
        None, "--topic", help="Kafka topic [env CRYPTOCTL_TOPIC, default crypto-prices]."
    ),
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N ticks."),
    duration: str | None = typer.Option(
        None, "--duration", "-d", callback=duration_option, help="Stop after this long, e.g. 30s, 5m."
    ),
    fmt: SummaryFormat = typer.Option(
        SummaryFormat.table,
        "--format",
        help="Summary on exit: table (stderr), or json (one object on stdout).",
    ),
) -> None:
    """Put price ticks on Kafka (key = symbol, value = tick JSON, timestamp = event time).

    Sources: `coingecko` (default; /simple/price every --interval), `synthetic` (a GBM
    market, --rate ticks/s, --seed, --start for history) and `replay` (a recorded file,
    --speed). Shows a live status line on stderr; Ctrl-C flushes what is in flight and
    prints a summary (a second Ctrl-C aborts). Exit codes: 2 bad usage, 3 Kafka
    unreachable, 5 bad row with --strict.
    """
    st = state(ctx)
    settings = st.settings(topic=topic, coingecko_api_key=api_key, coingecko_api_url=api_url)
    given = {k: v for k, v in locals().items() if k not in {"ctx", "st", "settings"}}
    src = build_source(settings, given)
    from cryptoctl.producer import ProducerOptions, ProducerRun, SourceFailed

    duration_ms = cast("int | None", duration)  # the callback turned it into ms
    options = ProducerOptions(count=count, duration_s=duration_ms / 1000 if duration_ms is not None else None)
    run = ProducerRun(settings, src, options)
    run.preflight()
    try:
        summary = _run_with_status(st, run)
    except SourceFailed as exc:  # what was produced before the bad data, then the error
        _print_summary(st, exc.summary, fmt)
        raise
    _print_summary(st, summary, fmt)
    if summary.undelivered or summary.failed:
        lost = summary.undelivered + summary.failed
        raise CryptoctlError(
            f"{lost} ticks were not delivered to {settings.topic} on {settings.kafka_bootstrap}",
            hint="see the warnings above; the broker may be down or the topic gone",
        )


def _only_for(given: dict[str, Any], source: SourceName) -> None:
    """Flags that belong to another source are a usage error, not silently ignored."""
    owners = {
        "file": SourceName.replay,
        "strict": SourceName.replay,
        "seed": SourceName.synthetic,
        "start": SourceName.synthetic,
        "api_key": SourceName.coingecko,
        "key_type": SourceName.coingecko,
        "api_url": SourceName.coingecko,
        "coin_id": SourceName.coingecko,
        "max_rpm": SourceName.coingecko,
    }
    for name, owner in owners.items():
        if given.get(name) and owner is not source:
            flag = "--" + name.replace("_", "-").replace("max-rpm", "max-requests-per-minute")
            raise UsageError(
                f"{flag} is for --source {owner.value}", hint=f"drop it or use --source {owner.value}"
            )


def build_source(settings: Any, given: dict[str, Any]) -> Source:
    """The source the flags ask for; every usage error is raised here, before producing."""
    kind: SourceName = given["source"]
    _only_for(given, kind)
    if kind is SourceName.replay:
        return _replay(given)
    from cryptoctl.sources.coins import parse_symbols

    symbols = parse_symbols(given["symbols"])
    if kind is SourceName.synthetic:
        return _synthetic(given, symbols)
    return _coingecko(settings, given, symbols)


def _replay(given: dict[str, Any]) -> Source:
    from cryptoctl.sources.replay import ReplayConfig, ReplaySource

    if given["file"] is None:
        raise UsageError("--source replay needs --file", hint="e.g. --file ticks.csv")
    return ReplaySource(ReplayConfig(given["file"], speed=given["speed"], strict=given["strict"]))


def _synthetic(given: dict[str, Any], symbols: list[str]) -> Source:
    from cryptoctl.durations import parse_time_ms
    from cryptoctl.sources.base import now_ms
    from cryptoctl.sources.synthetic import SyntheticConfig, SyntheticSource

    start_ms = None
    if given["start"] is not None:
        try:
            start_ms = parse_time_ms(given["start"], now_ms=now_ms())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    config = SyntheticConfig(
        symbols,
        rate=given["rate"],
        seed=given["seed"],
        start_ms=start_ms,
        out_of_order=given["out_of_order"],
        max_delay_ms=given["max_delay"],
    )
    return SyntheticSource(config)


def _coingecko(settings: Any, given: dict[str, Any], symbols: list[str]) -> Source:
    from cryptoctl.sources.coingecko import CoinGeckoConfig, CoinGeckoSource
    from cryptoctl.sources.coins import parse_coin_ids, resolve_coin_ids

    ids = resolve_coin_ids(symbols, parse_coin_ids(given["coin_id"]))
    key_type = given["key_type"].value if given["key_type"] else None
    config = CoinGeckoConfig(
        ids,
        interval_s=given["interval"] / 1000,
        api_key=settings.coingecko_api_key,
        key_type=key_type,
        api_url=settings.coingecko_api_url,
        max_requests_per_minute=given["max_rpm"],
    )
    return CoinGeckoSource(config)


# --- running, with a status line and signals ----------------------------------------


def _run_with_status(st: CliState, run: ProducerRun) -> ProducerSummary:
    """Run with a live status line (a terminal) or a periodic plain one; stop on signals."""
    from cryptoctl.cli.signals import stop_on_signals

    stop = threading.Event()
    err = st.err
    with _log_to(err), stop_on_signals(stop, on_stop=lambda: _say_stopping(err, run)):
        try:
            with _live_status(err, run) if st.stderr_is_tty else _plain_status(err, run):
                return run.run(stop)
        except KeyboardInterrupt:  # the second Ctrl-C: exit 130 without waiting for the flush
            err.print(_abort_line(run.stats()), style="yellow", markup=False, highlight=False)
            raise


def _say_stopping(err: Console, run: ProducerRun) -> None:
    pending = run.stats().pending
    err.print(
        f"stopping: flushing {pending:,} ticks in flight (Ctrl-C again to abort)",
        style="yellow",
        markup=False,
        highlight=False,
    )


def _abort_line(stats: ProducerStats) -> str:
    return (
        f"aborted: {stats.delivered:,} ticks delivered, {stats.pending:,} still in flight "
        "were not confirmed (they may or may not be on the topic)"
    )


@contextmanager
def _live_status(err: Console, run: ProducerRun) -> Iterator[None]:
    """A terminal: one Rich live line, redrawn 4 times a second and cleared at the end."""
    from rich.live import Live
    from rich.text import Text

    from cryptoctl.producer.report import status_line

    def render() -> Text:
        return Text(status_line(run.stats()))

    with Live(console=err, refresh_per_second=4, transient=True, get_renderable=render):
        yield


@contextmanager
def _plain_status(err: Console, run: ProducerRun) -> Iterator[None]:
    """Not a terminal: a plain status line every few seconds instead of a live display."""
    from cryptoctl.producer.report import status_line

    done = threading.Event()

    def loop() -> None:
        while not done.wait(PLAIN_STATUS_EVERY_S):
            err.print(status_line(run.stats()), markup=False, highlight=False)

    thread = threading.Thread(target=loop, name="produce-status", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(1.0)


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else "dim"
        self.console.print(
            f"{record.levelname.lower()}: {record.getMessage()}", style=style, markup=False, highlight=False
        )


@contextmanager
def _log_to(console: Console) -> Iterator[None]:
    logger = logging.getLogger("cryptoctl.producer")
    handler = _ConsoleHandler(console)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _print_summary(st: CliState, summary: ProducerSummary, fmt: SummaryFormat) -> None:
    if fmt is SummaryFormat.json:
        data = summary.to_dict()
        data["elapsed_s"] = round(data["elapsed_s"], 3)
        data["ticks_per_s"] = round(data["ticks_per_s"], 1)
        data["avg_ticks_per_s"] = round(data["avg_ticks_per_s"], 1)
        st.out.print(json.dumps(data), markup=False, highlight=False, soft_wrap=True)
        return
    from rich.table import Table

    from cryptoctl.producer.report import summary_rows

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    st.err.print(table)  # a report, not data: only --format json puts it on stdout


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=False)(produce)
