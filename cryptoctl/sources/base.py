"""What every source shares: the interface and its counters. The tick itself, and the
ways to build a checked one, live in :mod:`cryptoctl.tick`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from cryptoctl.metrics.histogram import Histogram, request_histogram
from cryptoctl.tick import MAX_TS_MS, MAX_VALUE, MIN_TS_MS, ValidTick, is_code

log = logging.getLogger(__name__)


class StopFlag(Protocol):
    """What a source waits on: a ``threading.Event`` fits, so does the produce loop's
    run control (which also serves Kafka delivery reports while a source sleeps)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class SourceCounters:
    """Written by the source (one thread), read by anyone: plain ints, no lock needed."""

    unchanged: int = 0  # a quote whose event time did not move: not produced again
    invalid: int = 0  # a quote or row rejected by validation: counted, never produced
    source_errors: int = 0  # a request or read that failed (after its retries)
    retries: int = 0  # requests retried by the source
    last_problem: str = ""
    # seconds per HTTP request of the source (CoinGecko, exchange REST), failed ones too
    requests: Histogram = field(default_factory=request_histogram)


class Source(Protocol):
    name: str
    counters: SourceCounters

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        """Batches of validated ticks until the source ends or ``stop`` is set.

        A source paces itself (poll interval, --rate, --speed) by waiting on ``stop``. A
        source that waits on something else (a socket) yields an empty batch now and then,
        so the loop can serve Kafka delivery reports meanwhile.
        """
        ...


class Marker(NamedTuple):
    """A message for the ticks' topic that is not a tick (a feed's gap marker): key, the
    value as a JSON object, and the message timestamp (epoch ms)."""

    key: str
    value: dict[str, Any]
    ts: int


@runtime_checkable
class MarkerSource(Protocol):
    """A source that also has markers to send (exchange feeds: gaps). The loop takes them
    after each batch, and once more at the end, and sends them in order."""

    def take_markers(self) -> list[Marker]: ...


@dataclass(frozen=True)
class MarketStats:
    """One market of a trade feed, as the status line and the summary show it."""

    market: str  # "binance BTC/USDT"
    trades: int  # produced: live, history and filled
    trades_per_s: float  # recent rate
    last_trade_id: int | None
    last_trade_ts: int | None
    reconnects: int
    gaps_filled: int  # jumps in the ids bridged over REST
    filled_trades: int  # trades fetched over REST to bridge them
    history_trades: int  # trades of the --since history
    duplicates: int  # live trades already produced (re-sent after a reconnect), dropped
    gaps_open: int  # gaps that could not be filled (each sent as a gap marker)
    open_gaps: tuple[dict[str, Any], ...] = ()  # the gap markers, as sent
    rest_pages: int = 0  # REST history pages fetched (--since history, resume, gap fills)
    catching_up: bool = False  # fetching trades over REST now (a resume's catch-up, a fill)
    behind: int | None = None  # ... trades still to fetch (None: unknown, or not catching up)


@dataclass(frozen=True)
class FeedStats:
    """A live trade feed: its connection and its markets."""

    connected: bool
    connects: int
    reconnects: int
    unreadable: int  # frames that could not be read (counted, skipped)
    markets: tuple[MarketStats, ...]


@runtime_checkable
class FeedSource(Protocol):
    """A source with per-market feed counters, readable from any thread."""

    def feed_stats(self) -> FeedStats: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def valid_symbol(symbol: str) -> bool:
    """validate_tick's rule for the symbol (what a cache of checked symbols may hold)."""
    return is_code(symbol)


def plain_fields_ok(price: float, qty: float | None, ts: int, recv_ts: int) -> bool:
    """validate_tick's rules for the per-tick numbers, as plain comparisons on floats and
    ints (NaN fails every comparison). With a valid symbol, a non-empty source and an
    upper-case quote, True means validate_tick accepts the tick with these values."""
    return (
        0.0 < price < MAX_VALUE
        and (qty is None or 0.0 <= qty < MAX_VALUE)
        and MIN_TS_MS <= ts <= MAX_TS_MS
        and MIN_TS_MS <= recv_ts <= MAX_TS_MS
    )


def note_problem(counters: SourceCounters, message: str, *, level: int = logging.WARNING) -> None:
    counters.last_problem = message
    log.log(level, message)
