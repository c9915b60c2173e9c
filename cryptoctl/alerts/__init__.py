"""Price alerts: rules (store), their evaluation in the aggregator (rules, engine), the
fired events (events) and their delivery from the outbox (delivery)."""
