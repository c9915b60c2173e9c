"""Helpers shared by the integration tests: produce ticks, read a topic back, subprocess env."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from cryptoctl.kafka.clients import consumer_config, producer_config
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick


def stack_env(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess `cryptoctl ...` that resolves to these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOCTL_")}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "CRYPTOCTL_HOME": str(settings.home),
            "CRYPTOCTL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CRYPTOCTL_DATABASE_URL": settings.database_url,
            "CRYPTOCTL_DB_SCHEMA": settings.db_schema,
            "CRYPTOCTL_REDIS_URL": settings.redis_url,
            "CRYPTOCTL_REDIS_PREFIX": settings.redis_prefix,
            "CRYPTOCTL_TOPIC": settings.topic,
            "CRYPTOCTL_GROUP": settings.group,
            "CRYPTOCTL_PARTITIONS": str(settings.partitions),
        }
    )
    return env


def produce_ticks(
    settings: Settings,
    ticks: Iterable[Tick | tuple[bytes | None, bytes | None]],
    topic: str | None = None,
) -> int:
    """Produce Tick objects (key = symbol, timestamp = ts) or raw (key, value) pairs.

    Returns the number produced; raises if any delivery failed.
    """
    producer = Producer(producer_config(settings, **{"linger.ms": 5}))
    failures: list[Any] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    count = 0
    for item in ticks:
        if isinstance(item, Tick):
            key, value, ts = item.symbol.encode(), item.to_json(), item.ts
            producer.produce(topic or settings.topic, value, key, timestamp=ts, on_delivery=report)
        else:
            key, value = item
            producer.produce(topic or settings.topic, value, key, on_delivery=report)
        count += 1
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not failures, f"delivery failures: {failures[:3]}"
    return count


def consume_all(
    settings: Settings, topic: str | None = None, n: int | None = None, timeout: float = 15.0
) -> list[Message]:
    """Read a topic from the beginning by partition assignment (no group join).

    Stops after `n` messages, or once nothing new arrived for 1.5 s when `n` is None, or at
    `timeout`. Message order is kept within each partition.
    """
    from cryptoctl.kafka.clients import check_kafka

    name = topic or settings.topic
    partitions = check_kafka(settings).topics.get(name)
    assert partitions, f"topic {name} does not exist"
    consumer = Consumer(consumer_config(settings, "unused-no-join"))
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.2)
            real = [m for m in batch if m.error() is None]
            if real:
                out.extend(real)
                last_new = time.monotonic()
            if n is not None and len(out) >= n:
                break
            if n is None and time.monotonic() - last_new > 1.5:
                break
    finally:
        consumer.close()
    return out


def values(messages: Sequence[Message]) -> list[bytes]:
    return [m.value() or b"" for m in messages]
