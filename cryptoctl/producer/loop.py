"""The produce loop, its options, and the stats it exposes while it runs."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from operator import itemgetter
from typing import Any

import orjson

from cryptoctl.errors import CryptoctlError, DataError
from cryptoctl.kafka.clients import check_topic
from cryptoctl.kafka.producer import (
    DeliveryCounters,
    ProducerFactory,
    TickSender,
    confluent_producer,
)
from cryptoctl.settings import Settings
from cryptoctl.sources.base import FeedSource, FeedStats, MarkerSource, Source
from cryptoctl.tick import ValidTick

log = logging.getLogger(__name__)
_IDLE_SLICE_S = 0.1  # while a source waits, delivery reports are served this often
_RATE_SAMPLE_S = 0.5
_MARKET = itemgetter(3, 0, 5)  # a Tick's (source, symbol, quote), taken in C


@dataclass(frozen=True)
class ProducerOptions:
    count: int | None = None  # stop after this many ticks produced
    duration_s: float | None = None  # stop after this long
    flush_timeout_s: float = 30.0  # on stop: how long in-flight ticks may take
    check_topic: bool = True  # fail up front when the broker or the topic is missing
    kafka_config: Mapping[str, Any] = field(default_factory=dict)  # extra librdkafka props


@dataclass(frozen=True)
class ProducerStats:
    """A snapshot; safe to take from any thread while the loop runs."""

    source: str
    topic: str
    produced: int
    delivered: int
    failed: int
    pending: int
    retries: int
    unchanged: int
    invalid: int
    source_errors: int
    restarts: int
    ticks_per_s: float  # recent rate (last few seconds)
    elapsed_s: float
    last_price: dict[str, float]
    last_problem: str
    markers: int = 0  # messages that are not ticks (gap markers) produced
    feed: FeedStats | None = None  # trade feeds (exchanges): connection and markets
    # ticks produced per market: ((source, symbol, quote), ticks), in order of appearance
    market_ticks: tuple[tuple[tuple[str, str, str], int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProducerSummary(ProducerStats):
    undelivered: int = 0  # still in flight when the flush timed out
    avg_ticks_per_s: float = 0.0
    stopped_by: str = ""  # "count" | "duration" | "stop" | "end of source" | "data error" | "source error"


class SourceFailed(DataError):
    """The source stopped the run with an error: a DataError (a file that cannot be read
    on, a bad row with --strict), or another CryptoctlError of the source (an exchange
    ban). Raised after the flush, with the summary of what was produced; the exit code is
    the cause's."""

    def __init__(self, cause: CryptoctlError, summary: ProducerSummary) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.exit_code = cause.exit_code
        self.cause = cause
        self.summary = summary


class RunControl:
    """The stop flag a source waits on: the caller's event, the deadline, and while the
    source sleeps, the producer's delivery reports are served."""

    def __init__(self, stop: threading.Event, deadline: float | None, idle: Callable[[], None]) -> None:
        self._stop = stop
        self._deadline = deadline
        self._idle = idle
        self.reached: str = ""  # set when the count is reached

    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def is_set(self) -> bool:
        return bool(self.reached) or self._stop.is_set() or self.expired()

    def wait(self, timeout: float | None = None) -> bool:
        end = time.monotonic() + (timeout if timeout is not None else 3600.0)
        if self._deadline is not None:
            end = min(end, self._deadline)
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            self._stop.wait(min(left, _IDLE_SLICE_S))
            self._idle()
        return self.is_set()


class ProducerRun:
    def __init__(
        self,
        settings: Settings,
        source: Source,
        options: ProducerOptions | None = None,
        *,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.options = options or ProducerOptions()
        self.delivery = DeliveryCounters()
        self._factory = producer_factory
        self._sender: TickSender | None = None
        self._last_price: dict[str, float] = {}
        self._market_ticks: Counter[tuple[str, str, str]] = Counter()
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque(maxlen=8)
        self._next_sample = 0.0
        self._checked = False
        self._take_markers = source.take_markers if isinstance(source, MarkerSource) else None
        self._feed_stats = source.feed_stats if isinstance(source, FeedSource) else None

    # --- stats, from any thread ---

    def stats(self) -> ProducerStats:
        d, c = self.delivery, self.source.counters
        sender = self._sender
        return ProducerStats(
            source=self.source.name,
            topic=self.settings.topic,
            produced=d.produced,
            delivered=d.delivered,
            failed=d.failed,
            pending=d.pending if sender else 0,
            retries=d.retries + c.retries,
            unchanged=c.unchanged,
            invalid=c.invalid,
            source_errors=c.source_errors,
            restarts=d.restarts,
            ticks_per_s=self._recent_rate(),
            elapsed_s=time.monotonic() - self._started,
            last_price=dict(self._last_price),
            last_problem=d.last_error or c.last_problem,
            markers=d.markers,
            feed=self._feed_stats() if self._feed_stats is not None else None,
            market_ticks=tuple(dict(self._market_ticks).items()),  # dict(): one atomic copy
        )

    def _recent_rate(self) -> float:
        samples = list(self._samples)
        if len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _sample(self) -> None:
        now = time.monotonic()
        if now >= self._next_sample:
            self._samples.append((now, self.delivery.produced))
            self._next_sample = now + _RATE_SAMPLE_S

    # --- the loop ---

    def preflight(self) -> None:
        """Fail now, before any status display, when the broker or the topic is missing."""
        check_topic(self.settings)
        self._checked = True

    def run(self, stop: threading.Event) -> ProducerSummary:
        if self.options.check_topic and not self._checked:
            self.preflight()
        sender = TickSender(
            self.settings,
            counters=self.delivery,
            overrides=self.options.kafka_config,
            factory=self._factory or confluent_producer,
        )
        self._sender = sender
        self._started = time.monotonic()
        duration = self.options.duration_s
        control = RunControl(stop, self._started + duration if duration is not None else None, self._idle)
        undelivered = 0
        failure: CryptoctlError | None = None
        try:
            stopped_by = self._pump(self.source.batches(control), sender, control)
        except DataError as exc:  # what was produced before it is still flushed and summed up
            failure, stopped_by = exc, "data error"
        except CryptoctlError as exc:  # the source cannot go on (an exchange ban)
            failure, stopped_by = exc, "source error"
        finally:
            self._send_markers(sender)
            undelivered = sender.flush(self.options.flush_timeout_s)
            self._sample()
        summary = self._summary(undelivered, stopped_by, failure.message if failure else "")
        if failure is not None:
            raise SourceFailed(failure, summary) from None
        return summary

    def _idle(self) -> None:
        if self._sender is not None:
            self._sender.poll(0)
        self._sample()

    def _pump(self, batches: Iterator[list[ValidTick]], sender: TickSender, control: RunControl) -> str:
        count = self.options.count
        last_price = self._last_price
        count_markets = self._market_ticks.update
        try:
            for batch in batches:
                if count is not None and self.delivery.produced + len(batch) >= count:
                    batch = batch[: count - self.delivery.produced]
                    control.reached = "count"
                sender.send_batch(batch)
                count_markets(map(_MARKET, batch))
                for tick in batch[-64:]:  # the newest price per symbol, cheaply
                    last_price[tick.symbol] = tick.price
                if self._take_markers is not None:
                    self._send_markers(sender)
                self._sample()
                if control.is_set():
                    break
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if not control.is_set():
            return "end of source"
        return control.reached or ("duration" if control.expired() else "stop")

    def _send_markers(self, sender: TickSender) -> None:
        if self._take_markers is None:
            return
        for marker in self._take_markers():
            sender.send_raw(marker.key, orjson.dumps(marker.value), marker.ts)

    def _summary(self, undelivered: int, stopped_by: str, problem: str = "") -> ProducerSummary:
        snap = self.stats()
        elapsed = max(snap.elapsed_s, 1e-9)
        # field by field, not asdict: the feed's stats stay dataclasses
        data = {f.name: getattr(snap, f.name) for f in fields(ProducerStats)} | {"pending": undelivered}
        if problem:
            data["last_problem"] = problem
        return ProducerSummary(
            **data,
            undelivered=undelivered,
            avg_ticks_per_s=snap.produced / elapsed,
            stopped_by=stopped_by,
        )


def run_producer(
    settings: Settings,
    source: Source,
    options: ProducerOptions | None = None,
    stop: threading.Event | None = None,
) -> ProducerSummary:
    """Produce the source's ticks until it ends, count/duration is reached or ``stop``.

    A DataError of the source ends the run as :class:`SourceFailed`, after the flush.
    """
    return ProducerRun(settings, source, options).run(stop or threading.Event())
