"""Fired alerts as they are published on the Redis channel (what `alerts watch` reads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from cryptoctl.alerts.delivery import alerts_channel
from cryptoctl.alerts.events import AlertEvent, event_from_json
from cryptoctl.errors import ServiceUnavailable
from cryptoctl.settings import Settings

WAIT_S = 0.25  # how long one read waits, so a stop is seen promptly


def follow_events(
    settings: Settings, stop: threading.Event, *, duration_s: float | None = None
) -> Iterator[AlertEvent]:
    """Subscribe now (ServiceUnavailable when Redis cannot be reached), then the events
    from the channel until ``stop`` is set or ``duration_s`` is over. A message that is no
    event is skipped."""
    from cryptoctl.cache.client import check_redis

    pubsub = check_redis(settings).pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(alerts_channel(settings))
    except Exception:
        pubsub.close()
        raise
    deadline = None if duration_s is None else time.monotonic() + duration_s
    return _read(settings, pubsub, stop, deadline)


def _read(
    settings: Settings, pubsub: Any, stop: threading.Event, deadline: float | None
) -> Iterator[AlertEvent]:
    import redis

    from cryptoctl.cache.client import redis_address, redis_reason

    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            message = pubsub.get_message(timeout=WAIT_S)
            if message is None or message.get("type") != "message":
                continue
            try:
                event = event_from_json(message["data"])
            except (ValueError, KeyError, TypeError):
                continue
            yield event
    except redis.RedisError as exc:
        raise ServiceUnavailable("Redis", redis_address(settings), redis_reason(exc)) from None
    finally:
        pubsub.close()
