"""The one Redis candle poller of `watch` and `run`, on the real Redis of the test stack.

Candles are keyed by market: Binance BTC/USDT and Coinbase BTC/USD are two entries."""

from __future__ import annotations

from cryptoctl.cache.client import Keys, MarketKey, market_id, redis_client
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.poller import NONE_YET, NOT_CHECKED, OK, UNAVAILABLE, CachedCandles, CandlePoller

T0 = 1_763_000_000_000
SYMBOLS = ["BTC", "ETH"]
BTC_BINANCE: MarketKey = ("BTC", "binance", "USDT")
BTC_COINBASE: MarketKey = ("BTC", "coinbase", "USD")
ETH_COINBASE: MarketKey = ("ETH", "coinbase", "USD")


def candle(market: MarketKey, bucket: int, close: float, *, final: bool = False) -> CandleDoc:
    symbol, source, quote = market
    return CandleDoc(symbol, bucket, 1.0, 2.0, 0.5, close, 3.0, 4, 1.25, 1.5, bucket + 1,
                     bucket + 59_000, "final" if final else "open", final, source, quote)  # fmt: skip


def put(settings, market: MarketKey, doc: CandleDoc) -> None:
    """What the aggregator's cache writer leaves for a market's candle."""
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    key = keys.candle_final(market) if doc.final else keys.candle_current(market)
    client.set(key, doc.to_json())
    client.sadd(keys.markets, market_id(market))


def test_rate_limited_and_never_raising_through_an_outage(stack, settings):
    poller = CandlePoller(settings, every_s=1.0, retry_s=2.0)
    assert poller.poll([], 0.0) == CachedCandles(status=NOT_CHECKED)  # no symbols, no question
    first = poller.poll(SYMBOLS, 0.0)
    assert first == CachedCandles({}, {}, NONE_YET)

    btc, eth = candle(BTC_BINANCE, T0, 1.5), candle(ETH_COINBASE, T0 - 60_000, 9.0, final=True)
    put(settings, BTC_BINANCE, btc)
    put(settings, ETH_COINBASE, eth)
    assert poller.poll(SYMBOLS, 0.9) is first  # not asked again within every_s
    found = poller.poll(SYMBOLS, 1.0)
    assert found == CachedCandles({BTC_BINANCE: btc}, {ETH_COINBASE: eth}, OK)
    connection = poller._client

    stack.stop_redis()
    try:
        down = poller.poll(SYMBOLS, 2.0)
        assert down == CachedCandles({BTC_BINANCE: btc}, {ETH_COINBASE: eth}, UNAVAILABLE)
        assert poller.poll(SYMBOLS, 3.9) is down  # retry_s after a failure
    finally:
        stack.start_redis()
    assert poller.poll(SYMBOLS, 4.0) == found
    assert poller._client is connection  # one client for the session


def test_only_final_candles_are_not_an_open_one(settings):
    eth = candle(ETH_COINBASE, T0, 9.0, final=True)
    put(settings, ETH_COINBASE, eth)
    assert CandlePoller(settings).poll(SYMBOLS, 0.0) == CachedCandles({}, {ETH_COINBASE: eth}, NONE_YET)


def test_two_markets_of_one_symbol_and_keep(settings):
    binance, coinbase = candle(BTC_BINANCE, T0, 67000.5), candle(BTC_COINBASE, T0, 67100.25)
    put(settings, BTC_BINANCE, binance)
    put(settings, BTC_COINBASE, coinbase)
    put(settings, ETH_COINBASE, candle(ETH_COINBASE, T0, 3400.0))
    both = CandlePoller(settings).poll(["BTC"], 0.0)
    assert both == CachedCandles({BTC_BINANCE: binance, BTC_COINBASE: coinbase}, {}, OK)
    only = CandlePoller(settings).poll(["BTC"], 0.0, keep=lambda m: m[1] == "coinbase")
    assert only == CachedCandles({BTC_COINBASE: coinbase}, {}, OK)
    # The status is of the markets kept: the other source's open candle is not "ok" here.
    none = CandlePoller(settings).poll(["BTC"], 0.0, keep=lambda m: m[1] == "kraken")
    assert none == CachedCandles({}, {}, NONE_YET)
