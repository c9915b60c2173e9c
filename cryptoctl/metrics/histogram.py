"""A cumulative histogram the hot path can feed for the price of a bisect, read at scrape
time by the metrics collectors (cryptoctl.metrics.collectors). No prometheus_client here:
it is imported only when metrics are served."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

# Seconds. A flush is one PostgreSQL transaction (milliseconds, seconds when it struggles);
# a source request crosses the internet (tens of milliseconds to its timeout).
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative count), +Inf last
    count: int
    sum: float


class Histogram:
    """Written by one thread (``observe``), read by any (``snapshot``): plain lists and
    floats, no lock; a read racing a write is off by that one observation at most."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return HistogramSnapshot(tuple(cumulative), running, total)


def flush_histogram() -> Histogram:
    return Histogram(FLUSH_BUCKETS)


def request_histogram() -> Histogram:
    return Histogram(REQUEST_BUCKETS)
