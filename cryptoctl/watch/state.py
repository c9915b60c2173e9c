"""Per-symbol state of a watch session. Pure: every update is given the time ``now``.

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
class SymbolState:
    symbol: str
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
    sources: set[str] = field(default_factory=set)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    recent_seen: deque[float] = field(default_factory=deque)

    @classmethod
    def first(cls, tick: Tick, now: float) -> SymbolState:
        state = cls(
            symbol=tick.symbol,
            quote=tick.quote,
            first_price=tick.price,
            last_price=tick.price,
            high=tick.price,
            low=tick.price,
            first_seen=now,
            last_seen=now,
            last_ts=tick.ts,
            change_24h_pct=_change_24h(tick.extra),
            sources={tick.source},
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
        self.sources.add(tick.source)
        self.recent.append(tick.price)
        self.recent_seen.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.recent_seen and self.recent_seen[0] < now - RATE_WINDOW_S:
            self.recent_seen.popleft()

    @property
    def change_pct(self) -> float:
        """Change since the watch first saw this symbol, in percent."""
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


@dataclass
class WatchState:
    """Everything the watch display shows: symbols, totals, invalid count, sources."""

    started: float
    symbols_filter: frozenset[str] | None = None
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    ticks: int = 0
    invalid: int = 0
    filtered_out: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    # The aggregator's current 1-minute candle per symbol, from Redis, when available.
    candles: dict[MarketKey, CandleDoc] = field(default_factory=dict)
    cache_status: str = NOT_CHECKED  # of the last poll (cryptoctl/cache/poller.py)

    @classmethod
    def create(cls, now: float, symbols: Iterable[str] | None = None) -> WatchState:
        wanted = frozenset(s.upper() for s in symbols) if symbols else None
        return cls(started=now, symbols_filter=wanted)

    def wants(self, symbol: str) -> bool:
        return self.symbols_filter is None or symbol in self.symbols_filter

    def apply(self, tick: Tick, now: float) -> bool:
        """Count a valid tick; False when the symbol filter leaves it out."""
        if not self.wants(tick.symbol):
            self.filtered_out += 1
            return False
        self.ticks += 1
        self.sources[tick.source] += 1
        current = self.symbols.get(tick.symbol)
        if current is None:
            self.symbols[tick.symbol] = SymbolState.first(tick, now)
        else:
            current.apply(tick, now)
        return True

    def reject(self, reason: str) -> None:
        self.invalid += 1

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.started)

    def ordered(self) -> list[SymbolState]:
        return [self.symbols[name] for name in sorted(self.symbols)]
