"""A local broker restarted empty (new cluster id): stored offsets are beyond its log end.

The aggregator reads the new log from the beginning and continues the stored candles."""

from __future__ import annotations

import json

from cryptoctl.kafka.clients import check_kafka, ensure_topics
from tests.aggregator.data import assert_candles_equal, db_candles, expected, make_ticks
from tests.helpers import consume_all, produce_ticks


def test_broker_restarted_empty_keeps_candles(stack, settings, cli):
    ticks = make_ticks(4_000, seed=31, minutes=6)
    first, second = ticks[:2_000], ticks[2_000:]
    produce_ticks(settings, first)
    before = consume_all(settings, n=len(first))
    assert cli("aggregate", "--until-idle", "2s").exit_code == 0
    old_id = check_kafka(settings).cluster_id

    stack.restart_kafka()
    assert check_kafka(settings).cluster_id != old_id
    ensure_topics(settings)
    produce_ticks(settings, second)
    after = consume_all(settings, n=len(second))
    result = cli("aggregate", "--until-idle", "2s", "--format", "json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["offset_resets"] == 6 and summary["ticks"] == len(second)
    want = expected(after, 5_000, 60_000, before=before)
    assert_candles_equal(db_candles(settings), want["candles"])
