"""Exchange trades in the aggregator: a feed's gap record is stored and marks its candles
incomplete; a market found on a second partition is dead-lettered, never merged."""

from __future__ import annotations

import json

import orjson
from confluent_kafka import Producer

from cryptoctl.exchanges.trade import Gap, Market, gap_message
from cryptoctl.kafka.clients import producer_config
from cryptoctl.tick import Tick
from tests.aggregator.data import BASE, scalar
from tests.helpers import consume_all, produce_ticks

MARKET = Market("binance", "BTC", "USDT")


def trade(tid: int, ts: int, price: float) -> Tick:
    return Tick("BTC", price, ts, "binance", ts, "USDT", 0.5, trade_id=tid, side="buy")


def test_a_gap_record_is_stored_once_and_its_minutes_are_incomplete(settings, cli):
    gap = Gap(MARKET, 13, 20, BASE + 61_000, BASE + 125_000, "not in the exchange's REST history")
    record = (b"BTC", orjson.dumps(gap_message(gap)))
    trades = [trade(10 + i, BASE + 30_000 * i, 100.0 + i) for i in range(3)]  # 10, 11, 12
    trades += [trade(21 + i, BASE + 125_000 + 30_000 * i, 200.0 + i) for i in range(3)]
    produce_ticks(settings, [*trades[:3], record, record, *trades[3:]])  # a re-sent record
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["invalid"] == 0 and summary["gaps"] == 2 and summary["ticks"] == 6
    assert scalar(settings, "SELECT count(*) FROM feed_gaps") == 1  # stored once
    assert scalar(settings, "SELECT first_trade_id || '-' || last_trade_id FROM feed_gaps") == "13-20"
    out = cli("candles", "-s", "BTC", "--source", "binance", "--since", "2024-01-01T00:00:00Z",
              "--until", "2024-01-01T00:05:00Z", "-f", "json")
    assert out.exit_code == 0, out.stderr
    complete = {row["bucket"][11:16]: row["complete"] for row in json.loads(out.stdout)}
    # The gap is from 00:01:01 to 00:02:05: minutes 1 and 2 may miss trades, 0 and 3 not.
    assert complete == {"00:00": True, "00:01": False, "00:02": False, "00:03": True}


def test_a_market_on_a_second_partition_is_dead_lettered(settings, cli):
    producer = Producer(producer_config(settings))
    first = [trade(1 + i, BASE + i, 100.0) for i in range(5)]
    stray = [trade(6 + i, BASE + 10 + i, 999.0) for i in range(3)]
    for t in first:
        producer.produce(settings.topic, t.to_json(), b"BTC", partition=2, timestamp=t.ts)
    assert producer.flush(10) == 0
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["invalid"] == 0, result.stderr
    for t in stray:  # keyed right, but on another partition (a misconfigured partitioner)
        producer.produce(settings.topic, t.to_json(), b"BTC", partition=5, timestamp=t.ts)
    assert producer.flush(10) == 0
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")  # a later run knows
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["invalid"] == 3
    assert scalar(settings, "SELECT max(high) FROM price_aggregates_1m") == 100.0  # not merged
    dlq = consume_all(settings, settings.dlq, n=3)
    reasons = {dict(m.headers())["reason"].decode() for m in dlq}
    assert reasons == {
        "market binance BTC/USDT is on partition 2, not 5: a market's trades share one"
        " partition, or its candles would be overwritten"
    }
