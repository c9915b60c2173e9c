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
    ticks = make_ticks(3000, seed=7, late_every=97)
    produce_ticks(settings, ticks[:1500])
    produce_ticks(settings, BAD)
    produce_ticks(settings, ticks[1500:])
    messages = consume_all(settings, n=len(ticks) + len(BAD))
    want = expected(messages, 5_000, 60_000)
    assert want["late"] > 0 and want["invalid"] == len(BAD)

    result = cli("aggregate", "--until-idle", "3s", "--format", "json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ticks"] == want["ticks"] == len(ticks)
    assert summary["late"] == want["late"]
    assert summary["invalid"] == len(BAD)
    assert_candles_equal(db_candles(settings), want["candles"])
    assert raw_tick_count(settings) == (len(ticks) - want["late"],) * 2
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
    newest = max(t.ts for t in ticks if t.symbol == "BTC")
    current = json.loads(r.get(keys.candle_current("BTC")))
    assert current["bucket_ms"] == newest - newest % 60_000
    assert json.loads(r.get(keys.latest("BTC")))["ts"] == newest
    assert r.get(keys.candle_final("BTC")) is not None  # the early minutes are final


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
    doc = json.loads(redis_client(settings).get(Keys(settings.redis_prefix).candle_current("BTC")))
    assert doc["bucket_ms"] == BASE
    assert doc["state"] == "closed"
