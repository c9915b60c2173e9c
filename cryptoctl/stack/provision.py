"""What every runtime does once its servers answer: topics and schema for these settings."""

from __future__ import annotations

from collections.abc import Callable

from cryptoctl.settings import Settings


def provision(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Create the configured topic and its DLQ if missing, apply schema.sql (idempotent).

    Returns the topics created. The compose stack's own init only covers the default
    names, so `up --docker` calls this too.
    """
    from cryptoctl.db.connection import apply_schema
    from cryptoctl.kafka.clients import ensure_topics

    progress("creating topics")
    created = ensure_topics(settings)
    progress("applying schema.sql")
    apply_schema(settings)
    return created
