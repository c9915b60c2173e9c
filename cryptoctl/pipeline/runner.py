"""Run the whole pipeline in one process: producer thread -> Kafka -> aggregator thread.

The stack (broker, PostgreSQL, Redis) is separate processes started by
:func:`cryptoctl.stack.local.up`; stopping the pipeline leaves it running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptoctl.errors import CryptoctlError, InternalError
from cryptoctl.settings import Settings
from cryptoctl.sources.spec import SourceChoice

if TYPE_CHECKING:
    from cryptoctl.aggregator import Aggregator, AggregatorStats
    from cryptoctl.cache.client import MarketKey
    from cryptoctl.cache.documents import CandleDoc
    from cryptoctl.producer import ProducerRun, ProducerStats
    from cryptoctl.sources.base import Source

DEFAULT_SYMBOLS = ("BTC", "ETH", "SOL")
CATCH_UP_S = 8.0  # on stop: how long the aggregator may take to read what was produced
CACHE_POLL_S = 1.0


@dataclass(frozen=True)
class RunOptions:
    symbols: Sequence[str] = DEFAULT_SYMBOLS
    duration_s: float | None = None
    quote: str = "USD"  # what the run's source quotes in: one source and one quote per run


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, taken at one moment.

    A run produces one source in one quote, so its markets are (symbol, ``source.name``,
    ``quote``) for each symbol; the candles are those of exactly these markets (the cache
    may hold other markets of the same symbols, from another `produce`)."""

    source: SourceChoice
    elapsed_s: float
    producer: ProducerStats
    aggregator: AggregatorStats
    current: dict[MarketKey, CandleDoc]  # market -> open 1-minute candle (Redis)
    final: dict[MarketKey, CandleDoc]  # market -> last final 1-minute candle (Redis)
    cache_status: str  # of the last poll of Redis (cryptoctl/cache/poller.py)
    quote: str = "USD"  # the quote of the run's markets

    def market(self, symbol: str) -> MarketKey:
        """The run's market of this symbol, as the cache keys it."""
        return symbol, self.source.name, self.quote


@dataclass
class _Worker:
    name: str
    target: Callable[[threading.Event], Any]
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.target(self.stop)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def halt(self, timeout: float) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)


class Pipeline:
    """Producer and aggregator threads; :meth:`snapshot` from the main thread."""

    def __init__(self, settings: Settings, source: Source, choice: SourceChoice, options: RunOptions) -> None:
        from cryptoctl.aggregator import Aggregator, AggregatorOptions
        from cryptoctl.producer import ProducerOptions, ProducerRun

        self.settings = settings
        self.choice = choice
        self.options = options
        self.producer: ProducerRun = ProducerRun(settings, source, ProducerOptions())
        # Short watermark delay and lateness: candles of a live demo become final quickly.
        self.aggregator: Aggregator = Aggregator(
            settings, AggregatorOptions(delay_ms=2_000, lateness_ms=10_000)
        )
        self._workers = [
            _Worker("aggregator", self.aggregator.run),
            _Worker("producer", self.producer.run),
        ]
        self._started = time.monotonic()
        from cryptoctl.cache.poller import CandlePoller

        self._candles = CandlePoller(settings, every_s=CACHE_POLL_S, retry_s=CACHE_POLL_S)

    def start(self) -> None:
        self.producer.preflight()
        self._started = time.monotonic()
        for worker in self._workers:
            worker.start()

    def run(self, stop: threading.Event) -> None:
        """Start, then stop once ``stop`` is set, the duration is up or a worker ended."""
        self.start()
        try:
            while not (stop.wait(0.1) or self.expired() or self.finished()):
                pass
        finally:
            self.stop()

    def failed(self) -> _Worker | None:
        """The first worker that ended with an error."""
        return next((w for w in self._workers if w.error is not None), None)

    def finished(self) -> bool:
        """A worker ended by itself (an error, or a source that ran out)."""
        return any(not w.alive() for w in self._workers)

    def expired(self) -> bool:
        duration = self.options.duration_s
        return duration is not None and time.monotonic() - self._started >= duration

    def stop(self) -> None:
        """Producer first (flush deliveries), let the aggregator catch up, then stop it."""
        aggregator, producer = self._workers
        producer.halt(60.0)
        produced = self.producer.stats().delivered
        deadline = time.monotonic() + CATCH_UP_S
        while (
            aggregator.alive()
            and self.aggregator.stats().accounted < produced
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        aggregator.halt(60.0)

    def raise_failure(self) -> None:
        """A worker's error, as it was: a CryptoctlError keeps its exit code, anything else
        reaches the CLI's handler as an internal error (redacted, traceback on request)."""
        worker = self.failed()
        if worker is None or worker.error is None:
            return
        error = worker.error
        if isinstance(error, CryptoctlError):
            raise error
        if isinstance(error, Exception) and not isinstance(error, BrokenPipeError):
            error.add_note(f"raised in the {worker.name} thread of the pipeline")
            raise error
        # A worker's closed pipe is not this command's stdout closing (which exits 0), and a
        # SystemExit or the like must not skip the handler: an internal error either way.
        raise InternalError(
            f"internal error: {type(error).__name__} in the {worker.name} thread of the"
            f" pipeline: {error}",
            hint="this is a bug; CRYPTOCTL_DEBUG=1 shows the traceback",
        ) from error

    def _own_market(self, market: MarketKey) -> bool:
        _symbol, source, quote = market
        return source == self.choice.name and quote == self.options.quote

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        cached = self._candles.poll(
            [s.upper() for s in self.options.symbols], now, keep=self._own_market
        )
        return Snapshot(
            source=self.choice,
            elapsed_s=now - self._started,
            producer=self.producer.stats(),
            aggregator=self.aggregator.stats(),
            current=cached.current,
            final=cached.final,
            cache_status=cached.status,
            quote=self.options.quote,
        )
