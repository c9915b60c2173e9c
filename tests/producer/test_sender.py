"""TickSender's failure handling. The fatal-error path cannot be provoked on a real broker
on demand, so the confluent Producer is replaced by a fake (the remote edge) here."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from confluent_kafka import KafkaError

from cryptoctl.kafka.producer import TickSender
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick, ValidTick, validate_tick

TS = 1_700_000_000_000


class FakeMessage:
    def __init__(self, key: Any, value: bytes, ts: int) -> None:
        self._key, self._value, self._ts = key, value, ts

    def key(self) -> Any:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


class FakeProducer:
    """Queues messages; poll() delivers them, or, once told to die, reports a fatal error."""

    made: ClassVar[list[FakeProducer]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.queue: list[FakeMessage] = []
        self.delivered: list[FakeMessage] = []
        self.die = False
        self.full_for = 0
        FakeProducer.made.append(self)

    def produce(self, topic: str, value: bytes, key: Any, timestamp: int) -> None:
        if self.full_for:
            self.full_for -= 1
            raise BufferError("queue full")
        self.queue.append(FakeMessage(key, value, timestamp))

    def poll(self, timeout: float = 0) -> int:
        if self.die:
            self.die = False
            self.conf["error_cb"](KafkaError(KafkaError._FATAL, "fenced", fatal=True))
            return 0
        served, self.queue = self.queue, []
        for m in served:
            self.delivered.append(m)
            self.conf["on_delivery"](None, m)
        return len(served)

    def purge(self, in_queue: bool, in_flight: bool, blocking: bool) -> None:
        purged, self.queue = self.queue, []
        for m in purged:
            self.conf["on_delivery"](KafkaError(KafkaError._PURGE_QUEUE), m)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self.queue)

    def __len__(self) -> int:
        return len(self.queue)


def tick(i: int, price: float = 1.0) -> ValidTick:
    return ValidTick(validate_tick(Tick("BTC", price, TS + i, "synthetic", TS + i).to_dict()))


def test_fatal_error_recreates_the_producer_and_resends() -> None:
    FakeProducer.made = []
    sender = TickSender(Settings(kafka_bootstrap="127.0.0.1:1"), "t", factory=FakeProducer)
    first = FakeProducer.made[0]
    first.die = True
    sender.send_batch([tick(i) for i in range(5)])  # poll -> fatal -> new producer, resend 5
    assert len(FakeProducer.made) == 2
    assert sender.counters.restarts == 1 and sender.counters.retries == 5
    assert sender.flush(1.0) == 0
    second = FakeProducer.made[1]
    assert [m.timestamp()[1] for m in second.delivered] == [TS + i for i in range(5)]
    assert sender.counters.delivered == 5 and sender.counters.failed == 0


def test_full_queue_is_waited_out() -> None:
    FakeProducer.made = []
    sender = TickSender(Settings(kafka_bootstrap="127.0.0.1:1"), "t", factory=FakeProducer)
    FakeProducer.made[0].full_for = 2
    sent = sender.send_batch([tick(i) for i in range(4)])
    assert sent == 4 and sender.counters.retries == 2
    assert sender.flush(1.0) == 0 and sender.counters.delivered == 4
    values = [orjson.loads(m.value()) for m in FakeProducer.made[0].delivered]
    assert values == [tick(i).to_dict() for i in range(4)]
