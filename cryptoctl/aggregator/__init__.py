"""The aggregator: Kafka ticks -> event-time candles in PostgreSQL (exactly once) + Redis."""

from cryptoctl.aggregator.core import Aggregator, AggregatorOptions
from cryptoctl.aggregator.stats import AggregatorStats

__all__ = ["Aggregator", "AggregatorOptions", "AggregatorStats"]
