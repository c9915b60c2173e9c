"""A fired alert as stored in the outbox (``alert_events``) and as its JSON form: the body
of a webhook, a message on the Redis channel, a row of ``alerts history --format json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptoctl.times import duration_text, iso_utc

EVENT_FIELDS = (
    "id",
    "alert_id",
    "source",
    "symbol",
    "quote",
    "condition",
    "threshold",
    "window",
    "price",
    "reference",
    "time",
    "fired_at",
    "delivered",
)

# The columns an AlertEvent is read from, in its field order (times as epoch ms).
EVENT_COLUMNS = (
    "id, alert_id, source, symbol, quote, condition, threshold, window_ms, price, reference,"
    " (extract(epoch FROM time) * 1000)::bigint,"
    " (extract(epoch FROM fired_at) * 1000)::bigint, delivered, last_error, attempts"
)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: int
    alert_id: int
    source: str
    symbol: str
    quote: str
    condition: str  # above | below | change
    threshold: float  # change: percent
    window_ms: int | None  # change only
    price: float  # the tick that fired it
    reference: float | None  # change: the window's low (a rise) or high (a fall)
    time_ms: int  # that tick's event time
    fired_at_ms: int
    delivered: str  # pending | delivered | failed
    last_error: str | None = None
    attempts: int = 0

    @property
    def market(self) -> str:
        return f"{self.source} {self.symbol}/{self.quote}"

    @property
    def window(self) -> str | None:
        return duration_text(self.window_ms) if self.window_ms else None

    def describe(self) -> str:
        """The condition in words: ``above 100000``, ``change 5% within 10m``."""
        return condition_text(self.condition, self.threshold, self.window_ms)


def condition_text(condition: str, threshold: float, window_ms: int | None) -> str:
    number = f"{threshold:g}" if abs(threshold) < 1e15 else repr(threshold)
    if condition == "change":
        return f"change {number}% within {duration_text(window_ms or 0)}"
    return f"{condition} {number}"


def event_record(e: AlertEvent) -> dict[str, Any]:
    """The event's JSON object (the contract of issue 11)."""
    return {
        "id": e.id,
        "alert_id": e.alert_id,
        "source": e.source,
        "symbol": e.symbol,
        "quote": e.quote,
        "condition": e.condition,
        "threshold": e.threshold,
        "window": e.window,
        "price": e.price,
        "reference": e.reference,
        "time": iso_utc(e.time_ms),
        "fired_at": iso_utc(e.fired_at_ms),
        "delivered": e.delivered,
    }


def event_json(e: AlertEvent) -> str:
    return json.dumps(event_record(e), ensure_ascii=False, allow_nan=False)


def event_from_row(row: Sequence[Any]) -> AlertEvent:
    """An AlertEvent from a row selected with :data:`EVENT_COLUMNS`."""
    return AlertEvent(*row)


def event_from_json(text: str | bytes) -> AlertEvent:
    """The inverse of :func:`event_json` (what `alerts watch` reads off the channel)."""
    from datetime import datetime

    from cryptoctl.times import datetime_ms, parse_duration_ms

    data = json.loads(text)

    def ms(value: str) -> int:
        return datetime_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))

    window = data.get("window")
    return AlertEvent(
        id=int(data["id"]), alert_id=int(data["alert_id"]), source=data["source"],
        symbol=data["symbol"], quote=data["quote"], condition=data["condition"],
        threshold=float(data["threshold"]),
        window_ms=parse_duration_ms(window) if window else None, price=float(data["price"]),
        reference=data.get("reference"), time_ms=ms(data["time"]),
        fired_at_ms=ms(data["fired_at"]), delivered=data.get("delivered", "pending"),
    )  # fmt: skip
