"""The cache writer against the real Redis of the test stack."""

from __future__ import annotations

import json

from cryptoctl.cache.client import Keys, redis_client
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.cache.reader import current_candles, latest_docs
from cryptoctl.cache.writer import CacheWriter
from tests.aggregator.procs import wait_for

T0 = 1_763_000_000_000


def test_the_writer_writes_what_the_reader_reads(settings):
    keys = Keys(settings.redis_prefix)
    w = CacheWriter(settings)
    w.start()
    doc = CandleDoc("ETH", T0, 10.0, 12.0, 9.0, 11.0, 2.0, 3, 10.5, 10.75, T0 + 1, T0 + 59_000,
                    "open", False, "binance", "USDT")
    eth = ("ETH", "binance", "USDT")
    w.submit_candles([doc])
    wait_for("write", lambda: w.pending() == 0 and w.writes > 0, 10)
    w.close()
    client = redis_client(settings)
    assert current_candles(client, keys, ["ETH"]) == {eth: doc}
    assert latest_docs(client, keys) == [LatestDoc("ETH", 11.0, T0 + 59_000, "binance", "USDT")]
    assert client.smembers(keys.markets) == {"ETH:USDT:binance"}
    # The stored text keeps the documented field names, in the documented order.
    assert list(json.loads(client.get(keys.candle_current(eth)))) == [
        "symbol", "bucket_ms", "open", "high", "low", "close", "volume", "trades", "avg", "vwap",
        "open_ts", "close_ts", "state", "final", "source", "quote",
    ]


def test_an_older_candle_never_overwrites_a_newer_one(settings):
    keys = Keys(settings.redis_prefix)
    w = CacheWriter(settings)
    w.start()
    base = CandleDoc("BTC", T0, 1.0, 1.0, 1.0, 1.0, 0.0, 1, 1.0, None, T0, T0, "open", False,
                     "synthetic", "USD")
    w.submit_candles([base._replace(bucket_ms=T0 + 120_000, trades=5, close_ts=T0 + 120_500)])
    wait_for("write", lambda: w.pending() == 0 and w.writes > 0, 10)
    # Each reaches Redis on its own (no merging in the writer): the Lua check refuses both.
    w.submit_candles([base._replace(bucket_ms=T0 + 60_000, trades=9, close_ts=T0 + 60_500)])
    wait_for("write", lambda: w.pending() == 0 and w.writes >= 2, 10)
    w.submit_candles([base._replace(bucket_ms=T0 + 120_000, trades=4, close_ts=T0 + 120_400)])
    wait_for("write", lambda: w.pending() == 0 and w.writes >= 3, 10)
    w.close()
    current = json.loads(redis_client(settings).get(keys.candle_current(("BTC", "synthetic", "USD"))))
    assert (current["bucket_ms"], current["trades"]) == (T0 + 120_000, 5)
