"""Data output for scripts: records as a JSON array or CSV with a header.

Prices (open, high, low, close, price, last) are written as stored, in their shortest
exact form (``2.2e-05``). Sums and ratios (volume, avg, vwap, change_pct) are rounded to
12 significant digits: double sums carry noise in the 16th digit (``30.90986899999999``
is ``30.909869``), far below anything the inputs can have. A number that is not finite
(NaN, infinity) is never written: it is ``null`` in JSON and an empty field in CSV, like
``None``. Booleans are ``true``/``false`` in both; times are ISO-8601 UTC with a ``Z``.
Every row names its market first: ``symbol``, ``quote``, ``source``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptoctl.db.queries import CandleRow, LatestPrice, Stats24h
from cryptoctl.times import iso_utc

Record = Mapping[str, Any]

CANDLE_FIELDS = (
    "symbol",
    "quote",
    "source",
    "interval",
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "avg",
    "vwap",
    "final",
    "complete",
)
PRICE_FIELDS = ("symbol", "quote", "source", "price", "time", "from")
STATS_FIELDS = (
    "symbol",
    "quote",
    "source",
    "open",
    "high",
    "low",
    "last",
    "change_pct",
    "volume",
    "trades",
    "first_bucket",
    "last_bucket",
)


# Digits a sum or ratio of doubles is printed with. A double holds 15-17; a sum of n values
# can be off in its last log10(n) of them, so 12 keeps clear of the noise of big sums.
SIGNIFICANT_DIGITS = 12


def measured(value: float | None) -> float | None:
    """A sum or ratio at the precision its inputs have; ``None`` unless finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def exact(value: float | None) -> float | None:
    """A stored value (a price) as it is; ``None`` unless finite."""
    if value is None or not math.isfinite(value):
        return None
    return value


def candle_record(c: CandleRow) -> dict[str, Any]:
    return {
        "symbol": c.symbol,
        "quote": c.quote,
        "source": c.source,
        "interval": c.interval,
        "bucket": iso_utc(c.bucket_ms),
        "open": exact(c.open),
        "high": exact(c.high),
        "low": exact(c.low),
        "close": exact(c.close),
        "volume": measured(c.volume),
        "trades": c.trades,
        "avg": measured(c.avg),
        "vwap": measured(c.vwap),
        "final": c.final,
        "complete": c.complete,
    }


def price_record(p: LatestPrice) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "quote": p.quote,
        "source": p.source,
        "price": exact(p.price),
        "time": iso_utc(p.time_ms) if p.time_ms is not None else None,
        "from": p.origin,
    }


def stats_record(s: Stats24h) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "quote": s.quote,
        "source": s.source,
        "open": exact(s.open),
        "high": exact(s.high),
        "low": exact(s.low),
        "last": exact(s.last),
        "change_pct": measured(s.change_pct),
        "volume": measured(s.volume),
        "trades": s.trades,
        "first_bucket": iso_utc(s.first_bucket_ms),
        "last_bucket": iso_utc(s.last_bucket_ms),
    }


def _finite(value: Any) -> Any:
    """NaN and infinity as ``None``: they are no JSON numbers (json would write ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(records: Iterable[Record]) -> str:
    """A JSON array, two-space indented, newline-terminated."""
    rows = [_finite(r) for r in records]
    return json.dumps(rows, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _csv_value(value: Any) -> Any:
    value = _finite(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def to_csv(records: Iterable[Record], fields: Sequence[str]) -> str:
    """CSV with a header row (always, even with no records), ``\\n`` line endings."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for record in records:
        writer.writerow([_csv_value(record.get(name)) for name in fields])
    return buf.getvalue()

