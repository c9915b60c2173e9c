"""Options that several commands share, defined once, so a flag means one thing everywhere.

Short flags: ``-s`` is always the symbols, ``-f`` the output format, ``-d`` a duration to
stop after, ``-t`` the topic (tests/cli/test_short_flags.py walks every command).
Values arrive parsed: a duration as milliseconds (int), symbols as upper-case lists; a
bad value exits 2 with an example of a good one.
"""

from __future__ import annotations

import enum
from typing import Any

import typer

from cryptoctl.errors import UsageError
from cryptoctl.times import parse_duration_ms


class OutputFormat(enum.StrEnum):
    """Rows of data."""

    table = "table"
    json = "json"
    csv = "csv"


class ViewFormat(enum.StrEnum):
    """A view or a summary that is not rows (status, config, a run's summary): no csv."""

    table = "table"
    json = "json"


class WatchFormat(enum.StrEnum):
    table = "table"
    jsonl = "jsonl"


# --- durations ---------------------------------------------------------------------


def parse_duration(value: str | int) -> int:
    """A duration flag -> milliseconds; a bad value is a usage error with an example."""
    if isinstance(value, int):  # a default already converted
        return value
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_positive_duration(value: str | int) -> int:
    ms = parse_duration(value)
    if ms <= 0:
        raise typer.BadParameter("must be greater than zero (e.g. 10s)")
    return ms


def duration_option(default: str | None, *names: str, help: str, positive: bool = True) -> Any:
    """A duration (250ms, 10s, 5m, 1h30m) as int milliseconds."""
    return typer.Option(
        default,
        *names,
        parser=parse_positive_duration if positive else parse_duration,
        metavar="DURATION",
        help=help,
    )


def stop_after_option(help: str = "Stop after this long, e.g. 30s, 5m.") -> Any:
    return duration_option(None, "--duration", "-d", help=help)


# --- symbols -----------------------------------------------------------------------


def parse_symbol_values(values: list[str] | None) -> list[str] | None:
    """Typer callback: repeated and comma-separated symbols -> one upper-case list, or None
    when none was given. The same parser (and error) as every other command's."""
    if not values:
        return None
    from cryptoctl.sources.coins import parse_symbols

    try:
        return parse_symbols(values)
    except UsageError as exc:
        message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        raise typer.BadParameter(message, param_hint="'--symbols' / '-s'") from None


def symbols_option(default: list[str] | None, help: str) -> Any:
    """``-s BTC -s eth,SOL``: repeatable, or comma-separated."""
    return typer.Option(
        default, "--symbols", "--symbol", "-s", callback=parse_symbol_values, metavar="SYMBOLS",
        help=help,
    )  # fmt: skip


FILTER_SYMBOLS_HELP = "Only these symbols (repeatable, or comma-separated: BTC,ETH)."


# --- markets: (source, symbol, quote) ----------------------------------------------


def parse_quote_value(value: str | None) -> str | None:
    """Typer callback: a quote currency, upper-case (``usdt`` -> ``USDT``)."""
    if value is None:
        return None
    from cryptoctl.tick import is_code

    quote = value.strip().upper()
    if not is_code(quote):
        raise typer.BadParameter(f"{value!r} is no currency code (e.g. USD, USDT)")
    return quote


def parse_market_source(value: str | None) -> str | None:
    if value is None:
        return None
    source = value.strip()
    if not source:
        raise typer.BadParameter("must not be empty (e.g. binance, coinbase, coingecko)")
    return source


def market_source_option() -> Any:
    """``--source binance``: only the markets of this source (matched without regard to case)."""
    return typer.Option(
        None, "--source", callback=parse_market_source, metavar="SOURCE",
        help="Only markets of this source (binance, coinbase, kraken, coingecko, synthetic, ...).",
    )  # fmt: skip


def quote_option() -> Any:
    """``--quote USDT``: only the markets quoted in this currency."""
    return typer.Option(
        None, "--quote", callback=parse_quote_value, metavar="QUOTE",
        help="Only markets quoted in this currency (USD, USDT, EUR, ...).",
    )  # fmt: skip


# --- formats, source, topic --------------------------------------------------------


def format_option(default: enum.Enum | None, help: str) -> Any:
    return typer.Option(default, "--format", "-f", help=help)


def source_option(default: enum.Enum | None, help: str) -> Any:
    return typer.Option(default, "--source", help=help)


def topic_option(help: str = "Kafka topic [env CRYPTOCTL_TOPIC, default crypto-prices].") -> Any:
    return typer.Option(None, "--topic", "-t", help=help)


# --- exchange feeds (produce, run) -------------------------------------------------


def exchange_quote_option() -> Any:
    """``--quote USDT`` of an exchange source: the quote asset of every market it produces."""
    from cryptoctl.sources.spec import default_shown

    return typer.Option(
        None, "--quote", metavar="ASSET",
        help=f"Exchanges: the quote asset of every market (BTC/USDT). {default_shown('quote')}",
    )  # fmt: skip


def exchange_since_option() -> Any:
    return typer.Option(
        None, "--since", metavar="TIME",
        help="Exchanges: start with the trades from TIME over REST (a duration back like 2h, "
        "ISO-8601 or epoch ms), then go live. Without it a market resumes after its last trade "
        "on the topic, or starts with the first live trade.",
    )  # fmt: skip


def _exchange_url_option(flag: str, kind: str, env: str, note: str) -> Any:
    return typer.Option(
        None, flag, metavar="URL",
        help=f"Exchanges: {kind} base URL (env {env}, and so on for coinbase and kraken{note}) "
        "[default: the exchange's own].",
    )  # fmt: skip


def ws_url_option() -> Any:
    return _exchange_url_option("--ws-url", "WebSocket", "CRYPTOCTL_BINANCE_WS_URL", "")


def rest_url_option(note: str = "") -> Any:
    """``--rest-url``; ``note`` adds what this command does with it (``; ...``)."""
    return _exchange_url_option("--rest-url", "REST", "CRYPTOCTL_BINANCE_REST_URL", note)
# --- metrics -----------------------------------------------------------------------


def metrics_port_option() -> Any:
    return typer.Option(
        None, "--metrics-port", min=1, max=65535, metavar="PORT",
        help="Serve Prometheus metrics on this port (/metrics); off unless given"
        " [env CRYPTOCTL_METRICS_PORT].",
    )  # fmt: skip


def metrics_host_option() -> Any:
    return typer.Option(
        None, "--metrics-host", metavar="ADDRESS",
        help="Address the metrics server listens on [env CRYPTOCTL_METRICS_HOST, default 127.0.0.1].",
    )  # fmt: skip
