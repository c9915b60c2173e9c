"""A thin tick producer over confluent-kafka: encode, produce, count deliveries.

Key = symbol, value = the tick JSON, message timestamp = ``ts``. It takes only
:data:`~cryptoctl.tick.ValidTick` (ticks that passed the shared validation in
their source), so nothing invalid reaches the topic and nothing is validated twice.
Other messages (a feed's gap markers) go through :meth:`TickSender.send_raw`, counted
apart from the ticks. Delivery reports are counted; a full local queue is waited out (poll, retry); a fatal
producer error (idempotence broken, fenced, ...) recreates the producer and re-sends what
the old one had not delivered, instead of dropping it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cryptoctl.kafka.clients import new_client, producer_config
from cryptoctl.settings import Settings
from cryptoctl.tick import ValidTick

log = logging.getLogger(__name__)
_ERROR_LOG_EVERY_S = 10.0


@dataclass
class DeliveryCounters:
    """Written by the producing thread (delivery reports run inside its poll calls)."""

    produced: int = 0  # accepted into the producer's queue
    delivered: int = 0  # acknowledged by the broker (acks=all)
    failed: int = 0  # reported failed by librdkafka after its own retries
    retries: int = 0  # re-sends after a producer restart + waits on a full queue
    restarts: int = 0  # producers recreated after a fatal error
    markers: int = 0  # messages that are not ticks (gap markers), accepted into the queue
    markers_delivered: int = 0
    markers_failed: int = 0
    last_error: str = ""

    @property
    def pending(self) -> int:
        """Ticks and markers produced, neither acknowledged nor failed yet."""
        return max(
            0,
            self.produced - self.delivered - self.failed
            + self.markers - self.markers_delivered - self.markers_failed,
        )


ProducerFactory = Callable[[dict[str, Any]], Any]


def confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return new_client(Producer, conf)


class TickSender:
    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        counters: DeliveryCounters | None = None,
        overrides: Mapping[str, Any] | None = None,
        factory: ProducerFactory = confluent_producer,
    ) -> None:
        self.topic = topic or settings.topic
        self.counters = counters or DeliveryCounters()
        self._conf = producer_config(settings, **dict(overrides or {})) | {
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
        }
        self._factory = factory
        self._producer = factory(self._conf)
        self._fatal: Any = None
        self._resend: list[tuple[Any, Any, int, Any]] = []  # key, value, ts, on_delivery
        self._last_logged = 0.0

    # --- callbacks (run inside poll/flush on this thread) ---

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.counters.delivered += 1
        elif self._fatal is not None or err.fatal() or _is_purge(err):
            self._resend.append((msg.key(), msg.value(), msg.timestamp()[1], None))
        else:
            self.counters.failed += 1
            self._note(f"delivery failed: {err.str()}")

    def _on_marker_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.counters.markers_delivered += 1
        elif self._fatal is not None or err.fatal() or _is_purge(err):
            self._resend.append((msg.key(), msg.value(), msg.timestamp()[1], self._on_marker_delivery))
        else:
            self.counters.markers_failed += 1
            self._note(f"delivery of a marker failed: {err.str()}")

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = err
            self._note(f"fatal producer error, recreating the producer: {err.str()}", force=True)
        else:
            self._note(f"Kafka: {err.str()}")

    def _note(self, message: str, force: bool = False) -> None:
        self.counters.last_error = message
        now = time.monotonic()
        if force or now - self._last_logged >= _ERROR_LOG_EVERY_S:
            self._last_logged = now
            log.warning(message)

    # --- sending ---

    def send_batch(self, ticks: Iterable[ValidTick]) -> int:
        """Encode and produce; returns how many were produced."""
        produce = self._produce
        dumps = orjson.dumps
        sent = 0
        for tick in ticks:
            produce(tick.symbol, dumps(tick.to_dict()), tick.ts)
            sent += 1
        self.counters.produced += sent
        self.poll(0)
        return sent

    def send_raw(self, key: str, value: bytes, ts: int) -> None:
        """Produce one message that is not a tick (a gap marker), on the same topic and
        with the same guarantees; counted as a marker, not a tick."""
        self._produce(key, value, ts, self._on_marker_delivery)
        self.counters.markers += 1
        self.poll(0)

    def _produce(self, key: Any, value: Any, ts: int, on_delivery: Any = None) -> None:
        while True:
            try:
                if on_delivery is None:
                    self._producer.produce(self.topic, value, key, timestamp=ts)
                else:
                    self._producer.produce(self.topic, value, key, timestamp=ts, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self.counters.retries += 1
                self._producer.poll(0.05)
            except Exception as exc:
                if not self._is_fatal_exception(exc):
                    raise
            self._restart_if_fatal()

    def _is_fatal_exception(self, exc: Exception) -> bool:
        err = exc.args[0] if exc.args else None
        if err is not None and hasattr(err, "fatal") and err.fatal():
            self._fatal = self._fatal or err
            return True
        return False

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)
        self._restart_if_fatal()

    def _restart_if_fatal(self) -> None:
        if self._fatal is None:
            return
        old = self._producer
        try:
            old.purge(True, True, False)  # undelivered messages come back as purge reports
            old.poll(0)
        except Exception as exc:  # the old producer is broken anyway
            log.debug("purging the failed producer: %s", exc)
        self._producer = self._factory(self._conf)
        self._fatal = None
        self.counters.restarts += 1
        pending, self._resend = self._resend, []
        for key, value, ts, on_delivery in pending:
            self.counters.retries += 1
            self._produce(key, value, ts, on_delivery)

    @property
    def pending(self) -> int:
        """Messages produced but not yet acknowledged or failed."""
        return len(self._producer) + len(self._resend)

    def flush(self, timeout_s: float) -> int:
        """Deliver what is in flight; returns how many are still undelivered."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._restart_if_fatal()
            left = deadline - time.monotonic()
            remaining = int(self._producer.flush(max(0.0, min(left, 1.0))))
            settled = self._fatal is None and not self._resend and remaining == 0
            if settled or left <= 0:
                return remaining + len(self._resend)


def _is_purge(err: Any) -> bool:
    from confluent_kafka import KafkaError

    return bool(err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT))
