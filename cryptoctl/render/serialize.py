"""Data output for scripts: records as a JSON array or CSV with a header.

Numbers are written raw (no rounding); ``None`` is JSON ``null`` and an empty CSV field;
booleans are ``true``/``false`` in both; times are ISO-8601 UTC with a ``Z``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptoctl.db.queries import Candle, LatestPrice, Stats24h
from cryptoctl.durations import iso_utc

Record = Mapping[str, Any]

CANDLE_FIELDS = (
    "symbol",
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
)
PRICE_FIELDS = ("symbol", "price", "time", "source", "from")
STATS_FIELDS = (
    "symbol",
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


def candle_record(c: Candle) -> dict[str, Any]:
    return {
        "symbol": c.symbol,
        "interval": c.interval,
        "bucket": iso_utc(c.bucket_ms),
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "trades": c.trades,
        "avg": c.avg,
        "vwap": c.vwap,
        "final": c.final,
    }


def price_record(p: LatestPrice) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "price": p.price,
        "time": iso_utc(p.time_ms) if p.time_ms is not None else None,
        "source": p.source,
        "from": p.origin,
    }


def stats_record(s: Stats24h) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "open": s.open,
        "high": s.high,
        "low": s.low,
        "last": s.last,
        "change_pct": s.change_pct,
        "volume": s.volume,
        "trades": s.trades,
        "first_bucket": iso_utc(s.first_bucket_ms),
        "last_bucket": iso_utc(s.last_bucket_ms),
    }


def to_json(records: Iterable[Record]) -> str:
    """A JSON array, two-space indented, newline-terminated."""
    return json.dumps(list(records), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _csv_value(value: Any) -> Any:
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


def json_line(record: Record) -> str:
    """One compact JSON object per line (``--format jsonl``)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
