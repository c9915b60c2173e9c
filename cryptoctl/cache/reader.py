"""Reading the Redis cache back: latest prices and current/final candles per symbol.

The aggregator writes these after each commit (cryptoctl/cache/writer.py), as the
documents of cryptoctl/cache/documents.py. A key holding anything else (another type, a
value another program wrote) is skipped rather than breaking a display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cryptoctl.cache.client import Keys
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.db.queries import LatestPrice
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import redis


def _values(client: redis.Redis, names: Sequence[str]) -> list[Any]:
    """The string values of the keys (None where a key is missing or holds another type):
    one round trip."""
    return list(client.mget(names)) if names else []


def cached_symbols(client: redis.Redis, keys: Keys) -> list[str]:
    """Symbols known to the cache: the symbols set, else a scan of latest-price keys."""
    found: set[str] = set()
    if client.type(keys.symbols) == "set":
        found = {str(s) for s in client.smembers(keys.symbols)}
    if not found:
        prefix = keys.latest("")
        found = {str(k)[len(prefix) :] for k in client.scan_iter(match=f"{prefix}*", count=500)}
    return sorted(s for s in found if s)


def latest_docs(client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None) -> list[LatestDoc]:
    """The latest-price document of each symbol found in Redis, by symbol."""
    wanted = [s.upper() for s in symbols] if symbols else cached_symbols(client, keys)
    docs = (LatestDoc.from_json(v) for v in _values(client, [keys.latest(s) for s in wanted]))
    return sorted((d for d in docs if d is not None), key=lambda d: d.symbol)


def latest_prices(client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None) -> list[LatestPrice]:
    """The latest price of each symbol found in Redis, by symbol."""
    return [
        LatestPrice(d.symbol, float(d.price), d.ts, origin="redis", source=d.source)
        for d in latest_docs(client, keys, symbols)
    ]


def _candles(
    client: redis.Redis, key: Callable[[str], str], symbols: Iterable[str]
) -> dict[str, CandleDoc]:
    wanted = list(symbols)
    out = {}
    for symbol, raw in zip(wanted, _values(client, [key(s) for s in wanted]), strict=True):
        doc = CandleDoc.from_json(raw)
        if doc is not None:
            out[symbol] = doc
    return out


def current_candles(client: redis.Redis, keys: Keys, symbols: Iterable[str]) -> dict[str, CandleDoc]:
    """The open 1-minute candle per symbol, where the aggregator has one."""
    return _candles(client, keys.candle_current, symbols)


def final_candles(client: redis.Redis, keys: Keys, symbols: Iterable[str]) -> dict[str, CandleDoc]:
    """The last final 1-minute candle per symbol."""
    return _candles(client, keys.candle_final, symbols)


def latest_prices_with_fallback(
    settings: Settings, symbols: Iterable[str] | None = None
) -> tuple[list[LatestPrice], str | None]:
    """Latest prices from Redis; from PostgreSQL (``v_latest_prices``) when Redis is down
    or has none. Returns the prices and a note saying why the fallback was used."""
    import redis as redis_mod

    from cryptoctl.cache.client import redis_address, redis_client
    from cryptoctl.db.queries import load_latest_prices

    wanted = list(symbols) if symbols else None
    try:
        client = redis_client(settings)
        prices = latest_prices(client, Keys(settings.redis_prefix), wanted)
        note = None if prices else "no latest prices in Redis"
    except (redis_mod.RedisError, OSError) as exc:
        prices, note = [], f"Redis is not reachable at {redis_address(settings)} ({exc})"
    if prices:
        return prices, None
    return load_latest_prices(settings, wanted), f"{note}; read PostgreSQL v_latest_prices"
