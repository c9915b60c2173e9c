"""cryptoctl/cache/reader.py against the real Redis of the test stack (a fresh key prefix
per test): the writer's documents are read back by market, anything else is skipped."""

from __future__ import annotations

from cryptoctl.cache.client import Keys, market_id, parse_market_id, redis_client
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.cache.reader import (
    cached_markets,
    current_candles,
    final_candles,
    latest_docs,
    latest_prices,
    select,
)
from cryptoctl.db.queries import LatestPrice

T0 = 1_763_000_000_000
BTC_BINANCE = ("BTC", "binance", "USDT")
BTC_COINBASE = ("BTC", "coinbase", "USD")
ETH = ("ETH", "synthetic", "USD")
SOL = ("SOL", "synthetic", "USD")


def candle(market, bucket: int, close: float, *, final: bool = False) -> CandleDoc:
    symbol, source, quote = market
    return CandleDoc(symbol, bucket, 1.0, 2.0, 0.5, close, 3.0, 4, 1.25, 1.5, bucket + 1,
                     bucket + 59_000, "final" if final else "open", final, source, quote)


def test_documents_are_read_back_by_market_and_foreign_values_skipped(settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    binance, coinbase = candle(BTC_BINANCE, T0, 1.5), candle(BTC_COINBASE, T0, 1.7)
    eth_final = candle(ETH, T0 - 60_000, 9.0, final=True)
    client.set(keys.candle_current(BTC_BINANCE), binance.to_json())
    client.set(keys.candle_current(BTC_COINBASE), coinbase.to_json())
    client.set(keys.candle_final(ETH), eth_final.to_json())
    client.set(keys.latest(BTC_BINANCE), LatestDoc("BTC", 1.5, T0, "binance", "USDT").to_json())
    client.set(keys.latest(BTC_COINBASE), LatestDoc("BTC", 1.7, T0, "coinbase", "USD").to_json())
    # What other programs (or old guesses) might leave under the same names:
    client.hset(keys.candle_current(ETH), mapping={"close": "9.5", "bucket_ms": str(T0)})
    client.set(keys.candle_current(SOL), b"151.25")
    client.rpush(keys.candle_final(BTC_BINANCE), b"x")
    client.hset(keys.latest(ETH), mapping={"price": "3400.5"})
    client.set(keys.latest(SOL), b'{"symbol": "SOL", "price": 0.5, "ts": 1763000000}')  # seconds
    client.sadd(keys.markets, *(market_id(m) for m in (BTC_BINANCE, BTC_COINBASE, ETH, SOL)),
                "not-a-market")

    assert cached_markets(client, keys) == [BTC_BINANCE, BTC_COINBASE, ETH, SOL]
    wanted = ["BTC", "ETH", "SOL", "DOGE"]
    assert current_candles(client, keys, wanted) == {BTC_BINANCE: binance, BTC_COINBASE: coinbase}
    assert final_candles(client, keys, wanted) == {ETH: eth_final}
    assert current_candles(client, keys, ["btc"]) == {BTC_BINANCE: binance, BTC_COINBASE: coinbase}
    assert latest_prices(client, keys, ["btc", "eth"]) == [
        LatestPrice("BTC", 1.5, T0, "redis", "binance", "USDT"),
        LatestPrice("BTC", 1.7, T0, "redis", "coinbase", "USD"),
    ]
    assert latest_prices(client, keys, source="coinbase") == [
        LatestPrice("BTC", 1.7, T0, "redis", "coinbase", "USD")
    ]
    assert latest_docs(client, keys, quote="usdt") == [
        LatestDoc("BTC", 1.5, T0, "binance", "USDT")
    ]


def test_an_empty_cache_has_no_markets(settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    assert cached_markets(client, keys) == [] and latest_prices(client, keys) == []
    assert current_candles(client, keys, []) == {}


def test_market_ids_round_trip_even_with_a_colon_in_the_source() -> None:
    for market in (BTC_BINANCE, ("BTC", "my:feed", "EUR")):
        assert parse_market_id(market_id(market)) == market
    assert parse_market_id("BTC:USD") is None and parse_market_id("::x") is None
    assert select([BTC_BINANCE, BTC_COINBASE, ETH], ["btc"], quote="usd") == [BTC_COINBASE]
