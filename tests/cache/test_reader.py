"""cryptoctl/cache/reader.py against the real Redis of the test stack (a fresh key prefix
per test): the writer's documents are read back, anything else under the keys is skipped."""

from __future__ import annotations

from cryptoctl.cache.client import Keys, redis_client
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.cache.reader import (
    cached_symbols,
    current_candles,
    final_candles,
    latest_docs,
    latest_prices,
)
from cryptoctl.db.queries import LatestPrice

T0 = 1_763_000_000_000


def candle(symbol: str, bucket: int, close: float, *, final: bool = False) -> CandleDoc:
    return CandleDoc(symbol, bucket, 1.0, 2.0, 0.5, close, 3.0, 4, 1.25, 1.5, bucket + 1,
                     bucket + 59_000, "final" if final else "open", final)


def test_documents_are_read_back_and_foreign_values_skipped(settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    btc, eth_final = candle("BTC", T0, 1.5), candle("ETH", T0 - 60_000, 9.0, final=True)
    client.set(keys.candle_current("BTC"), btc.to_json())
    client.set(keys.candle_final("ETH"), eth_final.to_json())
    client.set(keys.latest("BTC"), LatestDoc("BTC", 1.5, T0 + 59_000, "synthetic", "USD").to_json())
    # What other programs (or old guesses) might leave under the same names:
    client.hset(keys.candle_current("ETH"), mapping={"close": "9.5", "bucket_ms": str(T0)})
    client.set(keys.candle_current("SOL"), b"151.25")
    client.rpush(keys.candle_final("BTC"), b"x")
    client.hset(keys.latest("ETH"), mapping={"price": "3400.5"})
    client.set(keys.latest("SOL"), b"150.25")
    client.set(keys.latest("ADA"), b'{"symbol": "ADA", "price": 0.5, "ts": 1763000000}')  # seconds
    client.sadd(keys.symbols, "BTC", "ETH", "SOL", "ADA")

    wanted = ["BTC", "ETH", "SOL", "DOGE"]
    assert current_candles(client, keys, wanted) == {"BTC": btc}
    assert final_candles(client, keys, wanted) == {"ETH": eth_final}
    assert cached_symbols(client, keys) == ["ADA", "BTC", "ETH", "SOL"]
    assert latest_docs(client, keys) == [LatestDoc("BTC", 1.5, T0 + 59_000, "synthetic", "USD")]
    assert latest_prices(client, keys, ["btc", "eth"]) == [
        LatestPrice("BTC", 1.5, T0 + 59_000, "redis", "synthetic")  # the source is carried
    ]


def test_without_a_symbols_set_the_latest_keys_are_scanned(settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    assert cached_symbols(client, keys) == [] and latest_prices(client, keys) == []
    assert current_candles(client, keys, []) == {}
    client.set(keys.latest("XRP"), LatestDoc("XRP", 0.5, T0).to_json())
    assert cached_symbols(client, keys) == ["XRP"]
    assert latest_prices(client, keys) == [LatestPrice("XRP", 0.5, T0, "redis")]
