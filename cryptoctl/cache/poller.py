"""The one reader of the aggregator's candles for live displays (``watch``, ``run``).

Rate-limited (a display redraws far more often than candles change), one connection
kept for the session, and it never raises: Redis being down is a status for the display
to show, and the candles read last stay shown meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptoctl.cache.client import MarketKey
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import redis

# The status of the last poll; each display words it its own way (render/).
NOT_CHECKED = "not checked"  # no poll yet
OK = "ok"  # read, and at least one market asked for has an open candle
NONE_YET = "none yet"  # read, but no open candle for any of the markets
UNAVAILABLE = "Redis unavailable"  # Redis did not answer: the previous candles are kept

POLL_S = 1.0


@dataclass(frozen=True)
class CachedCandles:
    """What a poll found: market -> its open and its last final 1-minute candle."""

    current: dict[MarketKey, CandleDoc] = field(default_factory=dict)
    final: dict[MarketKey, CandleDoc] = field(default_factory=dict)
    status: str = NOT_CHECKED


class CandlePoller:
    """``poll(symbols, now)`` at any rate; Redis is read at most once per ``every_s`` (once
    per ``retry_s`` after a failure). ``now`` is any clock in seconds, the same every call.

    A poll finds the candles of every cached market of the symbols (Binance BTC/USDT and
    Coinbase BTC/USD alike); ``keep`` narrows them to the markets the display shows."""

    def __init__(
        self, settings: Settings, *, every_s: float = POLL_S, retry_s: float = 5 * POLL_S,
        timeout_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.every_s = every_s
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.last = CachedCandles()
        self._client: redis.Redis | None = None
        self._next_poll = float("-inf")

    def poll(
        self, symbols: Iterable[str], now: float, *,
        keep: Callable[[MarketKey], bool] | None = None,
    ) -> CachedCandles:
        wanted = list(symbols)
        if now < self._next_poll or not wanted:
            return self.last
        import redis as redis_mod

        from cryptoctl.cache.client import Keys, redis_client
        from cryptoctl.cache.reader import current_candles, final_candles

        try:
            if self._client is None:
                self._client = redis_client(self.settings, timeout=self.timeout_s)
            keys = Keys(self.settings.redis_prefix)
            current = current_candles(self._client, keys, wanted)
            final = final_candles(self._client, keys, wanted)
        except (redis_mod.RedisError, OSError):
            self._next_poll = now + self.retry_s
            self.last = CachedCandles(self.last.current, self.last.final, UNAVAILABLE)
            return self.last
        if keep is not None:
            current = {m: doc for m, doc in current.items() if keep(m)}
            final = {m: doc for m, doc in final.items() if keep(m)}
        self._next_poll = now + self.every_s
        self.last = CachedCandles(current, final, OK if current else NONE_YET)
        return self.last
