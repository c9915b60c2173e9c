"""Produce a known tick set -> `cryptoctl aggregate --until-idle` -> PostgreSQL equals the
reference; late ticks recorded, invalid ones dead-lettered, Redis filled."""

from __future__ import annotations

import json

import orjson

from cryptoctl.cache.client import Keys, redis_client
from tests.aggregator.data import (
    assert_candles_equal,
    db_candles,
    expected,
    make_ticks,
    raw_tick_count,
    scalar,
)
from tests.helpers import consume_all, produce_ticks

BAD = [
    (b"BTC", b"{not json"),
    (b"BTC", orjson.dumps({"v": 1, "symbol": "BTC", "price": -1, "ts": 1704067200000,
                           "source": "x"})),
    (b"ETH", orjson.dumps({"v": 1, "symbol": "ETH", "price": "1.0", "ts": 1704067200000,
                           "source": "x"})),
    (b"ETH", orjson.dumps({"v": 1, "symbol": "ETH", "price": 1.0, "source": "x"})),
    (None, None),
]


def test_candles_equal_the_reference(settings, cli):
    ticks = make_ticks(3000, seed=7, late_every=97, trades=True)
    produce_ticks(settings, ticks[:1500])
    produce_ticks(settings, BAD)
    produce_ticks(settings, ticks[1500:])
    messages = consume_all(settings, n=len(ticks) + len(BAD))
    want = expected(messages, 5_000, 60_000)
    assert want["late"] > 0 and want["invalid"] == len(BAD)

    result = cli("aggregate", "--until-idle", "3s", "--format", "json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ticks"] == want["ticks"] == len(ticks) - want["late"] - want["duplicates"]
    assert summary["late"] == want["late"]
    assert summary["invalid"] == len(BAD)
    assert summary["duplicates"] == want["duplicates"] > 0  # re-sent exchange trades
    assert_candles_equal(db_candles(settings), want["candles"])
    stored = len(ticks) - want["late"] - want["duplicates"]
    assert raw_tick_count(settings) == (stored, stored)
    # Each market's newest trade id is the checkpoint of its exactly-once.
    newest = scalar(settings, "SELECT max(last_trade_id) FROM market_trades")
    assert newest == max(t.trade_id for t in ticks if t.trade_id is not None)
    assert scalar(settings, "SELECT count(*) FROM late_ticks") == want["late"]
    assert scalar(settings, "SELECT min(lateness_ms) FROM late_ticks") > 60_000
    # Every partition's checkpoint points past its last message.
    assert scalar(settings, "SELECT sum(next_offset) FROM processing_metadata") == len(messages)

    dlq = consume_all(settings, settings.dlq, n=len(BAD))
    assert len(dlq) == len(BAD)
    reasons = [dict(m.headers())["reason"].decode() for m in dlq]
    assert any("not valid JSON" in r for r in reasons)
    assert any("'price'" in r for r in reasons)
    assert all(dict(m.headers())["source_topic"].decode() == settings.topic for m in dlq)

    r = redis_client(settings)
    keys = Keys(settings.redis_prefix)
    for market in (("BTC", "synthetic", "USD"), ("BTC", "binance", "USDT")):  # one symbol
        newest = max(t.ts for t in ticks if (t.symbol, t.source, t.quote) == market)
        current = json.loads(r.get(keys.candle_current(market)))
        assert current["bucket_ms"] == newest - newest % 60_000
        assert (current["source"], current["quote"]) == market[1:]
        assert json.loads(r.get(keys.latest(market)))["ts"] == newest
        assert r.get(keys.candle_final(market)) is not None  # the early minutes are final
    assert set(r.smembers(keys.markets)) >= {"BTC:USD:synthetic", "BTC:USDT:binance"}


def test_table_summary_is_a_report_on_stderr(settings, cli):
    produce_ticks(settings, make_ticks(50, seed=3))

    result = cli("aggregate", "--until-idle", "2s")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "aggregate summary" in result.stderr
    rows = [line.split("│") for line in result.stderr.splitlines() if line.startswith("│")]
    assert {cells[1].strip(): cells[2].strip() for cells in rows}["ticks"] == "50"


def test_extra_fields_reach_raw_price_data(settings, cli):
    ticks = make_ticks(400, seed=11)
    with_extra = sum(1 for t in ticks if t.extra)
    assert with_extra > 0
    produce_ticks(settings, ticks)

    assert cli("aggregate", "--until-idle", "2s").exit_code == 0

    assert scalar(settings, "SELECT count(*) FROM raw_price_data WHERE extra IS NOT NULL") == with_extra
    assert scalar(
        settings, "SELECT count(*) FROM raw_price_data WHERE (extra->>'change_24h_pct')::float = -1.5"
    ) == with_extra


def test_a_candle_closed_by_the_idle_watermark_says_closed_in_redis(settings, cli):
    from tests.aggregator.data import BASE

    tick = {"v": 1, "symbol": "BTC", "quote": "USD", "price": 5.0, "qty": 1.0,
            "ts": BASE + 59_500, "source": "synthetic", "recv_ts": BASE + 59_500}
    produce_ticks(settings, [(b"BTC", orjson.dumps(tick))])
    # Its one flush happens while the candle is open; 1.5 s of idle time then close it
    # (delay 1 s) without any new tick, 60 s before it would turn final.
    result = cli("aggregate", "--until-idle", "4s", "--delay", "1s", "--lateness", "60s")
    assert result.exit_code == 0, result.stderr
    key = Keys(settings.redis_prefix).candle_current(("BTC", "synthetic", "USD"))
    doc = json.loads(redis_client(settings).get(key))
    assert doc["bucket_ms"] == BASE
    assert doc["state"] == "closed"


def _tick(**change):
    from tests.aggregator.data import BASE

    return {"v": 1, "symbol": "RDK", "quote": "USD", "price": 5.0, "qty": 1.0,
            "ts": BASE + 1_000, "source": "synthetic", "recv_ts": BASE + 1_000} | change


# What the store cannot hold, and ticks keyed otherwise than by their symbol (so they land
# in another partition than their market's): each must be dead-lettered, never crash the
# aggregator (before the fix: a NUL failed the COPY on every restart) nor overwrite.
POISON = [
    (b"RDK", orjson.dumps(_tick(source="synth\u0000etic"))),
    (b"RDK", orjson.dumps(_tick(quote="US\u0000D"))),
    (b"RDK", orjson.dumps(_tick(note="a\u0000b"))),
    (b"RDK", orjson.dumps(_tick(price=1e308))),
    (b"RDK", orjson.dumps(_tick(price=1e308))),
    (b"RDK", orjson.dumps(_tick(qty=1e300))),
    ("БТЦ".encode(), orjson.dumps(_tick(symbol="БТЦ"))),
    ("ＢＴＣ".encode(), orjson.dumps(_tick(symbol="ＢＴＣ"))),
    (b"RDK", orjson.dumps(_tick(v=True))),
    *[(b"ZZZ", orjson.dumps(_tick(price=100.0 + i, ts=_tick()["ts"] + i))) for i in range(10)],
    *[(None, orjson.dumps(_tick(price=200.0 + i, ts=_tick()["ts"] + i))) for i in range(10)],
]


def test_poison_messages_are_dead_lettered_and_the_rest_aggregated(settings, cli):
    from confluent_kafka import Producer

    from cryptoctl.kafka.clients import producer_config

    good = [(b"RDK", orjson.dumps(_tick(price=10.0 + i, ts=_tick()["ts"] + 10 * i)))
            for i in range(21)]
    produce_ticks(settings, good[:10] + POISON + good[10:])
    # An invalid message just under the topic's 1 MiB limit: over librdkafka's default
    # 1,000,000-byte message size, which the dead-letter producer keeps.
    huge = b'{"v": 1, "symbol": "RDK", "pad": "' + b"x" * 1_010_000 + b'"'
    big = Producer(producer_config(settings, **{"message.max.bytes": 2_000_000}))
    big.produce(settings.topic, huge, b"RDK")
    assert big.flush(10) == 0
    messages = consume_all(settings, n=len(good) + len(POISON) + 1)
    want = expected(messages, 5_000, 60_000)
    assert want["invalid"] == len(POISON) + 1 and want["ticks"] == 21

    result = cli("aggregate", "--until-idle", "3s", "--format", "json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["invalid"] == len(POISON) + 1
    assert summary["ticks"] == 21
    assert_candles_equal(db_candles(settings), want["candles"])
    assert scalar(settings, "SELECT trades FROM price_aggregates_1m WHERE symbol = 'RDK'") == 21
    dlq = consume_all(settings, settings.dlq, n=len(POISON) + 1)
    assert len(dlq) == len(POISON) + 1
    headers = [dict(m.headers()) for m in dlq]
    reasons = [h["reason"].decode() for h in headers]
    assert sum("is not the symbol 'RDK'" in r for r in reasons) == 20
    assert sum("NUL" in r or "printable" in r or "'quote'" in r for r in reasons) == 3
    assert sum("< 1e+15" in r for r in reasons) == 3
    cut = [(m, h) for m, h in zip(dlq, headers, strict=True) if "truncated_from" in h]
    assert len(cut) == 1
    assert int(cut[0][1]["truncated_from"]) == len(huge)
    assert cut[0][0].value() == huge[: len(cut[0][0].value())]


def test_a_second_pipeline_on_one_schema_is_refused_and_counts_nothing(settings, cli):
    from cryptoctl.db.connection import connect

    ticks = make_ticks(100, seed=5)
    produce_ticks(settings, ticks)
    assert cli("aggregate", "--until-idle", "2s").exit_code == 0
    stored = db_candles(settings)
    assert sum(c[7] for c in stored.values()) == 100  # trades

    # Before the fix: the second group loaded the first one's candles as its own state
    # and added its 100 ticks on top (trades 200, raw ticks twice).
    second = cli("aggregate", "--group", "backfill", "--until-idle", "2s")

    assert second.exit_code == 2, second.stderr
    message = second.stderr.strip()
    assert f"schema '{settings.db_schema}'" in message and "'backfill'" in message
    assert "--db-schema" in message
    assert db_candles(settings) == stored
    assert raw_tick_count(settings)[0] == 100

    # In a schema of its own, the second pipeline counts the same ticks once.
    other = f"{settings.db_schema}_b"
    try:
        assert cli("--db-schema", other, "db", "init").exit_code == 0
        again = cli("--db-schema", other, "aggregate", "--group", "backfill",
                    "--until-idle", "2s")
        assert again.exit_code == 0, again.stderr
        with connect(settings) as conn:
            trades = conn.execute(f'SELECT sum(trades) FROM "{other}".price_aggregates_1m')
            assert trades.fetchone()[0] == 100
    finally:
        with connect(settings, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


def test_aggregate_on_a_missing_topic_fails_at_once(settings, cli):
    # Before: it joined the group and waited forever for partitions of nothing.
    result = cli("aggregate", "--topic", "no-such-topic-here", "--until-idle", "1s")

    assert result.exit_code == 7, result.stderr
    assert "Kafka topic 'no-such-topic-here' does not exist" in result.stderr
    assert "cryptoctl up" in result.stderr


def test_a_database_without_the_new_table_says_run_db_init(settings, cli):
    # A database made by an older release: before, "internal error: UndefinedTable".
    from cryptoctl.db.connection import connect

    with connect(settings, autocommit=True) as conn:
        conn.execute("DROP TABLE kafka_generations")
    result = cli("aggregate", "--until-idle", "1s")

    assert result.exit_code == 6, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "kafka_generations" in line and "cryptoctl db init" in line
    assert cli("db", "init").exit_code == 0
    produce_ticks(settings, make_ticks(20, seed=2))
    assert cli("aggregate", "--until-idle", "1s").exit_code == 0
