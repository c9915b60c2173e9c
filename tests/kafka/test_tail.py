"""Where a restarted feed resumes: the newest trade of each market on the real topic."""

from __future__ import annotations

import random

from confluent_kafka import Producer

from cryptoctl.kafka.clients import producer_config
from cryptoctl.kafka.tail import last_trades
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick

T0 = 1_767_225_600_000
MARKETS = [("binance", "BTC", "USDT"), ("binance", "ETH", "USDT"), ("coinbase", "SOL", "USD")]


def _produce(settings: Settings, ticks: list[Tick], partition_of: dict[str, int]) -> None:
    producer = Producer(producer_config(settings))
    for t in ticks:
        producer.produce(settings.topic, t.to_json(), t.symbol, partition=partition_of[t.symbol],
                         timestamp=t.ts)
    assert producer.flush(30) == 0


def test_the_newest_trade_of_each_market_is_found_whatever_its_depth(settings: Settings) -> None:
    rng = random.Random(7)
    ticks, newest = [], {}
    ids = dict.fromkeys(MARKETS, 1000)
    for i in range(9_000):
        # ETH/USDT stops early, so its newest trade lies several steps back from the end.
        source, symbol, quote = rng.choice(MARKETS if i < 1_000 else MARKETS[::2])
        ids[(source, symbol, quote)] += 1
        tid = ids[(source, symbol, quote)]
        ticks.append(Tick(symbol, 100.0 + i, T0 + i, source, T0 + i, quote, 1.0,
                          trade_id=tid, side="buy"))
        newest[(source, symbol, quote)] = (tid, T0 + i)
        if i % 7 == 0:  # quotes without trade ids are passed over
            ticks.append(Tick(symbol, 1.0, T0 + i, "coingecko", T0 + i))
    _produce(settings, ticks, {"BTC": 1, "ETH": 1, "SOL": 4})  # ETH deep under the BTC trades
    seen: list[int] = []
    found = last_trades(settings, [*MARKETS, ("kraken", "BTC", "USD")], step=500,
                        progress=seen.append)
    assert found == newest  # and the market that never traded is not there
    assert seen and seen == sorted(seen)


def test_nothing_asked_reads_nothing_and_an_empty_topic_has_no_trades(settings: Settings) -> None:
    assert last_trades(settings, []) == {}
    assert last_trades(settings, MARKETS) == {}


def test_a_market_on_two_partitions_resumes_after_its_newest_trade(settings: Settings) -> None:
    """A partitioner changed between runs put a market on two partitions: the newest trade
    counts, not the first partition searched that holds the market."""
    def trades(symbol: str, ids: range) -> list[Tick]:
        return [Tick(symbol, 100.0, T0 + i, "binance", T0 + i, "USDT", 1.0, trade_id=i,
                     side="sell") for i in ids]

    _produce(settings, trades("BTC", range(1, 51)), {"BTC": 0})  # the old home
    _produce(settings, trades("BTC", range(51, 81)), {"BTC": 3})  # newer, searched later
    _produce(settings, trades("ETH", range(100, 121)), {"ETH": 1})  # newer, searched first
    _produce(settings, trades("ETH", range(1, 11)), {"ETH": 5})
    found = last_trades(settings, MARKETS[:2], step=7)
    assert found == {MARKETS[0]: (80, T0 + 80), MARKETS[1]: (120, T0 + 120)}
