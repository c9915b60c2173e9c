"""Exchange trades in the aggregator: a feed's gap record is stored and marks its candles
incomplete; a market found on a second partition is dead-lettered, never merged, whichever
aggregator process reads it."""

from __future__ import annotations

import json
import signal

import orjson
from confluent_kafka import Producer

from cryptoctl.db.connection import connect
from cryptoctl.db.sink import PartitionFlush
from cryptoctl.exchanges.trade import Gap, Market, gap_message
from cryptoctl.kafka.clients import producer_config
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from tests.aggregator.data import BASE, scalar
from tests.aggregator.procs import committed, finish, start_aggregator, wait_for
from tests.aggregator.test_sink import sink
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


MOVED = (
    "market binance BTC/USDT is on partition {home}, not {other}: a market's trades share one"
    " partition, or its candles would be overwritten"
)


def produce_to(settings: Settings, ticks: list[Tick], partition: int) -> None:
    producer = Producer(producer_config(settings))
    for t in ticks:
        producer.produce(settings.topic, t.to_json(), b"BTC", partition=partition, timestamp=t.ts)
    assert producer.flush(10) == 0


def test_a_market_on_a_second_partition_is_dead_lettered(settings, cli):
    produce_to(settings, [trade(1 + i, BASE + i, 100.0) for i in range(5)], 2)
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["invalid"] == 0, result.stderr
    # Keyed right, but on another partition (a misconfigured partitioner).
    produce_to(settings, [trade(6 + i, BASE + 10 + i, 999.0) for i in range(3)], 5)
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")  # a later run knows
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["invalid"] == 3 and summary["ticks"] == 0  # dead-lettered, not applied
    assert scalar(settings, "SELECT max(high) FROM price_aggregates_1m") == 100.0  # not merged
    dlq = consume_all(settings, settings.dlq, n=3)
    reasons = {dict(m.headers())["reason"].decode() for m in dlq}
    assert reasons == {MOVED.format(home=2, other=5)}


def owners(settings: Settings) -> dict[int, int]:
    """partition -> pid of the aggregator process that claimed it."""
    with connect(settings) as conn:
        rows = conn.execute("SELECT kafka_partition, owner FROM processing_metadata").fetchall()
    return {p: int(owner.split(":")[-2]) for p, owner in rows}


def test_two_aggregators_owning_different_partitions_agree_on_a_markets_home(settings):
    """The home is claimed in PostgreSQL: a process that has never seen the market learns
    that another process's partition has it, and dead-letters the stray trades."""
    first = start_aggregator(settings, "--flush-interval", "100ms")
    wait_for("the first aggregator's partitions", lambda: len(owners(settings)) == 6, 60)
    second = start_aggregator(settings, "--flush-interval", "100ms")
    wait_for("the partitions split", lambda: len(set(owners(settings).values())) == 2, 60)
    mine = owners(settings)
    home = min(p for p, pid in mine.items() if pid == first.pid)
    other = min(p for p, pid in mine.items() if pid == second.pid)
    produce_to(settings, [trade(1 + i, BASE + i, 100.0) for i in range(5)], home)
    wait_for("the first trades committed", lambda: committed(settings) == 5, 60)
    produce_to(settings, [trade(6 + i, BASE + 10 + i, 999.0) for i in range(3)], other)
    wait_for("the stray trades read", lambda: committed(settings) == 8, 60)
    summaries = {}
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc)
        assert code == 0, err
        summaries[proc.pid] = json.loads(out)
    applied = summaries[first.pid]
    stray = summaries[second.pid]
    assert (applied["ticks"], applied["invalid"]) == (5, 0)
    assert (stray["ticks"], stray["invalid"]) == (0, 3)
    assert scalar(settings, "SELECT max(high) FROM price_aggregates_1m") == 100.0  # not merged
    assert scalar(settings, "SELECT sum(trades) FROM price_aggregates_1m") == 5
    assert scalar(settings, "SELECT kafka_partition FROM market_trades") == home
    dlq = consume_all(settings, settings.dlq, n=3)
    assert {dict(m.headers())["reason"].decode() for m in dlq} == {
        MOVED.format(home=home, other=other)
    }


def test_a_markets_home_is_claimed_once_and_a_flush_cannot_move_it(settings):
    a, b = sink(settings, "a"), sink(settings, "b")
    key = ("BTC", "binance", "USDT")
    assert a.claim_market(key, 2, 10, BASE) == (2, 9)  # just below its first trade
    assert b.claim_market(key, 5, 20, BASE) == (2, 9)  # another process: already home on 2
    stale = PartitionFlush(5, b.claim([5], "c1")[5].epoch, 3, BASE, trades=[(key, 30, BASE)])
    assert b.commit([stale], "c1") == set()
    row = "SELECT kafka_partition || ':' || last_trade_id FROM market_trades"
    assert scalar(settings, row) == "2:9"
    fresh = PartitionFlush(2, a.claim([2], "c1")[2].epoch, 3, BASE, trades=[(key, 12, BASE)])
    assert a.commit([fresh], "c1") == set()
    assert scalar(settings, row) == "2:12"
    a.close()
    b.close()


def test_ticks_counts_applied_trades_and_duplicates_count_apart(settings, cli):
    sent = [trade(1 + i, BASE + 1_000 * i, 100.0 + i) for i in range(10)]
    sent += [trade(5 + i, BASE + 4_000 + 1_000 * i, 100.0 + 4 + i) for i in range(8)]  # 5..12
    produce_ticks(settings, sent)
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ticks"], summary["duplicates"], summary["invalid"]) == (12, 6, 0)
    assert scalar(settings, "SELECT sum(trades) FROM price_aggregates_1m") == 12


def test_a_failed_market_claim_commits_nothing_of_its_batch(settings, cli):
    """The claim of a market's home fails (here: PostgreSQL refuses the insert): the batch
    read so far is not flushed on the way out, so a later run applies every tick once."""
    quotes = [Tick("BTC", 50.0 + i, BASE + i, "coingecko", BASE + i) for i in range(5)]
    produce_ticks(settings, [*quotes, trade(1, BASE + 10, 100.0)])
    refuse = """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON market_trades EXECUTE FUNCTION refuse()
    """
    with connect(settings, autocommit=True) as conn:
        conn.execute(refuse)
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 6, result.stderr  # a database error, named
    assert "claiming a market's partition failed" in result.stderr
    assert "refused by the test" in result.stderr
    assert committed(settings) == 0
    with connect(settings, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON market_trades")
    result = cli("aggregate", "--until-idle", "3s", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ticks"] == 6
    assert scalar(settings, "SELECT sum(trades) FROM price_aggregates_1m") == 6
    assert scalar(settings, "SELECT count(*) FROM price_aggregates_1m WHERE source = 'binance'") == 1
