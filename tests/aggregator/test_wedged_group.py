"""A consumer group that never assigns partitions again (the local broker keeping a dead
member as leader; here, a member stuck in its revoke callback, which blocks the rebalance
the same way on any broker): the aggregator notices, moves the pipeline to a fresh Kafka
group and resumes from the PostgreSQL checkpoint, nothing lost or counted twice."""

from __future__ import annotations

import json
import threading

from confluent_kafka import Consumer

from cryptoctl.kafka.clients import consumer_config
from tests.aggregator.data import assert_candles_equal, db_candles, expected, make_ticks, scalar
from tests.aggregator.procs import committed, finish, start_aggregator, wait_for
from tests.helpers import consume_all, produce_ticks


def _stuck_member(settings, held: list[int], release: threading.Event) -> threading.Thread:
    def revoke(_consumer, _partitions) -> None:
        release.wait(120)  # never rejoins: the group cannot finish rebalancing

    def run() -> None:
        consumer = Consumer(
            consumer_config(settings, settings.group, **{"max.poll.interval.ms": 300_000})
        )
        consumer.subscribe([settings.topic], on_revoke=revoke)
        while not release.is_set():
            consumer.poll(0.1)
            held[:] = [tp.partition for tp in consumer.assignment()]
        consumer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_wedged_group_is_left_for_a_fresh_one_and_nothing_is_lost(settings):
    ticks = make_ticks(4_000, seed=31)
    produce_ticks(settings, ticks[:2_000])
    # A first run commits half: the fresh group must resume from it, not start over.
    first = start_aggregator(settings, "--until-idle", "2s")
    code, _, err = finish(first)
    assert code == 0, err
    assert committed(settings) == 2_000
    produce_ticks(settings, ticks[2_000:])

    held: list[int] = []
    release = threading.Event()
    member = _stuck_member(settings, held, release)
    try:
        wait_for("the stuck member's partitions", lambda: len(held) == 6, 60)
        proc = start_aggregator(settings, "--until-idle", "3s", "--wedged-after", "8s",
                                "--duration", "120s")
        code, out, err = finish(proc, 150)
    finally:
        release.set()
        member.join(30)

    assert code == 0, err
    summary = json.loads(out)
    assert summary["group_moves"] == 1
    assert summary["ticks"] == 2_000  # only the second half: it resumed from the checkpoint
    assert "looks wedged" in err and f"{settings.group}.gen1" in err
    assert committed(settings) == 4_000
    want = expected(consume_all(settings, n=4_000), 5_000, 60_000)
    assert_candles_equal(db_candles(settings), want["candles"])
    assert scalar(settings, "SELECT count(*) FROM raw_price_data") == 4_000 - want["late"]
    assert scalar(settings, "SELECT generation FROM kafka_generations") == 1


def test_a_standby_member_does_not_take_a_working_group_for_wedged(settings):
    """Seven members for six partitions: the seventh has nothing while the others commit."""
    produce_ticks(settings, make_ticks(600, seed=32))
    busy = start_aggregator(settings, "--duration", "25s")
    wait_for("the first member's commit", lambda: committed(settings) == 600, 60)
    # The topic is read to its end: nothing waits, so no partitions is no sign of a wedge.
    standby = start_aggregator(settings, "--wedged-after", "4s", "--duration", "15s")
    code, out, err = finish(standby, 60)
    assert code == 0, err
    assert json.loads(out)["group_moves"] == 0
    busy.terminate()
    assert finish(busy)[0] == 0
