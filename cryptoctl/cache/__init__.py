"""Redis: the latest-value cache and the candle update channel."""
