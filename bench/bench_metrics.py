"""What metrics cost the pipeline: the per-tick and per-flush work they added, and one scrape.

    .venv/bin/python bench/bench_metrics.py [--ticks 300000] [--repeat 5]

No broker: it times the pieces alone, best of --repeat, on ticks built like the synthetic
source's. (1) the producer's per-market count, per tick, beside encoding the tick the way
the Kafka sender does (orjson of to_dict, the work every tick pays anyway); (2) one
Histogram.observe (per flush, per HTTP request); (3) one scrape of a producer's and an
aggregator's collectors through prometheus_client's text exposition, with 6 partitions
and 6 markets.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import orjson

from cryptoctl.metrics.histogram import Histogram, flush_histogram
from cryptoctl.tick import Tick

SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE"]


def ticks(n: int) -> list[Tick]:
    return [Tick(SYMBOLS[i % 6], 100.0 + i % 97, 1_704_067_200_000 + i, "synthetic", 1_704_067_200_000 + i,
                 "USD", 0.5) for i in range(n)]  # fmt: skip


def _observe_many(h: Histogram, n: int) -> None:
    for _ in range(n):
        h.observe(0.004)


def best(repeat: int, fn: Any) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def count_markets(batches: list[list[Tick]]) -> None:
    """What ProducerRun._pump does after each send_batch."""
    from collections import Counter

    from cryptoctl.producer.loop import _MARKET

    update = Counter[tuple[str, str, str]]().update
    for batch in batches:
        update(map(_MARKET, batch))


def encode(batch: list[Tick]) -> None:
    dumps = orjson.dumps
    for tick in batch:
        dumps(tick.to_dict())


def scrape_once() -> float:
    from prometheus_client import CollectorRegistry, generate_latest

    from cryptoctl.metrics.collectors import AggregatorCollector, ProducerCollector
    from cryptoctl.settings import Settings

    class SixPartitions:  # an idle aggregator's stats, as if it owned 6 partitions
        def __init__(self) -> None:
            from cryptoctl.aggregator.core import Aggregator

            self.real = Aggregator(Settings())
            self.counters = self.real.counters
            for _ in range(1000):
                self.counters.flush_seconds.observe(0.004)

        def stats(self) -> Any:
            from dataclasses import replace

            s = self.real.stats()
            return replace(s, partitions=tuple(range(6)), watermarks=dict.fromkeys(range(6), 1),
                           lag=dict.fromkeys(range(6), 0))  # fmt: skip

    from cryptoctl.producer import ProducerRun
    from cryptoctl.sources.synthetic import SyntheticConfig, SyntheticSource

    run = ProducerRun(Settings(), SyntheticSource(SyntheticConfig(symbols=tuple(SYMBOLS))))
    run._market_ticks.update({("synthetic", s, "USD"): 1000 for s in SYMBOLS})
    registry = CollectorRegistry()
    registry.register(AggregatorCollector(SixPartitions()))  # type: ignore[arg-type]
    registry.register(ProducerCollector(run))
    return best(20, lambda: generate_latest(registry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    batch = ticks(args.ticks)
    batches = [batch[i : i + 1000] for i in range(0, len(batch), 1000)]  # as sources yield
    counted = best(args.repeat, lambda: count_markets(batches))
    encoded = best(args.repeat, lambda: encode(batch))
    h = flush_histogram()
    observed = best(args.repeat, lambda: _observe_many(h, args.ticks))
    scrape = scrape_once()
    print(f"machine: {platform.machine()}  python {platform.python_version()}, "
          f"{args.ticks:,} ticks, best of {args.repeat}")  # fmt: skip
    print(f"per-market count, per tick      {counted / args.ticks * 1e9:8.1f} ns")
    print(f"encoding a tick (for scale)     {encoded / args.ticks * 1e9:8.1f} ns")
    print(f"count / encoding                {counted / encoded:8.1%}")
    print(f"Histogram.observe               {observed / args.ticks * 1e9:8.1f} ns")
    print(f"one scrape (6 partitions, 6 markets) {scrape * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
