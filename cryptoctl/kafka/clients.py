"""confluent-kafka client configurations built from Settings, and topic management.

Constructors here make no network calls; ``check_kafka``/``ensure_topics`` do, and turn an
unreachable broker into :class:`ServiceUnavailable` naming the address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cryptoctl.errors import ConfigError, ServiceUnavailable, TopicMissing
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

# Consumer-group joins on the local broker take about session.timeout.ms / 2.
SESSION_TIMEOUT_MS = 6000
WEEK_MS = 7 * 24 * 3600 * 1000

# Every topic config is set explicitly: the local broker has no defaults to fall back on,
# and a real cluster's defaults should not silently decide retention.
TOPIC_CONFIG: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(WEEK_MS),
    "retention.bytes": "-1",
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
    "min.insync.replicas": "1",
}


def _librdkafka_logger() -> logging.Logger:
    """librdkafka's own log lines (connection refused, ...) go here, not to the terminal:
    failures reach the user as one clear error instead. `-v` style debugging can attach a
    handler to the "cryptoctl.librdkafka" logger."""
    logger = logging.getLogger("cryptoctl.librdkafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def _base(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": client_id,
        "socket.connection.setup.timeout.ms": 5000,
        "logger": _librdkafka_logger(),
    }


# Tuning cryptoctl chooses; the config file's [kafka] table overrides it (what a client
# needs to be correct is set after the table, and by the caller).
PRODUCER_TUNING: dict[str, Any] = {
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1_000_000,
    "message.timeout.ms": 60_000,
}
CONSUMER_TUNING: dict[str, Any] = {
    "session.timeout.ms": SESSION_TIMEOUT_MS,
    "heartbeat.interval.ms": 1000,
    # A real broker answers a waiting fetch as soon as data arrives; the local one only
    # when the wait is over, so this is also its produce -> consume latency.
    "fetch.wait.max.ms": 100,
}
# The local stack's broker (Tansu, memory engine) keeps each produced batch as an object
# and lists a partition's objects on every fetch: its work grows with the batches stored
# times the fetches made. Fewer, larger batches slow that down: at 2,000 ticks/s it kept
# up for the 30 minutes of the soak instead of 2 (docs/local-stack.md, "known limits").
LOCAL_BROKER_PRODUCER_TUNING: dict[str, Any] = {"linger.ms": 100}


def local_broker(settings: Settings) -> bool:
    """Whether ``kafka_bootstrap`` is the local stack's running broker."""
    from cryptoctl.stack.processes import StateFile

    try:
        record = StateFile(settings.home).read().get("kafka")
    except (TypeError, ValueError):  # a state file of another version: not ours to judge
        return False
    if record is None or not record.alive:
        return False
    return settings.kafka_bootstrap.strip() in {
        f"{host}:{record.port}" for host in (record.host, "127.0.0.1", "localhost")
    }


def _config(settings: Settings, client_id: str, tuning: Mapping[str, Any],
            fixed: Mapping[str, Any]) -> dict[str, Any]:
    return _base(settings, client_id) | dict(tuning) | dict(settings.kafka_config) | dict(fixed)


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """``extra``: the caller's properties, over everything else."""
    tuning = PRODUCER_TUNING | (LOCAL_BROKER_PRODUCER_TUNING if local_broker(settings) else {})
    return _config(settings, "cryptoctl-producer", tuning,
                   {"acks": "all", "enable.idempotence": True} | extra)


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """``extra``: the caller's properties, over everything else."""
    return _config(settings, "cryptoctl-consumer", CONSUMER_TUNING, {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_uncommitted",
    } | extra)


C = TypeVar("C")


def new_client(factory: Callable[[dict[str, Any]], C], conf: dict[str, Any]) -> C:
    """A librdkafka client; a property it refuses (a typo in the config file's ``[kafka]``
    table, a bad value) is a ConfigError, not "Kafka is not reachable"."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        return factory(conf)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError._INVALID_ARG:
            raise ConfigError(
                f"invalid Kafka client setting: {err.str()}",
                hint="check the [kafka] table of the config file (librdkafka's property names)",
            ) from None
        raise


def admin_client(settings: Settings) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    return new_client(AdminClient, _base(settings, "cryptoctl-admin") | dict(settings.kafka_config))


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str | None
    brokers: int
    topics: Mapping[str, int]  # topic -> partition count


def check_kafka(settings: Settings, timeout: float = 5.0) -> ClusterInfo:
    """Cluster metadata, or ServiceUnavailable naming the bootstrap address."""
    from confluent_kafka import KafkaException

    try:
        md = admin_client(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable("Kafka", settings.kafka_bootstrap, kafka_reason(exc)) from None
    topics = {
        name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")
    }
    return ClusterInfo(cluster_id=md.cluster_id, brokers=len(md.brokers), topics=topics)


def check_topic(settings: Settings, topic: str | None = None) -> ClusterInfo:
    """The broker answers (else ServiceUnavailable) and the topic exists (else TopicMissing)."""
    name = topic or settings.topic
    info = check_kafka(settings)
    if name not in info.topics:
        raise TopicMissing(name, settings.kafka_bootstrap)
    return info


def kafka_reason(exc: Exception) -> str:
    """librdkafka's error in a few words ("no broker answered" for transport failures)."""
    err = exc.args[0] if exc.args else exc
    text = err.str() if hasattr(err, "str") else str(err)
    lowered = text.lower()
    return "no broker answered" if "transport" in lowered or "timed out" in lowered else text


def create_topic(
    settings: Settings, name: str, partitions: int, config: Mapping[str, str] | None = None
) -> bool:
    """Create a topic with every config set; False if it already existed."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    topic = NewTopic(name, partitions, 1, config=dict(config or TOPIC_CONFIG))
    future = admin.create_topics([topic], operation_timeout=10, request_timeout=15)[name]
    try:
        future.result()
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise ServiceUnavailable(
            "Kafka", settings.kafka_bootstrap, f"cannot create topic {name}: {kafka_reason(exc)}"
        ) from None
    return True


def ensure_topics(settings: Settings) -> list[str]:
    """Create the price topic and its dead-letter topic if missing; returns those created."""
    info = check_kafka(settings)
    created = []
    for name, parts in ((settings.topic, settings.partitions), (settings.dlq, 1)):
        if name not in info.topics and create_topic(settings, name, parts):
            created.append(name)
    return created
