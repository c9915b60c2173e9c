"""The exactly-once sink on its own: claims, fencing, restore, binary COPY."""

from __future__ import annotations

import pytest

from cryptoctl.db.connection import connect
from cryptoctl.db.sink import PartitionFlush, Sink
from cryptoctl.errors import ServiceUnavailable
from cryptoctl.tick import Tick
from cryptoctl.windows import Candle
from tests.aggregator.data import BASE, scalar


def sink(settings, owner: str) -> Sink:
    return Sink(settings, group=settings.group, topic=settings.topic, owner=owner, retry_for_s=5)


def candle(trades: int) -> Candle:
    return Candle("BTC", BASE, 1.0, 2.0, 0.5, 1.5, 3.0, trades, 4.0, 4.5, BASE + 1, BASE + 9)


def test_a_stale_member_commit_is_refused(settings):
    a, b = sink(settings, "a"), sink(settings, "b")
    claim_a = a.claim([0], "c1")[0]
    claim_b = b.claim([0], "c1")[0]  # a rebalance gave partition 0 to b
    assert claim_b.epoch == claim_a.epoch + 1

    stale = PartitionFlush(0, claim_a.epoch, 100, BASE, [candle(10)])
    assert a.commit([stale], "c1") == {0}
    assert scalar(settings, "SELECT count(*) FROM price_aggregates_1m") == 0
    assert scalar(settings, "SELECT next_offset FROM processing_metadata") == 0

    fresh = PartitionFlush(0, claim_b.epoch, 7, BASE, [candle(3)])
    assert b.commit([fresh], "c1") == set()
    assert scalar(settings, "SELECT trades FROM price_aggregates_1m") == 3
    assert scalar(settings, "SELECT next_offset FROM processing_metadata") == 7
    a.close()
    b.close()


def test_only_the_fenced_partition_is_refused(settings):
    a, b = sink(settings, "a"), sink(settings, "b")
    claims = a.claim([0, 1], "c1")
    b.claim([1], "c1")
    ok = PartitionFlush(0, claims[0].epoch, 5, BASE, [candle(2)])
    stale = PartitionFlush(1, claims[1].epoch, 9, BASE, [])
    assert a.commit([ok, stale], "c1") == {1}
    offsets = dict(connect(settings).execute(
        "SELECT kafka_partition, next_offset FROM processing_metadata").fetchall())
    assert offsets == {0: 5, 1: 0}


def test_claim_restores_open_candles_and_detects_a_new_broker(settings):
    a = sink(settings, "a")
    epoch = a.claim([2], "c1")[2].epoch
    open_c, final_c = candle(4), candle(5)
    final_c.bucket, final_c.final = BASE - 60_000, True
    assert a.commit([PartitionFlush(2, epoch, 42, BASE + 5, [open_c, final_c])], "c1") == set()

    again = sink(settings, "b").claim([2], "c1")[2]
    assert (again.next_offset, again.watermark_ms, again.cluster_changed) == (42, BASE + 5, False)
    assert [c.state() for c in again.candles] == [open_c.state()]  # final ones stay stored

    reset = sink(settings, "c").claim([2], "c2")[2]
    assert (reset.next_offset, reset.cluster_changed) == (None, True)
    assert reset.watermark_ms == BASE + 5 and len(reset.candles) == 1


def test_binary_copy_round_trip(settings):
    rows = [
        Tick(symbol="BTC", price=65000.5, ts=BASE + 123, source="synthetic", recv_ts=BASE + 130,
             quote="USD", qty=0.25),
        Tick(symbol="ETH", price=3000.0, ts=BASE + 7, source="coinbase", recv_ts=BASE + 9,
             quote="EUR", qty=None, extra={"trade_id": 7}),
    ]
    s = sink(settings, "a")
    epoch = s.claim([3], "c1")[3].epoch
    assert s.commit([PartitionFlush(3, epoch, 12, None, [], rows, [10, 11])], "c1") == set()
    got = connect(settings).execute(
        """SELECT symbol, price, qty, (extract(epoch FROM time) * 1000)::bigint, quote, source,
                  (extract(epoch FROM recv_time) * 1000)::bigint, extra, kafka_partition,
                  kafka_offset
             FROM raw_price_data ORDER BY kafka_offset"""
    ).fetchall()
    assert [tuple(r) for r in got] == [
        (t.symbol, t.price, t.qty, t.ts, t.quote, t.source, t.recv_ts, t.extra, 3, off)
        for t, off in zip(rows, [10, 11], strict=True)
    ]


def test_a_retried_flush_is_logged_while_it_retries(settings, caplog):
    import logging

    from tests.conftest import free_port

    dead = settings.with_overrides(
        database_url=f"postgresql://cryptoctl@localhost:{free_port()}/nowhere"
    )
    s = Sink(dead, group="g", topic="t", owner="o", retry_for_s=0.5)
    with caplog.at_level(logging.WARNING, logger="cryptoctl.db.sink"), pytest.raises(
        ServiceUnavailable, match="PostgreSQL is not reachable"
    ):
        s.commit([PartitionFlush(0, 1, 1, BASE)], "c")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "flushing to PostgreSQL failed" in warnings[0]
    assert "retrying for up to 0s" in warnings[0] or "retrying for up to 1s" in warnings[0]


def test_a_claim_is_not_a_commit_for_status(settings):
    """`status` calls a partition stalled by the time since its last commit: an aggregator
    that restarts in a loop claims again and again and commits nothing — still stalled."""
    from cryptoctl.db.status import checkpoints

    a = sink(settings, "a")
    claim = a.claim([0], "c1")[0]
    assert a.commit([PartitionFlush(0, claim.epoch, 7, BASE, [candle(3)])], "c1") == set()
    with connect(settings) as conn:
        conn.execute("UPDATE processing_metadata SET committed_at = now() - interval '10 min'")
        conn.commit()
    for _ in range(3):  # three restarts, each claiming the partition again
        a.claim([0], "c1")
    with connect(settings) as conn:
        (row,) = checkpoints(conn)
    assert row[7] >= 600_000  # ms since the last commit, not since the last claim
    a.close()
