"""PostgreSQL restarting and Redis going away mid-run: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import threading
import time

from cryptoctl.aggregator import Aggregator, AggregatorOptions
from cryptoctl.cache.client import Keys, redis_client
from tests.aggregator.data import (
    assert_candles_equal,
    db_candles,
    expected,
    make_ticks,
    raw_tick_count,
)
from tests.aggregator.procs import BackgroundProducer, committed, wait_for
from tests.helpers import consume_all, produce_ticks


class Running:
    """An Aggregator on a thread, as `cryptoctl run` uses it."""

    def __init__(self, settings, **options):
        self.agg = Aggregator(settings, AggregatorOptions(**options))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.agg.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        return self.agg.stats()


def test_postgres_restart_mid_run(stack, settings):
    n = 12_000
    ticks = make_ticks(n, seed=21, minutes=6, late_every=211)
    run = Running(settings, flush_interval_ms=100)
    producer = BackgroundProducer(settings, ticks, chunk=600, pause_s=0.25)
    wait_for("a third committed", lambda: committed(settings) >= n / 3, 60)
    stack.restart_postgres()
    producer.join()
    wait_for("everything committed", lambda: committed(settings) == n, 90)
    stats = run.finish()
    assert stats.pg_retries > 0

    want = expected(consume_all(settings, n=n), 5_000, 60_000)
    assert stats.ticks == n - want["late"] and stats.late == want["late"]
    assert_candles_equal(db_candles(settings), want["candles"])
    rows, distinct = raw_tick_count(settings)
    assert rows == distinct == n - want["late"]


def test_redis_down_then_back(stack, settings):
    keys = Keys(settings.redis_prefix)
    r = redis_client(settings)
    run = Running(settings)
    try:
        wait_for("assignment", lambda: len(run.agg.stats().partitions) == 6, 30)
        stack.stop_redis()
        ticks = make_ticks(2_000, seed=22, minutes=3)
        t0 = time.monotonic()
        produce_ticks(settings, ticks)
        wait_for("PostgreSQL up to date", lambda: committed(settings) == len(ticks), 30)
        assert time.monotonic() - t0 < 15  # Redis being down did not hold the pipeline up
        stats = run.agg.stats()
        assert not stats.cache_connected and stats.cache_pending > 0
    finally:
        stack.start_redis()
    newest = max(t.ts for t in ticks if t.symbol == "ETH")
    eth = ("ETH", "synthetic", "USD")
    wait_for("the cache to catch up", lambda: r.get(keys.latest(eth)) is not None, 30)
    assert json.loads(r.get(keys.latest(eth)))["ts"] == newest
    assert json.loads(r.get(keys.candle_current(eth)))["bucket_ms"] == newest - newest % 60_000
    wait_for("nothing pending", lambda: run.agg.stats().cache_pending == 0, 10)
    run.finish()
