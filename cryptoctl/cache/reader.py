"""Reading the Redis cache back: latest prices and current/final candles per market.

The aggregator writes these after each commit (cryptoctl/cache/writer.py), as the
documents of cryptoctl/cache/documents.py. A key holding anything else (another type, a
value another program wrote) is skipped rather than breaking a display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cryptoctl.cache.client import Keys, MarketKey, parse_market_id
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.db.queries import LatestPrice
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import redis


def _values(client: redis.Redis, names: Sequence[str]) -> list[Any]:
    """The string values of the keys (None where a key is missing or holds another type):
    one round trip."""
    return list(client.mget(names)) if names else []


def cached_markets(client: redis.Redis, keys: Keys) -> list[MarketKey]:
    """Markets known to the cache (the markets set), as (symbol, source, quote), sorted."""
    if client.type(keys.markets) != "set":
        return []
    found = (parse_market_id(str(m)) for m in client.smembers(keys.markets))
    return sorted(m for m in found if m is not None)


def select(
    markets: Iterable[MarketKey], symbols: Iterable[str] | None = None,
    source: str | None = None, quote: str | None = None,
) -> list[MarketKey]:
    """The markets of these symbols (all when None), of this source and quote when given."""
    wanted = {s.upper() for s in symbols} if symbols else None
    return [
        m for m in markets
        if (wanted is None or m[0] in wanted)
        and (source is None or m[1] == source)
        and (quote is None or m[2] == quote.upper())
    ]


def latest_docs(
    client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None, *,
    source: str | None = None, quote: str | None = None,
) -> list[LatestDoc]:
    """The latest-price document of each market found in Redis, by market."""
    markets = select(cached_markets(client, keys), symbols, source, quote)
    docs = (LatestDoc.from_json(v) for v in _values(client, [keys.latest(m) for m in markets]))
    return [d for d in docs if d is not None]


def latest_prices(
    client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None, *,
    source: str | None = None, quote: str | None = None,
) -> list[LatestPrice]:
    """The latest price of each market found in Redis, by market."""
    return [
        LatestPrice(d.symbol, float(d.price), d.ts, origin="redis", source=d.source,
                    quote=d.quote)
        for d in latest_docs(client, keys, symbols, source=source, quote=quote)
    ]


def _candles(
    client: redis.Redis, key: Callable[[MarketKey], str], markets: Sequence[MarketKey]
) -> dict[MarketKey, CandleDoc]:
    out = {}
    for market, raw in zip(markets, _values(client, [key(m) for m in markets]), strict=True):
        doc = CandleDoc.from_json(raw)
        if doc is not None:
            out[market] = doc
    return out


def current_candles(
    client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None
) -> dict[MarketKey, CandleDoc]:
    """The open 1-minute candle per market of these symbols, where the aggregator has one."""
    return _candles(client, keys.candle_current, select(cached_markets(client, keys), symbols))


def final_candles(
    client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None
) -> dict[MarketKey, CandleDoc]:
    """The last final 1-minute candle per market of these symbols."""
    return _candles(client, keys.candle_final, select(cached_markets(client, keys), symbols))


def latest_prices_with_fallback(
    settings: Settings, symbols: Iterable[str] | None = None, *,
    source: str | None = None, quote: str | None = None,
) -> tuple[list[LatestPrice], str | None]:
    """Latest prices per market, of these symbols, source and quote (any when None), by
    symbol, source, quote: from Redis; from PostgreSQL (``v_latest_prices``) when Redis is
    down or has none of them. Returns the prices and a note saying why the fallback was used.
    The source matches without regard to case, as in PostgreSQL."""
    import redis as redis_mod

    from cryptoctl.cache.client import redis_address, redis_client
    from cryptoctl.db.queries import load_latest_prices

    wanted = list(symbols) if symbols else None
    try:
        client = redis_client(settings)
        cached = latest_prices(client, Keys(settings.redis_prefix), wanted, quote=quote)
        prices = sorted(
            (p for p in cached if source is None or (p.source or "").lower() == source.lower()),
            key=lambda p: (p.symbol, p.source or "", p.quote or ""),
        )
        note = None if prices else "no latest prices in Redis"
    except (redis_mod.RedisError, OSError) as exc:
        prices, note = [], f"Redis is not reachable at {redis_address(settings)} ({exc})"
    if prices:
        return prices, None
    found = load_latest_prices(settings, wanted, source=source, quote=quote)
    return found, f"{note}; read PostgreSQL v_latest_prices"
