"""Redis clients from Settings and the key names of the cache (DESIGN.md, "Storage")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptoctl.errors import ServiceUnavailable
from cryptoctl.settings import Settings, redact

if TYPE_CHECKING:
    import redis


# A market as the cache keys it: (symbol, source, quote), the windows' order.
MarketKey = tuple[str, str, str]


def market_id(market: MarketKey) -> str:
    """``BTC:USDT:binance``: the market in key names and in the markets set. The source
    comes last because it is the one part that may hold a colon."""
    symbol, source, quote = market
    return f"{symbol}:{quote}:{source}"


def parse_market_id(text: str) -> MarketKey | None:
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(parts):
        return None
    symbol, quote, source = parts
    return symbol, source, quote


@dataclass(frozen=True)
class Keys:
    """Key names under the configured prefix (default ``cryptoctl:``), one set per market."""

    prefix: str

    def latest(self, market: MarketKey) -> str:
        return f"{self.prefix}latest:{market_id(market)}"

    def candle_current(self, market: MarketKey) -> str:
        return f"{self.prefix}candle:current:{market_id(market)}"

    def candle_final(self, market: MarketKey) -> str:
        return f"{self.prefix}candle:final:{market_id(market)}"

    @property
    def markets(self) -> str:
        """The set of every market cached, as :func:`market_id` strings."""
        return f"{self.prefix}markets"

    @property
    def channel(self) -> str:
        return f"{self.prefix}candles"


def redis_address(settings: Settings) -> str:
    return redact(settings.redis_url)


def redis_client(settings: Settings, timeout: float = 2.0) -> redis.Redis:
    """A client; no network call is made until it is used."""
    import redis as redis_mod

    return redis_mod.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        decode_responses=True,
    )


def redis_reason(exc: Exception) -> str:
    text = str(exc)
    return "Connection refused" if "refused" in text.lower() else text


def check_redis(settings: Settings) -> redis.Redis:
    """A client that answered PING, or ServiceUnavailable."""
    import redis as redis_mod

    client = redis_client(settings)
    try:
        client.ping()
    except redis_mod.RedisError as exc:
        raise ServiceUnavailable("Redis", redis_address(settings), redis_reason(exc)) from None
    return client
