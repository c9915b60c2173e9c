"""Collectors that read the stats a process keeps anyway, at scrape time.

Each scrape takes one snapshot (``Aggregator.stats()``, ``ProducerRun.stats()``) and turns
it into metric families: the numbers are the ones the summary prints. ``describe()``
yields the same families without samples, so the exported names can be listed without a
running pipeline (the compose dashboard check does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cryptoctl.aggregator.stats import INVALID_CLASSES
from cryptoctl.metrics.histogram import Histogram

if TYPE_CHECKING:
    from cryptoctl.aggregator import Aggregator, AggregatorStats
    from cryptoctl.producer import ProducerRun, ProducerStats

T = TypeVar("T")
MARKET = ("source", "symbol", "quote")

# name (counters end in _total), help, stats field: one counter each, no labels.
AGGREGATOR_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("cryptoctl_aggregator_ticks_total",
     "Ticks applied to candles (not late, not a duplicate).", "ticks"),
    ("cryptoctl_aggregator_late_ticks_total",
     "Ticks later than the allowed lateness: recorded in late_ticks, not applied.", "late"),
    ("cryptoctl_aggregator_candles_written_total",
     "Candle rows upserted (a candle is rewritten at each flush it changed in).",
     "candles_written"),
    ("cryptoctl_aggregator_candles_final_total", "Candles that became final.", "candles_final"),
    ("cryptoctl_aggregator_raw_ticks_written_total", "Raw ticks stored.", "raw_ticks_written"),
    ("cryptoctl_aggregator_duplicates_total",
     "Exchange trades already applied (re-sent, re-read): not applied again.", "duplicates"),
    ("cryptoctl_aggregator_gaps_total", "Gap records of exchange feeds stored.", "gaps"),
    ("cryptoctl_aggregator_fenced_total",
     "Flushes of a partition refused: another consumer claimed it.", "fenced"),
    ("cryptoctl_aggregator_postgres_errors_total",
     "PostgreSQL connection errors (each one retried).", "pg_retries"),
    ("cryptoctl_aggregator_redis_errors_total", "Redis write errors (retried).", "cache_errors"),
    ("cryptoctl_aggregator_kafka_errors_total", "Kafka consumer errors.", "kafka_errors"),
    ("cryptoctl_aggregator_dlq_failures_total",
     "Dead letters the broker did not acknowledge.", "dlq_failed"),
    ("cryptoctl_aggregator_group_moves_total",
     "Moves to a new Kafka consumer group generation (a wedged group).", "group_moves"),
    ("cryptoctl_aggregator_alerts_fired_total",
     "Price alert events committed with the candles.", "alerts_fired"),
)  # fmt: skip


def _histogram(name: str, doc: str, labels: list[str],
               series: list[tuple[list[str], Histogram]]) -> HistogramMetricFamily:  # fmt: skip
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, histogram in series:
        snap = histogram.snapshot()
        buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in snap.buckets]
        family.add_metric(values, buckets, snap.sum)
    return family


class _StatsCollector(Collector, Generic[T]):
    """Families of one part of the process (``part``); None: the families only, empty."""

    def __init__(self, part: T | None) -> None:
        self._part = part

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._part)

    def _families(self, part: T | None) -> Iterator[Metric]:
        raise NotImplementedError


class AggregatorCollector(_StatsCollector["Aggregator"]):
    """An aggregator's counters."""

    def _families(self, agg: Aggregator | None) -> Iterator[Metric]:
        s = agg.stats() if agg is not None else None
        for name, doc, attr in AGGREGATOR_COUNTERS:
            counter = CounterMetricFamily(name, doc)
            if s is not None:
                counter.add_metric([], getattr(s, attr))
            yield counter
        invalid = CounterMetricFamily(
            "cryptoctl_aggregator_invalid_total",
            "Messages sent to the dead-letter topic, by reason class.", labels=["reason"],
        )
        if s is not None:
            for reason in INVALID_CLASSES:
                invalid.add_metric([reason], s.invalid_by.get(reason, 0))
        yield invalid
        yield from self._gauges(s)
        yield _histogram(
            "cryptoctl_aggregator_flush_seconds",
            "Duration of a flush: one PostgreSQL transaction, then Redis and Kafka offsets.",
            [], [([], agg.counters.flush_seconds)] if agg is not None else [],
        )

    def _gauges(self, s: AggregatorStats | None) -> Iterator[Metric]:
        partitions = GaugeMetricFamily(
            "cryptoctl_aggregator_partitions", "Partitions this process owns.")
        windows = GaugeMetricFamily(
            "cryptoctl_aggregator_open_windows", "Candles held open in memory.")
        pending = GaugeMetricFamily(
            "cryptoctl_aggregator_cache_pending", "Candle updates waiting for Redis.")
        wm_lag = GaugeMetricFamily(
            "cryptoctl_aggregator_watermark_lag_seconds",
            "Wall-clock time minus the partition's watermark (no tick yet: absent).",
            labels=["partition"],
        )
        lag = GaugeMetricFamily(
            "cryptoctl_consumer_lag_messages",
            "Messages between the partition's next offset and its end, as last fetched.",
            labels=["partition"],
        )  # fmt: skip
        if s is not None:
            partitions.add_metric([], len(s.partitions))
            windows.add_metric([], s.open_windows)
            pending.add_metric([], s.cache_pending)
            now_ms = time.time() * 1000
            for p, wm in s.watermarks.items():
                if wm is not None:
                    wm_lag.add_metric([str(p)], max(0.0, now_ms - wm) / 1000)
            for p, n in s.lag.items():
                if n is not None:
                    lag.add_metric([str(p)], n)
        yield from (partitions, windows, pending, wm_lag, lag)


# name, help, value of the snapshot: one counter each, labelled by source.
PRODUCER_COUNTERS: tuple[tuple[str, str, Callable[[ProducerStats], int]], ...] = (
    ("cryptoctl_producer_delivered_total", "Ticks the broker acknowledged.", lambda s: s.delivered),
    ("cryptoctl_producer_delivery_failures_total",
     "Ticks the broker never acknowledged (failed after librdkafka's retries).",
     lambda s: s.failed),
    ("cryptoctl_producer_retries_total",
     "Re-sends: source requests retried, producer restarts, waits on a full queue.",
     lambda s: s.retries),
    ("cryptoctl_producer_markers_total", "Gap markers produced (not ticks).", lambda s: s.markers),
)  # fmt: skip

# MarketStats field -> (name, help, counter or gauge): a trade feed's per-market figures.
FEED_METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("reconnects", "cryptoctl_producer_feed_reconnects_total",
     "Reconnections of the exchange's feed a market lived through.", True),
    ("gaps_filled", "cryptoctl_producer_feed_gaps_filled_total",
     "Jumps in the trade ids bridged over REST.", True),
    ("gaps_open", "cryptoctl_producer_feed_gaps_open",
     "Gaps that could not be filled (each sent as a gap marker).", False),
)  # fmt: skip


def _market_labels(market: str) -> list[str]:
    """``binance BTC/USDT`` (as MarketStats names a market) -> [source, symbol, quote]."""
    source, _, pair = market.partition(" ")
    symbol, _, quote = pair.partition("/")
    return [source, symbol, quote]


class ProducerCollector(_StatsCollector["ProducerRun"]):
    """A producer run's counters."""

    def _families(self, run: ProducerRun | None) -> Iterator[Metric]:
        s = run.stats() if run is not None else None
        ticks = CounterMetricFamily(
            "cryptoctl_producer_ticks_total", "Ticks produced, per market.", labels=list(MARKET)
        )
        errors = CounterMetricFamily(
            "cryptoctl_producer_errors_total",
            "Source problems: kind=request (a request or read failed after its retries),"
            " kind=invalid (a quote, trade or row rejected by validation).",
            labels=["source", "kind"],
        )
        if s is not None:
            for market, n in s.market_ticks:
                ticks.add_metric(list(market), n)
            errors.add_metric([s.source, "request"], s.source_errors)
            errors.add_metric([s.source, "invalid"], s.invalid)
        yield ticks
        yield errors
        for name, doc, value in PRODUCER_COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=["source"])
            if s is not None:
                counter.add_metric([s.source], value(s))
            yield counter
        pending = GaugeMetricFamily(
            "cryptoctl_producer_pending", "Ticks produced, not acknowledged yet.", labels=["source"]
        )
        if s is not None:
            pending.add_metric([s.source], s.pending)
        yield pending
        yield from self._feed(s)
        yield _histogram(
            "cryptoctl_producer_request_seconds",
            "Duration of the source's HTTP requests (CoinGecko, exchange REST), failed ones too.",
            ["source"], [([s.source], run.source.counters.requests)] if run and s else [],
        )

    def _feed(self, s: ProducerStats | None) -> Iterator[Metric]:
        families: dict[str, Any] = {}
        for attr, name, doc, counter in FEED_METRICS:
            kind = CounterMetricFamily if counter else GaugeMetricFamily
            families[attr] = kind(name, doc, labels=list(MARKET))
        feed = s.feed if s is not None else None
        for m in feed.markets if feed is not None else ():
            for attr, family in families.items():
                family.add_metric(_market_labels(m.market), getattr(m, attr))
        yield from families.values()


def exported_samples() -> set[str]:
    """Every sample name the collectors can export (``x_total``, ``x_bucket``, ...), from
    their own descriptions."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}  # fmt: skip
    names: set[str] = set()
    for collector in (AggregatorCollector(None), ProducerCollector(None)):
        for family in collector.describe():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names
