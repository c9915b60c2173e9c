"""The aggregator's counters as a snapshot another thread can read (dashboard, CLI)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from cryptoctl.metrics.histogram import Histogram, flush_histogram


@dataclass(frozen=True)
class AggregatorStats:
    """What the aggregator has done so far. Counters are per process (since it started).

    ticks: ticks applied to a candle; late: ticks whose window was already final
    (recorded in late_ticks, not applied); invalid: messages sent to the dead-letter topic
    (a trade of a market that lives on another partition too);
    candles_written: candle rows upserted (a candle is rewritten at each flush it changed in);
    candles_final: candles that became final; fenced: flushes of a partition refused because
    another consumer claimed it since; duplicates: exchange trades at or below their
    market's newest trade id already applied (never applied twice); invalid_by: invalid
    by reason class (:data:`INVALID_CLASSES`); lag: per partition, messages between the
    next offset and the end of the partition as the consumer last heard it (None: not
    known yet).
    """

    state: str  # starting | running | waiting for partitions | stopping | stopped
    elapsed_s: float
    ticks: int
    ticks_per_s: float
    late: int
    invalid: int
    candles_written: int
    candles_final: int
    raw_ticks_written: int
    open_windows: int
    flushes: int
    flush_latency_ms_p50: float | None
    flush_latency_ms_last: float | None
    partitions: tuple[int, ...]
    watermarks: dict[int, int | None]  # partition -> watermark, epoch ms (None: no tick yet)
    fenced: int
    offset_resets: int  # partitions restarted from the beginning of a new (empty) broker
    pg_retries: int
    dlq_failed: int
    cache_pending: int
    cache_connected: bool
    cache_errors: int
    kafka_errors: int
    last_error: str = ""
    group_moves: int = 0  # moves to a new Kafka group generation (a wedged group)
    kafka_group: str = ""  # the Kafka consumer group it consumes with
    duplicates: int = 0  # exchange trades already applied (re-sent, re-read): not again
    gaps: int = 0  # gap records of exchange feeds stored
    alerts_fired: int = 0  # alert events committed (each rule and market firing once)
    invalid_by: dict[str, int] = field(default_factory=dict)
    lag: dict[int, int | None] = field(default_factory=dict)

    @property
    def accounted(self) -> int:
        """Messages read and dealt with: applied, late, duplicate, dead-lettered or a gap
        record (each message is exactly one of these)."""
        return self.ticks + self.late + self.duplicates + self.invalid + self.gaps

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["partitions"] = list(self.partitions)
        out["watermarks"] = {str(k): v for k, v in self.watermarks.items()}
        out["lag"] = {str(k): v for k, v in self.lag.items()}
        return out


# Why a message went to the dead-letter topic, as a class (the reason header has the detail):
# malformed: empty or not JSON; invalid: JSON that is not a valid tick; key: keyed other
# than by its symbol; partition: a market's trade on another partition than its market's.
INVALID_CLASSES = ("malformed", "invalid", "key", "partition")


@dataclass
class Counters:
    """Mutable counters of the loop thread; :class:`AggregatorStats` is their snapshot."""

    ticks: int = 0  # applied to a candle
    late: int = 0
    invalid: int = 0
    candles_written: int = 0
    candles_final: int = 0
    raw_ticks_written: int = 0
    flushes: int = 0
    fenced: int = 0
    offset_resets: int = 0
    kafka_errors: int = 0
    group_moves: int = 0
    duplicates: int = 0  # exchange trades at or below their market's newest: not applied
    gaps: int = 0  # gap records of exchange feeds, stored in feed_gaps
    alerts_fired: int = 0  # alert events written (committed, not fenced)
    last_error: str = ""
    invalid_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVALID_CLASSES, 0))
    flush_seconds: Histogram = field(default_factory=flush_histogram)  # read by the metrics
    flush_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    rate_samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=16))

    def sample_rate(self, now: float) -> None:
        """Remember (time, ticks) about every 0.25 s for a rate over the last few seconds."""
        if not self.rate_samples or now - self.rate_samples[-1][0] >= 0.25:
            self.rate_samples.append((now, self.ticks))

    def rate(self) -> float:
        samples = list(self.rate_samples)
        now = time.monotonic()
        if not samples:
            return 0.0
        t0, n0 = samples[0]
        span = now - t0
        return (self.ticks - n0) / span if span > 0 else 0.0

    def flush_p50(self) -> float | None:
        values = list(self.flush_ms)
        return round(median(values), 2) if values else None

    def flush_last(self) -> float | None:
        return round(self.flush_ms[-1], 2) if self.flush_ms else None
