"""`cryptoctl verify` for one exchange: which minutes can be judged, the exchange's candles
for them, and the verdicts (:mod:`cryptoctl.exchanges.verify` does the comparing).

Only closed minutes are judged. The range ends at the start of the current minute, and
then at the exchange's first minute still forming (Kraken's last OHLC row always is; so is
Binance's open kline) or, on the exchanges that publish every minute (Binance, Kraken),
after their newest closed candle. Kraken keeps only its 720 most recent minutes: an older
range is said so up front, never reported as minutes missing here or there.

Our side comes in through callables (the CLI passes the database queries), so this module
needs no database and no terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptoctl.errors import UsageError
from cryptoctl.exchanges.rest import ExchangeCandle
from cryptoctl.exchanges.trade import Market
from cryptoctl.exchanges.verify import MINUTE_MS, Minute, MinuteCandle, compare
from cryptoctl.exchanges.wire import ExchangeWire
from cryptoctl.times import iso_utc

SOURCES = ("binance", "coinbase", "kraken")
# Minutes of 1-minute candles an exchange keeps (the forming one included), when limited.
RETENTION_MINUTES = {"kraken": 720}
# Exchanges with a candle for every minute (zero volume when nothing traded): a minute
# after their newest closed candle is one they have not closed yet.
EVERY_MINUTE = frozenset({"binance", "kraken"})


class CandleHistory(Protocol):
    def check_market(self, market: Market) -> None: ...

    def candles(self, market: Market, start_ms: int, end_ms: int) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Plan:
    """The minutes ``[start_ms, end_ms)`` to judge, and what was cut off and why."""

    start_ms: int
    end_ms: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarketReport:
    market: Market
    start_ms: int  # the minutes judged: [start_ms, end_ms)
    end_ms: int
    minutes: list[Minute]
    notes: list[str] = field(default_factory=list)


def _wire(source: str) -> ExchangeWire:
    from cryptoctl.exchanges import binance, coinbase, kraken

    wires: dict[str, ExchangeWire] = {
        "binance": binance.WIRE,
        "coinbase": coinbase.WIRE,
        "kraken": kraken.WIRE,
    }
    return wires[source]


def history(source: str, rest_url: str | None, clock: Callable[[], float]) -> CandleHistory:
    """The exchange's REST history (its default address unless ``rest_url``)."""
    from cryptoctl.exchanges import binance, coinbase, kraken

    classes: dict[str, Callable[..., CandleHistory]] = {
        "binance": binance.BinanceHistory,
        "coinbase": coinbase.CoinbaseHistory,
        "kraken": kraken.KrakenHistory,
    }
    return classes[source](rest_url or _wire(source).default_rest_url, clock=clock)


def default_quote(source: str) -> str:
    return _wire(source).default_quote


def floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def plan(source: str, since_ms: int, until_ms: int, now_ms: int) -> Plan:
    """The closed minutes of [since, until) the exchange can still serve.

    UsageError when none of them is still kept (Kraken, a range older than 720 minutes).
    """
    start, end = floor_minute(since_ms), min(floor_minute(until_ms), floor_minute(now_ms))
    notes: list[str] = []
    kept = RETENTION_MINUTES.get(source)
    if kept is not None:
        # one minute of margin: the exchange's clock may be a minute boundary ahead of ours
        oldest = floor_minute(now_ms) - (kept - 2) * MINUTE_MS
        if end <= oldest:
            raise UsageError(
                f"{source} keeps only its {kept} most recent 1-minute candles (from about "
                f"{iso_utc(oldest)}): {iso_utc(start)} .. {iso_utc(end)} is older",
                hint="verify a more recent range, e.g. --since 6h",
            )
        if start < oldest:
            notes.append(
                f"{source} keeps only its {kept} most recent 1-minute candles: the minutes "
                f"before {iso_utc(oldest)} are not compared"
            )
            start = oldest
    return Plan(start, max(start, end), tuple(notes))


def theirs(c: ExchangeCandle) -> MinuteCandle:
    return MinuteCandle(
        c.bucket_ms, c.open, c.high, c.low, c.close, c.volume, c.trades, c.vwap,
        vwap_step=c.vwap_step,
    )  # fmt: skip


def closed_range(
    source: str, candles: Sequence[ExchangeCandle], start_ms: int, end_ms: int
) -> tuple[int, str | None]:
    """``end_ms`` clamped to the exchange's own notion of closed minutes, and why."""
    forming = [c.bucket_ms for c in candles if not c.closed]
    end, note = end_ms, None
    if forming and min(forming) < end:
        end = min(forming)
        note = f"{source} has {iso_utc(end)} still forming: it and later minutes are not compared"
    closed = [c.bucket_ms for c in candles if c.closed and c.bucket_ms < end]
    if source in EVERY_MINUTE and closed and max(closed) + MINUTE_MS < end:
        end = max(closed) + MINUTE_MS
        note = (
            f"{source} has no closed candle after {iso_utc(end - MINUTE_MS)}: later minutes are not compared"
        )
    return max(start_ms, end), note


def verify_market(
    source_history: CandleHistory,
    market: Market,
    planned: Plan,
    *,
    ours: Callable[[int, int], list[MinuteCandle]],
    gaps: Callable[[int, int], list[tuple[int, int]]],
    progress: Callable[[int], None] = lambda minutes: None,
) -> MarketReport:
    """Fetch the exchange's candles of the planned minutes (``progress`` gets the minutes
    covered so far after each page), read ours and the recorded gaps, judge each minute."""
    start, end = planned.start_ms, planned.end_ms
    fetched: list[ExchangeCandle] = []
    if end > start:
        for page in source_history.candles(market, start, end):
            fetched.extend(page)
            progress((min(page[-1].bucket_ms + MINUTE_MS, end) - start) // MINUTE_MS)
    progress((end - start) // MINUTE_MS)
    end, note = closed_range(market.source, fetched, start, end)
    notes = list(planned.notes) + ([note] if note else [])
    judged = [theirs(c) for c in fetched if c.closed and start <= c.bucket_ms < end]
    minutes = compare(market.symbol, ours(start, end), judged, start, end, gaps=gaps(start, end))
    return MarketReport(market, start, end, minutes, notes)
