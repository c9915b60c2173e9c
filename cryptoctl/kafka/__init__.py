"""Kafka glue: client configurations, topic management, error translation."""
