"""Reading the Redis cache back: latest prices and current/final candles per symbol.

The aggregator writes these after each commit (cryptoctl/cache/writer.py). Reading is
defensive: a value may be a JSON object, a bare number or a hash, and a key that does not
parse is skipped rather than breaking a display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from cryptoctl.cache.client import Keys
from cryptoctl.db.queries import LatestPrice
from cryptoctl.durations import datetime_ms
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import redis


def _decode(raw: Any) -> dict[str, Any] | None:
    """A stored value -> dict; a bare number is taken as a price."""
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return {str(k): _scalar(v) for k, v in raw.items()}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"price": value}
    return value if isinstance(value, dict) else None


def _scalar(value: Any) -> Any:
    """Hash fields arrive as strings: numbers and JSON literals are decoded."""
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return value


def time_ms(value: Any) -> int | None:
    """Epoch ms (int/float, seconds if small) or ISO-8601 text -> epoch ms."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value * 1000) if value < 10_000_000_000 else int(value)
    if isinstance(value, str):
        try:
            return datetime_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_latest(symbol: str, data: Mapping[str, Any] | None) -> LatestPrice | None:
    if not data:
        return None
    price = _number(data.get("price", data.get("close")))
    if price is None or price <= 0:
        return None
    when = next((time_ms(data[k]) for k in ("ts", "time", "close_time") if k in data), None)
    source = data.get("source")
    return LatestPrice(
        symbol=str(data.get("symbol") or symbol),
        price=price,
        time_ms=when,
        origin="redis",
        source=source if isinstance(source, str) else None,
    )


def _get(client: redis.Redis, key: str) -> dict[str, Any] | None:
    kind = client.type(key)
    if kind == "hash":
        return _decode(client.hgetall(key))
    if kind == "string":
        return _decode(client.get(key))
    return None


def cached_symbols(client: redis.Redis, keys: Keys) -> list[str]:
    """Symbols known to the cache: the symbols set, else a scan of latest-price keys."""
    found: set[str] = set()
    if client.type(keys.symbols) == "set":
        found = {str(s) for s in client.smembers(keys.symbols)}
    if not found:
        prefix = keys.latest("")
        found = {str(k)[len(prefix) :] for k in client.scan_iter(match=f"{prefix}*", count=500)}
    return sorted(s for s in found if s)


def latest_prices(client: redis.Redis, keys: Keys, symbols: Iterable[str] | None = None) -> list[LatestPrice]:
    """The latest price of each symbol found in Redis, by symbol."""
    wanted = [s.upper() for s in symbols] if symbols else cached_symbols(client, keys)
    out = []
    for symbol in wanted:
        price = parse_latest(symbol, _get(client, keys.latest(symbol)))
        if price is not None:
            out.append(price)
    return sorted(out, key=lambda p: p.symbol)


def _candles(
    client: redis.Redis, key: Callable[[str], str], symbols: Iterable[str]
) -> dict[str, dict[str, Any]]:
    out = {}
    for symbol in symbols:
        data = _get(client, key(symbol))
        if data and _number(data.get("close")) is not None:
            out[symbol] = data
    return out


def current_candles(client: redis.Redis, keys: Keys, symbols: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The open 1-minute candle per symbol, where the aggregator has one."""
    return _candles(client, keys.candle_current, symbols)


def final_candles(client: redis.Redis, keys: Keys, symbols: Iterable[str]) -> dict[str, dict[str, Any]]:
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
