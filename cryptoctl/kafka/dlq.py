"""The dead-letter writer: invalid messages go to ``settings.dlq`` with the reason attached.

Headers: ``reason`` (one line, from InvalidTick), ``source_topic``, ``source_partition``,
``source_offset``. Sends never block the consumer loop: the producer queues them and
delivery reports are served by :meth:`DeadLetters.poll`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptoctl.kafka.clients import producer_config
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Producer


class DeadLetters:
    """Counts what it sent (``sent``), what was confirmed and what failed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.dlq
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self._producer: Producer | None = None

    def _client(self) -> Producer:
        if self._producer is None:
            from confluent_kafka import Producer

            # Not idempotent: an idempotent producer's fatal errors (a broker restarted empty)
            # would need a restart to recover; a rare duplicate dead letter is acceptable.
            self._producer = Producer(
                producer_config(self.settings, **{"linger.ms": 50, "enable.idempotence": False})
            )
        return self._producer

    def _report(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
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
        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", reason.encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        ]
        producer = self._client()
        try:
            producer.produce(self.topic, value, key, headers=headers, on_delivery=self._report)
        except BufferError:
            producer.poll(0)  # the local queue is full: serve callbacks, try once more
            try:
                producer.produce(self.topic, value, key, headers=headers, on_delivery=self._report)
            except BufferError:
                self.failed += 1
                return
        self.sent += 1

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
