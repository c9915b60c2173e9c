"""Redis clients from Settings and the key names of the cache (DESIGN.md, "Storage")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptoctl.errors import ServiceUnavailable
from cryptoctl.settings import Settings, redact

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class Keys:
    """Key names under the configured prefix (default ``cryptoctl:``)."""

    prefix: str

    def latest(self, symbol: str) -> str:
        return f"{self.prefix}latest:{symbol}"

    def candle_current(self, symbol: str) -> str:
        return f"{self.prefix}candle:current:{symbol}"

    def candle_final(self, symbol: str) -> str:
        return f"{self.prefix}candle:final:{symbol}"

    @property
    def symbols(self) -> str:
        return f"{self.prefix}symbols"

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
