"""Price sources for `cryptoctl produce`: CoinGecko, a synthetic market, recorded files.

Each source is an iterator of batches of :data:`~cryptoctl.tick.ValidTick`: ticks
checked once, in the source, by the shared validation (see :mod:`cryptoctl.tick`);
the produce loop in :mod:`cryptoctl.producer` puts them on Kafka.
"""

from cryptoctl.sources.base import Source, SourceCounters, StopFlag

__all__ = ["Source", "SourceCounters", "StopFlag"]
