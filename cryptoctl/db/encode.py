"""The aggregator's rows as PostgreSQL takes them: candle and late-tick rows, and the
raw ticks as a binary COPY payload. Used by the sink (cryptoctl/db/sink.py) at commit:
the aggregator hands over domain data and the encoding stays beside the SQL.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cryptoctl.durations import ms_datetime
from cryptoctl.tick import TickRow
from cryptoctl.windows import Candle

# A tick the windows did not accept: the tick, its offset and the watermark it was behind.
LateTick = tuple[TickRow, int, int]


def candle_row(c: Candle, partition: int) -> tuple[Any, ...]:
    return (
        c.symbol, ms_datetime(c.bucket), c.open, c.high, c.low, c.close, c.volume, c.trades,
        c.price_sum, c.pv_sum, c.avg, c.vwap, ms_datetime(c.open_ts), ms_datetime(c.close_ts),
        partition, c.final,
    )


def late_row(late: LateTick, partition: int) -> tuple[Any, ...]:
    """A late_ticks row of a tick."""
    (symbol, price, ts, _source, _recv_ts, _quote, qty, _extra), offset, watermark_ms = late
    return (
        ms_datetime(ts), symbol, price, qty, partition, offset, ms_datetime(watermark_ms),
        watermark_ms - ts,
    )


# --- binary COPY of raw ticks ---------------------------------------------------------------
# Built by hand: psycopg would need a datetime per tick; here a row is one struct.pack.
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01, the origin of PostgreSQL timestamps
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
_RowFormat = tuple[Callable[..., bytes], bytes, bytes, bytes]
_row_formats: dict[tuple[str, str, str, bool], _RowFormat] = {}


def _row_format(symbol: str, quote: str, source: str, has_qty: bool) -> _RowFormat:
    sb, qb, srcb = symbol.encode(), quote.encode(), source.encode()
    fmt = (
        f">h iq i{len(sb)}s i{len(qb)}s id " + ("id " if has_qty else "i ")
        + f"i{len(srcb)}s iq ii iq i"
    )
    entry = (struct.Struct(fmt.replace(" ", "")).pack, sb, qb, srcb)
    _row_formats[(symbol, quote, source, has_qty)] = entry
    return entry


def encode_raw_ticks(rows: Sequence[TickRow], offsets: Sequence[int], partition: int) -> bytes:
    """raw_price_data rows in COPY binary format (without the stream header and trailer)."""
    out: list[bytes] = []
    append = out.append
    formats = _row_formats
    for (symbol, price, ts, source, recv_ts, quote, qty, extra), offset in zip(
        rows, offsets, strict=True
    ):
        has_qty = qty is not None
        entry = formats.get((symbol, quote, source, has_qty))
        if entry is None:
            entry = _row_format(symbol, quote, source, has_qty)
        pack, sb, qb, srcb = entry
        ts_us = (ts - _PG_EPOCH_MS) * 1000
        recv_us = (recv_ts - _PG_EPOCH_MS) * 1000
        if has_qty:
            row = pack(10, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, 8, qty, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1)
        else:
            row = pack(10, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, -1, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1)
        if extra:
            doc = b"\x01" + orjson.dumps(extra)  # jsonb binary: version 1, then the text
            row = row[:-4] + struct.pack(">i", len(doc)) + doc
        append(row)
    return b"".join(out)
