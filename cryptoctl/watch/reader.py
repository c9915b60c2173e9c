"""Read a topic's partitions directly (``assign``, no consumer group).

No group join means the first message arrives in a fraction of a second and the
aggregator's group is never disturbed. Nothing is committed.

Where reading starts, without ``--from-beginning``: the last ``TAIL_PER_PARTITION``
messages of each partition (librdkafka's logical "tail" offset), so the table fills at
once even for a slow source. The tail is counted back from the end offset the broker
reports; the local Tansu broker reports the start of the last record batch + 1 as the end,
so on it up to one producer batch more is shown. That only makes the first screen
slightly older; it never skips a message, and nothing depends on the exact value.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cryptoctl.errors import InvalidTick, ServiceUnavailable, TopicMissing
from cryptoctl.exchanges.trade import parse_gap
from cryptoctl.kafka.clients import consumer_config, kafka_reason, new_client
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick, decode_tick

if TYPE_CHECKING:
    from confluent_kafka import Consumer

TAIL_PER_PARTITION = 25
_OFFSET_TAIL_BASE = -2000  # librdkafka: RD_KAFKA_OFFSET_TAIL(n) == -2000 - n


def tail_offset(count: int) -> int:
    """librdkafka's logical offset for "``count`` messages before the end"."""
    return _OFFSET_TAIL_BASE - count


@dataclass(frozen=True, slots=True)
class Received:
    """One message read: a tick, a feed's gap record, or the reason it is neither."""

    partition: int
    offset: int
    tick: Tick | None
    invalid: str | None = None
    raw: bytes | None = None
    gap: bool = False  # a gap record (cryptoctl/exchanges/trade.py): no tick, not invalid


def _is_gap(value: bytes | None) -> bool:
    """Whether a message that is no tick is an exchange feed's gap record (only asked of
    messages that failed as ticks, so valid ticks are parsed once)."""
    try:
        return value is not None and parse_gap(orjson.loads(value)) is not None
    except orjson.JSONDecodeError:
        return False


def decode(partition: int, offset: int, value: bytes | None) -> Received:
    try:
        return Received(partition, offset, decode_tick(value))
    except InvalidTick as exc:
        if _is_gap(value):
            return Received(partition, offset, None, gap=True)
        return Received(partition, offset, None, invalid=exc.reason, raw=value)


def _watch_config(settings: Settings) -> dict[str, Any]:
    # A group id is required by the client even with assign(); it is never joined or
    # committed to, so a unique throw-away name keeps it out of the aggregator's way.
    group = f"cryptoctl-watch-{uuid.uuid4().hex[:8]}"
    return consumer_config(
        settings,
        group,
        **{"client.id": "cryptoctl-watch", "fetch.wait.max.ms": 50, "enable.partition.eof": False},
    )


def open_consumer(settings: Settings, *, from_beginning: bool, timeout: float = 5.0) -> Consumer:
    """A consumer assigned to every partition of the price topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = new_client(Consumer, _watch_config(settings))
    try:
        metadata = consumer.list_topics(settings.topic, timeout=timeout)
    except KafkaException as exc:
        consumer.close()
        raise ServiceUnavailable("Kafka", settings.kafka_bootstrap, kafka_reason(exc)) from None
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        consumer.close()
        raise TopicMissing(settings.topic, settings.kafka_bootstrap)
    start = OFFSET_BEGINNING if from_beginning else tail_offset(TAIL_PER_PARTITION)
    consumer.assign([TopicPartition(settings.topic, p, start) for p in sorted(topic.partitions)])
    return consumer


def read(
    consumer: Consumer,
    stop: threading.Event,
    *,
    deadline: float | None = None,
    poll_s: float = 0.1,
    batch: int = 500,
) -> Iterator[Received | None]:
    """Messages as they arrive; ``None`` when a poll came back empty (time to redraw).

    Ends when ``stop`` is set or the monotonic ``deadline`` has passed.
    """
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        wait = poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
        messages = consumer.consume(batch, timeout=wait)
        if not messages:
            yield None
            continue
        for msg in messages:
            if msg.error() is not None:
                continue  # transient broker errors; librdkafka retries by itself
            yield decode(msg.partition() or 0, msg.offset() or 0, msg.value())
