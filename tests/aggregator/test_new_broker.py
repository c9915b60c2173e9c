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


def test_running_aggregator_survives_a_broker_restart(stack, settings):
    import threading
    import time

    from cryptoctl.aggregator import Aggregator, AggregatorOptions

    ticks = make_ticks(3_000, seed=47, minutes=6)
    first, second = ticks[:1_500], ticks[1_500:]
    aggregator = Aggregator(settings, AggregatorOptions())
    stop = threading.Event()
    worker = threading.Thread(target=aggregator.run, args=(stop,), daemon=True)
    worker.start()

    def wait_for(n: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while aggregator.stats().ticks < n and time.monotonic() < deadline:
            time.sleep(0.2)
        assert aggregator.stats().ticks >= n, aggregator.stats()

    try:
        produce_ticks(settings, first)
        before = consume_all(settings, n=len(first))
        wait_for(len(first))
        stack.restart_kafka()  # memory-only: comes back empty, with a new cluster id
        ensure_topics(settings)
        produce_ticks(settings, second)
        after = consume_all(settings, n=len(second))
        wait_for(len(first) + len(second))
    finally:
        stop.set()
        worker.join(30)
    final = aggregator.stats()
    assert final.ticks == len(ticks) and final.offset_resets >= 1
    want = expected(after, 5_000, 60_000, before=before)
    assert_candles_equal(db_candles(settings), want["candles"])
