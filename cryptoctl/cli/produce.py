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
from cryptoctl.durations import parse_duration_ms
from cryptoctl.errors import DeliveryFailed, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from cryptoctl.producer import ProducerRun, ProducerSummary
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


_ANY_POLLED = (SourceName.coingecko, SourceName.synthetic)

# The options of one source (or two): who they belong to and the default when not given,
# as typed on the command line. The Typer defaults are None (or False/empty), so a flag
# given for another source is known and refused; --help shows these defaults.
PER_SOURCE: dict[str, tuple[tuple[SourceName, ...], Any]] = {
    "symbols": (_ANY_POLLED, "BTC,ETH"),
    "interval": ((SourceName.coingecko,), "10s"),
    "api_key": ((SourceName.coingecko,), None),
    "key_type": ((SourceName.coingecko,), None),
    "api_url": ((SourceName.coingecko,), None),
    "coin_id": ((SourceName.coingecko,), []),
    "max_rpm": ((SourceName.coingecko,), None),
    "rate": ((SourceName.synthetic,), 10.0),
    "seed": ((SourceName.synthetic,), None),
    "start": ((SourceName.synthetic,), None),
    "out_of_order": ((SourceName.synthetic,), 0.0),
    "max_delay": ((SourceName.synthetic,), "5s"),
    "file": ((SourceName.replay,), None),
    "speed": ((SourceName.replay,), 1.0),
    "strict": ((SourceName.replay,), False),
}
_DURATIONS = {"interval", "max_delay"}  # given ones are ms already (the option callback)
_FLAG_NAMES = {"max_rpm": "--max-requests-per-minute"}


def _default(name: str) -> str:
    """The default of a per-source option as --help shows it."""
    value = PER_SOURCE[name][1]
    shown = f"{value:g}" if isinstance(value, float) else value
    return f"[default: {shown}]"


def produce(
    ctx: typer.Context,
    source: SourceName = typer.Option(SourceName.coingecko, "--source", "-s", help="Where prices come from."),
    symbols: str | None = typer.Option(
        None, "--symbols", help=f"Comma-separated symbols (coingecko, synthetic). {_default('symbols')}"
    ),
    interval: str | None = typer.Option(
        None,
        "--interval",
        callback=positive_duration_option,
        help=f"CoinGecko poll interval, e.g. 10s, 1m. {_default('interval')}",
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
        help=f"Synthetic ticks per second over all symbols; 0 = unthrottled. {_default('rate')}",
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
        help=f"Synthetic: share of ticks emitted late (0..1). {_default('out_of_order')}",
    ),
    max_delay: str | None = typer.Option(
        None,
        "--max-delay",
        callback=positive_duration_option,
        help=f"Synthetic: how late an out-of-order tick may be. {_default('max_delay')}",
    ),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Replay: CSV or JSON Lines file (ts,symbol,price[,qty])."
    ),
    speed: float | None = typer.Option(
        None,
        "--speed",
        min=0,
        help=f"Replay: factor on the recorded pace; 0 = as fast as possible. {_default('speed')}",
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
    prints a summary (a second Ctrl-C aborts). A flag of another source is refused. Exit
    codes: 2 bad usage, 3 Kafka unreachable, 5 bad data (a bad row with --strict, a replay
    file that is not UTF-8 or lacks the ts,symbol,price header), after the summary.
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
        raise DeliveryFailed(
            f"{lost} ticks were not delivered to {settings.topic} on {settings.kafka_bootstrap}",
            hint="see the warnings above; the broker may be down or the topic gone",
        )


def source_options(given: dict[str, Any]) -> dict[str, Any]:
    """The flags with the per-source defaults filled in. A flag given for another source
    is a usage error, not silently ignored (PER_SOURCE says whose each one is)."""
    kind: SourceName = given["source"]
    out = dict(given)
    for name, (owners, default) in PER_SOURCE.items():
        value = given.get(name)
        if value is None or value is False or value == []:  # not given: 0 and 0.0 are
            if kind in owners:
                out[name] = parse_duration_ms(default) if name in _DURATIONS else default
        elif kind not in owners:
            flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
            whose = " or ".join(owner.value for owner in owners)
            raise UsageError(
                f"{flag} is for --source {whose}", hint=f"drop it or use --source {owners[0].value}"
            )
    return out


def build_source(settings: Any, given: dict[str, Any]) -> Source:
    """The source the flags ask for; every usage error is raised here, before producing."""
    given = source_options(given)
    kind: SourceName = given["source"]
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
            from cryptoctl.render.produce import abort_line

            err.print(abort_line(run.stats()), style="yellow", markup=False, highlight=False)
            raise


def _say_stopping(err: Console, run: ProducerRun) -> None:
    from cryptoctl.render.produce import stopping_line

    err.print(stopping_line(run.stats()), style="yellow", markup=False, highlight=False)


@contextmanager
def _live_status(err: Console, run: ProducerRun) -> Iterator[None]:
    """A terminal: one Rich live line, redrawn 4 times a second and cleared at the end."""
    from rich.live import Live
    from rich.text import Text

    from cryptoctl.render.produce import status_line

    def render() -> Text:
        return Text(status_line(run.stats()))

    with Live(console=err, refresh_per_second=4, transient=True, get_renderable=render):
        yield


@contextmanager
def _plain_status(err: Console, run: ProducerRun) -> Iterator[None]:
    """Not a terminal: a plain status line every few seconds instead of a live display."""
    from cryptoctl.render.produce import status_line

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
    from cryptoctl.render.produce import summary_json, summary_table

    if fmt is SummaryFormat.json:
        st.out.print(json.dumps(summary_json(summary)), markup=False, highlight=False, soft_wrap=True)
        return
    st.err.print(summary_table(summary))  # a report, not data: only --format json puts it on stdout


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=False)(produce)
