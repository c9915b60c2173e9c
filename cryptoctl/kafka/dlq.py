"""The dead-letter writer: invalid messages go to ``settings.dlq`` with the reason attached.

Headers: ``reason`` (one line, from InvalidTick), ``source_topic``, ``source_partition``,
``source_offset``. Sends never block the consumer loop: the producer queues them and
delivery reports are served by :meth:`DeadLetters.poll`.

A message too large for the dead-letter topic (over :data:`MAX_VALUE_BYTES`; librdkafka
and brokers default to about 1 MB) is recorded with its value cut to that size and the
header ``truncated_from`` (the original length in bytes), so the record still exists.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cryptoctl.kafka.clients import new_client, producer_config
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Producer

log = logging.getLogger(__name__)
# Room left under the 1,000,000-byte default message size for headers, key and framing.
MAX_VALUE_BYTES = 900_000
MAX_KEY_BYTES = 1_000


class DeadLetters:
    """Counts the dead letters that could not be delivered (``failed``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.dlq
        self.failed = 0
        self._producer: Producer | None = None

    def _client(self) -> Producer:
        if self._producer is None:
            from confluent_kafka import Producer

            # Not idempotent: an idempotent producer's fatal errors (a broker restarted empty)
            # would need a restart to recover; a rare duplicate dead letter is acceptable.
            self._producer = new_client(
                Producer,
                producer_config(self.settings, **{"linger.ms": 50, "enable.idempotence": False}),
            )
        return self._producer

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def send(
        self,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        *,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        from confluent_kafka import KafkaException

        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", reason[:1000].encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        ]
        if value is not None and len(value) > MAX_VALUE_BYTES:
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:MAX_VALUE_BYTES]
        if key is not None and len(key) > MAX_KEY_BYTES:
            headers.append(("key_truncated_from", str(len(key)).encode()))
            key = key[:MAX_KEY_BYTES]
        producer = self._client()
        try:
            try:
                producer.produce(
                    self.topic, value, key, headers=headers, on_delivery=self._report
                )
            except BufferError:
                producer.poll(0)  # the local queue is full: serve callbacks, try once more
                producer.produce(
                    self.topic, value, key, headers=headers, on_delivery=self._report
                )
        except (BufferError, KafkaException) as exc:
            # Counted and logged; the consumer goes on (it never stops on bad input).
            self.failed += 1
            log.warning(
                "dead-letter send of %s[%d]@%d failed: %s", topic, partition, offset, exc
            )
            return

    def poll(self) -> None:
        if self._producer is not None:
            self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued; returns how many could not be delivered in time."""
        if self._producer is None:
            return 0
        left = int(self._producer.flush(timeout))
        self.failed += left
        return left
