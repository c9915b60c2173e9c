"""Fired alerts written straight into the outbox (alert_events), as the aggregator would:
the delivery half is tested without the engine."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from cryptoctl.db.connection import connect
from cryptoctl.settings import Settings

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
_offsets = itertools.count(1)


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def add_rule_row(
    settings: Settings, symbol: str = "BTC", *, condition: str = "above", threshold: float = 100_000.0,
    window_ms: int | None = None, notify: tuple[str, ...] = (), repeat: bool = False,
) -> int:  # fmt: skip
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO price_alerts (symbol, condition, threshold, window_ms, notify, repeat)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (symbol, condition, threshold, window_ms, list(notify), repeat),
        ).fetchone()
    assert row is not None
    return int(row[0])


def fire(
    settings: Settings, alert_id: int, *, price: float = 100_012.5, symbol: str = "BTC",
    source: str = "binance", quote: str = "USDT", condition: str = "above",
    threshold: float = 100_000.0, window_ms: int | None = None, reference: float | None = None,
    time_ms: int = T0, fired_ms: int | None = None, notify: tuple[str, ...] = (),
) -> int:  # fmt: skip
    """One fired event, as the engine inserts it (pending, unpublished); its id."""
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alert_events (alert_id, source, symbol, quote, condition, threshold,"
            " window_ms, price, reference, time, fired_at, kafka_partition, kafka_offset, notify)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), 0, %s, %s)"
            " RETURNING id",
            (alert_id, source, symbol, quote, condition, threshold, window_ms, price, reference,
             dt(time_ms), dt(fired_ms) if fired_ms is not None else None, next(_offsets),
             list(notify)),
        ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def event_row(settings: Settings, event_id: int) -> dict[str, object]:
    with connect(settings, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT published, delivered, delivered_targets, attempts, last_error, delivered_at"
            " FROM alert_events WHERE id = %s",
            (event_id,),
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return {d.name: v for d, v in zip(cur.description, row, strict=True)}
