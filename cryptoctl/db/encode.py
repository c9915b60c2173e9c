"""The aggregator's rows as PostgreSQL takes them: candle and late-tick rows, and the
raw ticks as a binary COPY payload. Used by the sink (cryptoctl/db/sink.py) at commit:
the aggregator hands over domain data and the encoding stays beside the SQL.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cryptoctl.exchanges.trade import Gap
from cryptoctl.tick import TickRow
from cryptoctl.times import ms_datetime
from cryptoctl.windows import Candle

# A tick the windows did not accept: the tick, its offset and the watermark it was behind.
LateTick = tuple[TickRow, int, int]
# A market as the windows key it: (symbol, source, quote); and its newest trade applied:
# (market, trade id, trade time ms).
MarketKey = tuple[str, str, str]
MarketTrade = tuple[MarketKey, int, int]


def gap_row(g: Gap) -> tuple[Any, ...]:
    """A feed_gaps row."""
    m = g.market
    return (m.source, m.symbol, m.quote, g.first_id, g.last_id, ms_datetime(g.after_ts),
            ms_datetime(g.before_ts), g.reason)


def candle_row(c: Candle, partition: int) -> tuple[Any, ...]:
    return (
        c.source, c.symbol, c.quote, ms_datetime(c.bucket), c.open, c.high, c.low, c.close,
        c.volume, c.trades, c.price_sum, c.pv_sum, c.avg, c.vwap, ms_datetime(c.open_ts),
        ms_datetime(c.close_ts), partition, c.final, c.open_tid, c.close_tid,
    )


def late_row(late: LateTick, partition: int) -> tuple[Any, ...]:
    """A late_ticks row of a tick."""
    (symbol, price, ts, source, _recv_ts, quote, qty, _extra, trade_id, _side), offset, wm = late
    return (
        ms_datetime(ts), source, symbol, quote, None if trade_id is None else str(trade_id),
        price, qty, partition, offset, ms_datetime(wm), wm - ts,
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
        + f"i{len(srcb)}s iq ii iq i i i"  # extra, trade_id, side: null unless replaced
    )
    entry = (struct.Struct(fmt.replace(" ", "")).pack, sb, qb, srcb)
    _row_formats[(symbol, quote, source, has_qty)] = entry
    return entry


_NULL = struct.pack(">i", -1)
_NULL_TAIL_LEN = 3 * len(_NULL)  # extra, trade_id and side, as the row format packs them
_SIDES = {side: struct.pack(">i", len(side)) + side.encode() for side in ("buy", "sell")}


def _tail(extra: dict[str, Any] | None, trade_id: int | str | None, side: str | None) -> bytes:
    """The last three columns of a row that has extra fields or a trade id."""
    if extra:
        doc = b"\x01" + orjson.dumps(extra)  # jsonb binary: version 1, then the text
        out = struct.pack(">i", len(doc)) + doc
    else:
        out = _NULL
    if trade_id is None:
        return out + _NULL + _NULL
    tid = str(trade_id).encode()
    return out + struct.pack(">i", len(tid)) + tid + (_SIDES[side] if side else _NULL)


def encode_raw_ticks(rows: Sequence[TickRow], offsets: Sequence[int], partition: int) -> bytes:
    """raw_price_data rows in COPY binary format (without the stream header and trailer)."""
    out: list[bytes] = []
    append = out.append
    formats = _row_formats
    for (symbol, price, ts, source, recv_ts, quote, qty, extra, trade_id, side), offset in zip(
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
            row = pack(12, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, 8, qty, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1, -1, -1)
        else:
            row = pack(12, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, -1, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1, -1, -1)
        if extra or trade_id is not None:
            row = row[:-_NULL_TAIL_LEN] + _tail(extra, trade_id, side)
        append(row)
    return b"".join(out)
