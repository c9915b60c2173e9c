"""``cryptoctl watch``: ticks read straight from the topic's partitions, as per-market state."""
