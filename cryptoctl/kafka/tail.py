"""The newest trade of each market already on the topic: where a restarted feed resumes.

Each partition is read backwards from its end in steps (``assign`` at an offset, read to
the end of the step), newest step first, until every market asked for has been found or
the partition's start is reached. The end of a partition is where reading stops
(``enable.partition.eof``), not the end offset the broker reports: the local broker can
report one producer batch short, and the newest trades are exactly the ones that matter.

A market may be on any partition (the producer's partitioner is configurable, and a
misconfigured one may have put a market on two), so every partition is searched for every
market and the newest trade found wins (the highest trade id: ids grow with time per
market); a market found on none is new. So a partition that never held a market is read
to its start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from cryptoctl.errors import ServiceUnavailable, TopicMissing
from cryptoctl.kafka.clients import consumer_config, kafka_reason, new_client
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Consumer

MarketKey = tuple[str, str, str]  # (source, symbol, quote)
STEP = 20_000  # messages read per step back


def last_trades(
    settings: Settings,
    markets: Iterable[MarketKey],
    *,
    step: int = STEP,
    timeout: float = 10.0,
    progress: Callable[[int], None] | None = None,
) -> dict[MarketKey, tuple[int, int]]:
    """(trade id, trade time ms) of the newest trade of each market found on the topic,
    whichever partition holds it.

    ``progress`` is called with the number of messages read so far, now and then.
    """
    wanted = set(markets)
    found: dict[MarketKey, tuple[int, int]] = {}
    if not wanted:
        return found
    consumer = _consumer(settings)
    read = [0]
    try:
        for partition in _partitions(consumer, settings, timeout):
            here = _newest_in_partition(consumer, settings, partition, wanted, step, timeout,
                                        read, progress)
            for key, trade in here.items():
                if key not in found or trade > found[key]:
                    found[key] = trade
    finally:
        consumer.close()
    return found


def _newest_in_partition(
    consumer: Consumer, settings: Settings, partition: int, wanted: set[MarketKey], step: int,
    timeout: float, read: list[int], progress: Callable[[int], None] | None,
) -> dict[MarketKey, tuple[int, int]]:
    """The newest trade of each wanted market in one partition, reading back from its end
    until each is found or the partition's start is reached."""
    found: dict[MarketKey, tuple[int, int]] = {}
    low, high = _watermarks(consumer, settings.topic, partition, timeout)
    end = None  # the true end: where the newest step stopped
    start = max(low, high - step)
    while wanted - found.keys():
        newest = _read_range(consumer, settings, partition, start, end, timeout)
        read[0] += newest.count
        if progress is not None:
            progress(read[0])
        for key, trade in newest.trades.items():
            if key in wanted and key not in found:
                found[key] = trade
        end = start
        if start <= low:
            break
        start = max(low, start - step)
    return found


class _Range:
    __slots__ = ("count", "trades")

    def __init__(self) -> None:
        self.count = 0
        self.trades: dict[MarketKey, tuple[int, int]] = {}


def _read_range(
    consumer: Consumer, settings: Settings, partition: int, start: int, stop: int | None,
    timeout: float,
) -> _Range:
    """The newest trade per market in offsets ``[start, stop)`` (``stop`` None: to the
    partition's end)."""
    from confluent_kafka import KafkaError, TopicPartition

    out = _Range()
    consumer.assign([TopicPartition(settings.topic, partition, start)])
    quiet_since = time.monotonic()
    while True:
        # consume() waits its whole timeout unless the batch fills: a short one, so the end
        # of a small partition is seen at once.
        messages = consumer.consume(1000, timeout=0.05)
        if not messages:
            if time.monotonic() - quiet_since >= timeout:
                raise ServiceUnavailable(
                    "Kafka", settings.kafka_bootstrap,
                    f"partition {partition} of {settings.topic} sent neither data nor its end",
                )
            continue
        quiet_since = time.monotonic()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                continue
            offset = msg.offset() or 0
            if stop is not None and offset >= stop:
                return out
            out.count += 1
            _note(out.trades, msg.value())


def _note(trades: dict[MarketKey, tuple[int, int]], value: bytes | None) -> None:
    """Remember the trade in ``value``, if it is one; later (newer) trades win."""
    if not value or b'"trade_id"' not in value:
        return
    try:
        obj: Any = orjson.loads(value)
        trade_id, ts = obj["trade_id"], obj["ts"]
        key = (obj["source"], obj["symbol"], obj.get("quote") or "USD")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    if type(trade_id) is int and type(ts) is int and all(type(k) is str for k in key):
        old = trades.get(key)
        if old is None or trade_id > old[0]:
            trades[key] = (trade_id, ts)


def _consumer(settings: Settings) -> Consumer:
    from confluent_kafka import Consumer

    conf = consumer_config(
        settings,
        f"cryptoctl-resume-{uuid.uuid4().hex[:8]}",  # never joined or committed to
        **{"client.id": "cryptoctl-resume", "enable.partition.eof": True, "fetch.wait.max.ms": 50},
    )
    return new_client(Consumer, conf)


def _partitions(consumer: Consumer, settings: Settings, timeout: float) -> list[int]:
    from confluent_kafka import KafkaException

    try:
        metadata = consumer.list_topics(settings.topic, timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable("Kafka", settings.kafka_bootstrap, kafka_reason(exc)) from None
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        raise TopicMissing(settings.topic, settings.kafka_bootstrap)
    return sorted(topic.partitions)


def _watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    from confluent_kafka import TopicPartition

    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
    return int(low), int(high)
