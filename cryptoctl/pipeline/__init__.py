"""``cryptoctl run``: the producer and the aggregator in threads of one process, on the
local stack, with a snapshot of everything the dashboard shows."""
