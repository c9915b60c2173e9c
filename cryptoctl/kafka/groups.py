"""Reading a consumer group's state and a topic's end offsets, for `cryptoctl status`.

Nothing here joins a group or commits: the consumer used for the end offsets has a group
id of its own that is never joined.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptoctl.errors import ServiceUnavailable
from cryptoctl.kafka.clients import admin_client, consumer_config, kafka_reason, new_client
from cryptoctl.settings import Settings

# Group states in which no member holds a partition.
_MEMBERLESS = {"EMPTY", "DEAD"}


@dataclass(frozen=True)
class GroupView:
    """A Kafka consumer group as the broker describes it."""

    state: str  # STABLE, EMPTY, PREPARING_REBALANCE, ..., UNKNOWN (lower-cased on output)
    # partition -> member id of each partition of the topic a live member holds; None when
    # the broker does not list the members (the local broker lists none, even when stable).
    assigned: dict[int, str] | None

    def holds(self, partition: int) -> bool | None:
        """Whether a live member holds ``partition``; None when the broker does not say."""
        if self.state in _MEMBERLESS:
            return False
        if self.assigned is None:
            return None
        return partition in self.assigned


def describe_group(settings: Settings, group: str, topic: str, timeout: float = 5.0) -> GroupView:
    """The group's state and which of ``topic``'s partitions its members hold."""
    from confluent_kafka import KafkaException

    admin = admin_client(settings)
    try:
        future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
        described = future.result(timeout=timeout + 1)
    except KafkaException as exc:
        raise ServiceUnavailable("Kafka", settings.kafka_bootstrap, kafka_reason(exc)) from None
    except TimeoutError:
        raise ServiceUnavailable(
            "Kafka", settings.kafka_bootstrap, f"no answer describing group {group}"
        ) from None
    state = described.state.name if described.state is not None else "UNKNOWN"
    if not described.members:
        return GroupView(state, None if state not in _MEMBERLESS else {})
    assigned = {
        tp.partition: member.member_id
        for member in described.members
        for tp in (member.assignment.topic_partitions if member.assignment else [])
        if tp.topic == topic
    }
    return GroupView(state, assigned)


def end_offsets(
    settings: Settings, topic: str, partitions: list[int], timeout: float = 5.0
) -> dict[int, int]:
    """partition -> the end offset (high watermark) the broker reports for it."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    conf = consumer_config(
        settings, f"cryptoctl-status-{uuid.uuid4().hex[:8]}", **{"client.id": "cryptoctl-status"}
    )  # the group is never joined
    consumer = new_client(Consumer, conf)
    try:
        out = {}
        for p in partitions:
            tp = TopicPartition(topic, p)
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            out[p] = int(high)
        return out
    except KafkaException as exc:
        raise ServiceUnavailable("Kafka", settings.kafka_bootstrap, kafka_reason(exc)) from None
    finally:
        consumer.close()
