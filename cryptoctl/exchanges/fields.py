"""Reading the exchanges' fields into our units, returning None for anything unusable.

The wire and REST modules never raise on a bad field: they turn a None from here into a
:class:`~cryptoctl.exchanges.wire.Garbage` (or skip the row) with a reason.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from cryptoctl.exchanges.trade import Side

NOT_JSON = object()  # what loads() returns for bytes that are not JSON

# 2026-01-02T03:04:05.123456Z (Coinbase, Kraken): any number of fraction digits, Z or +00:00.
_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:Z|\+00:?00)\Z")


def loads(frame: str | bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        return NOT_JSON


def loads_exact(frame: str | bytes) -> Any:
    """JSON whose non-integer numbers are kept as their text: Kraken's REST times are
    JSON numbers such as ``1688669597.9999999``, which the nearest double would move into
    the next second (a double holds ~16 digits, the time has 17)."""
    try:
        return json.loads(frame, parse_float=str)
    except ValueError:  # JSONDecodeError, and undecodable bytes
        return NOT_JSON


def iso_ms(value: Any) -> int | None:
    """An ISO-8601 UTC time as epoch ms, the fraction *floored* (``…59.9996Z`` stays in :59)."""
    if not isinstance(value, str):
        return None
    m = _ISO.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        whole = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    millis = int((m.group(7) or "0")[:3].ljust(3, "0"))  # truncating the digits is the floor
    return int(whole.timestamp()) * 1000 + millis


def seconds_ms(value: Any) -> int | None:
    """Epoch seconds as a JSON number or string (Kraken REST ``1688669597.8277369``) -> ms,
    floored on the decimal digits sent (the float's shortest repr), not on the binary value."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    if not number.is_finite() or number < 0:
        return None
    return int((number * 1000).to_integral_value(rounding="ROUND_FLOOR"))


def epoch_ms(value: Any) -> int | None:
    """An integer epoch-ms field (Binance ``T``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def trade_id(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _float(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        return None
    return result if math.isfinite(result) else None


def positive(value: Any) -> float | None:
    """A decimal string (or, Kraken WS v2, a JSON number) as a finite float > 0."""
    result = _float(value)
    return result if result is not None and result > 0 else None


def number(value: Any) -> float | None:
    """Like :func:`positive` but 0 allowed (a candle's volume in an empty minute)."""
    result = _float(value)
    return result if result is not None and result >= 0 else None


def side(value: Any) -> Side | None:
    if value == "buy":
        return "buy"
    if value == "sell":
        return "sell"
    return None


def opposite(value: Side) -> Side:
    return "sell" if value == "buy" else "buy"
