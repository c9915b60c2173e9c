"""Per-market state of a watch session. Pure: every update is given the time ``now``.

A market is (symbol, source, quote), keyed as the cache keys it (:data:`MarketKey`):
Binance BTC/USDT and Coinbase BTC/USD are two rows with two sets of numbers.

``now`` is wall-clock seconds (``time.time()``) of when the watch saw the message, so the
age and ticks/s columns measure what the watcher sees, whatever the ticks' event times.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptoctl.cache.client import MarketKey
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.poller import NOT_CHECKED
from cryptoctl.tick import Tick

SPARK_POINTS = 40  # prices kept for the sparkline
RATE_WINDOW_S = 10.0  # ticks/s is measured over this many recent seconds


@dataclass
class MarketState:
    symbol: str
    source: str
    quote: str
    first_price: float
    last_price: float
    high: float
    low: float
    first_seen: float
    last_seen: float
    last_ts: int  # event time of the last tick, epoch ms
    ticks: int = 1
    direction: int = 0  # +1 up, -1 down, 0 unchanged: the last tick against the one before
    moved_at: float | None = None  # when the price last moved (for the flash)
    change_24h_pct: float | None = None
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    recent_seen: deque[float] = field(default_factory=deque)

    @classmethod
    def first(cls, tick: Tick, now: float) -> MarketState:
        state = cls(
            symbol=tick.symbol,
            source=tick.source,
            quote=tick.quote,
            first_price=tick.price,
            last_price=tick.price,
            high=tick.price,
            low=tick.price,
            first_seen=now,
            last_seen=now,
            last_ts=tick.ts,
            change_24h_pct=_change_24h(tick.extra),
        )
        state.recent.append(tick.price)
        state.recent_seen.append(now)
        return state

    def apply(self, tick: Tick, now: float) -> None:
        if tick.price != self.last_price:
            self.direction = 1 if tick.price > self.last_price else -1
            self.moved_at = now
        else:
            self.direction = 0
        self.last_price = tick.price
        self.high = max(self.high, tick.price)
        self.low = min(self.low, tick.price)
        self.last_seen = now
        self.last_ts = tick.ts
        self.ticks += 1
        change = _change_24h(tick.extra)
        if change is not None:
            self.change_24h_pct = change
        self.recent.append(tick.price)
        self.recent_seen.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.recent_seen and self.recent_seen[0] < now - RATE_WINDOW_S:
            self.recent_seen.popleft()

    @property
    def market(self) -> MarketKey:
        return self.symbol, self.source, self.quote

    @property
    def change_pct(self) -> float:
        """Change since the watch first saw this market, in percent."""
        return (self.last_price / self.first_price - 1.0) * 100.0

    def age(self, now: float) -> float:
        return max(0.0, now - self.last_seen)

    def rate(self, now: float) -> float:
        """Ticks per second over the last RATE_WINDOW_S seconds (or since first seen)."""
        recent = sum(1 for t in self.recent_seen if t >= now - RATE_WINDOW_S)
        span = min(RATE_WINDOW_S, max(now - self.first_seen, 1.0))
        return recent / span


def _change_24h(extra: Mapping[str, Any] | None) -> float | None:
    value = (extra or {}).get("change_24h_pct")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def market_of(tick: Tick) -> MarketKey:
    return tick.symbol, tick.source, tick.quote


@dataclass
class WatchState:
    """Everything the watch display shows: markets, totals, invalid count, sources."""

    started: float
    symbols_filter: frozenset[str] | None = None
    source_filter: str | None = None  # lower case: sources are matched regardless of case
    quote_filter: str | None = None  # upper case, as ticks carry it
    markets: dict[MarketKey, MarketState] = field(default_factory=dict)
    ticks: int = 0
    invalid: int = 0
    filtered_out: int = 0
    gaps: int = 0  # gap records of exchange feeds: not ticks, not invalid, not shown
    sources: Counter[str] = field(default_factory=Counter)
    # The aggregator's current 1-minute candle per market, from Redis, when available.
    candles: dict[MarketKey, CandleDoc] = field(default_factory=dict)
    cache_status: str = NOT_CHECKED  # of the last poll (cryptoctl/cache/poller.py)

    @classmethod
    def create(
        cls, now: float, symbols: Iterable[str] | None = None, *, source: str | None = None,
        quote: str | None = None,
    ) -> WatchState:
        wanted = frozenset(s.upper() for s in symbols) if symbols else None
        return cls(
            started=now, symbols_filter=wanted, source_filter=source.lower() if source else None,
            quote_filter=quote.upper() if quote else None,
        )

    def wants(self, market: MarketKey) -> bool:
        """Whether the filters (--symbol, --source, --quote) let this market through."""
        symbol, source, quote = market
        return (
            (self.symbols_filter is None or symbol in self.symbols_filter)
            and (self.source_filter is None or source.lower() == self.source_filter)
            and (self.quote_filter is None or quote == self.quote_filter)
        )

    def apply(self, tick: Tick, now: float) -> bool:
        """Count a valid tick; False when the filters leave its market out."""
        market = market_of(tick)
        current = self.markets.get(market)
        if current is None:
            if not self.wants(market):
                self.filtered_out += 1
                return False
            self.markets[market] = MarketState.first(tick, now)
        else:
            current.apply(tick, now)
        self.ticks += 1
        self.sources[tick.source] += 1
        return True

    def reject(self, reason: str) -> None:
        self.invalid += 1

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.started)

    def symbols(self) -> list[str]:
        """The symbols of the markets seen, sorted (what the candle poller asks for)."""
        return sorted({m[0] for m in self.markets})

    def ordered(self) -> list[MarketState]:
        """Markets by symbol, then source and quote: one symbol's markets side by side."""
        return [self.markets[m] for m in sorted(self.markets)]

    def labels(self) -> dict[MarketKey, str]:
        """Each row's name: ``BTC`` for a symbol seen in one market only, else the whole
        market, ``BTC/USDT binance``, so two markets of one symbol are told apart."""
        per_symbol = Counter(m[0] for m in self.markets)
        return {m: m[0] if per_symbol[m[0]] == 1 else market_label(m) for m in self.markets}


def market_label(market: MarketKey) -> str:
    """``BTC/USDT binance``: symbol and quote as a pair, then where it trades."""
    symbol, source, quote = market
    return f"{symbol}/{quote} {source}"
