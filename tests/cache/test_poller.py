"""The one Redis candle poller of `watch` and `run`, on the real Redis of the test stack."""

from __future__ import annotations

from cryptoctl.cache.client import Keys, redis_client
from cryptoctl.cache.poller import NONE_YET, NOT_CHECKED, OK, UNAVAILABLE, CachedCandles, CandlePoller
from tests.cache.test_reader import T0, candle

SYMBOLS = ["BTC", "ETH"]


def test_rate_limited_and_never_raising_through_an_outage(stack, settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    poller = CandlePoller(settings, every_s=1.0, retry_s=2.0)
    assert poller.poll([], 0.0) == CachedCandles(status=NOT_CHECKED)  # no symbols, no question
    first = poller.poll(SYMBOLS, 0.0)
    assert first == CachedCandles({}, {}, NONE_YET)

    btc, eth = candle("BTC", T0, 1.5), candle("ETH", T0 - 60_000, 9.0, final=True)
    client.set(keys.candle_current("BTC"), btc.to_json())
    client.set(keys.candle_final("ETH"), eth.to_json())
    assert poller.poll(SYMBOLS, 0.9) is first  # not asked again within every_s
    found = poller.poll(SYMBOLS, 1.0)
    assert found == CachedCandles({"BTC": btc}, {"ETH": eth}, OK)
    connection = poller._client

    stack.stop_redis()
    try:
        down = poller.poll(SYMBOLS, 2.0)
        assert down == CachedCandles({"BTC": btc}, {"ETH": eth}, UNAVAILABLE)  # last ones kept
        assert poller.poll(SYMBOLS, 3.9) is down  # retry_s after a failure
    finally:
        stack.start_redis()
    assert poller.poll(SYMBOLS, 4.0) == found
    assert poller._client is connection  # one client for the session


def test_only_final_candles_are_not_an_open_one(settings):
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    eth = candle("ETH", T0, 9.0, final=True)
    client.set(keys.candle_final("ETH"), eth.to_json())
    assert CandlePoller(settings).poll(SYMBOLS, 0.0) == CachedCandles({}, {"ETH": eth}, NONE_YET)
