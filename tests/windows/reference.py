"""Brute-force reference of the candle rules (DESIGN.md, "Candles"), written for clarity."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# symbol, ts, price, qty, in partition order; then, optionally, the rest of the market
# (source, quote) and an exchange trade id
Row = tuple[Any, ...]


def _full(row: Row) -> tuple[str, int, float, float | None, str, str, int | None]:
    return (*row, "", "USD", None) if len(row) == 4 else row  # type: ignore[return-value]


def watermarks(ticks: list[Row], delay: int) -> list[int | None]:
    """Watermark after each tick: the highest event time so far minus the delay."""
    out: list[int | None] = []
    for i in range(len(ticks)):
        out.append(max(t[1] for t in ticks[: i + 1]) - delay)
    return out


def reference(ticks: list[Row], delay: int, lateness: int, width: int) -> dict[str, Any]:
    """Candles (as Candle.state() tuples keyed by (symbol, source, quote, bucket)) and late
    tick indexes. Open/close ties on one millisecond: the lowest/highest trade id where the
    ticks have one (a market's ticks all have one or none), else partition order."""
    wms = watermarks(ticks, delay)
    late, groups = [], defaultdict(list)
    for i, row in enumerate(ticks):
        sym, ts, price, qty, source, quote, tid = _full(row)
        bucket = (ts // width) * width
        wm = wms[i]
        if wm is not None and bucket + width + lateness <= wm:
            late.append(i)
        else:
            groups[(sym, source, quote, bucket)].append((ts, -1 if tid is None else tid, i, price, qty, tid))
    final_wm = wms[-1] if wms else None
    candles = {}
    for (sym, source, quote, bucket), rows in groups.items():
        first = min(rows, key=lambda r: (r[0], r[1], r[2]))
        last = max(rows, key=lambda r: (r[0], r[1], r[2]))
        prices = [r[3] for r in rows]
        volume = sum(r[4] or 0.0 for r in rows)
        pv = sum(r[3] * (r[4] or 0.0) for r in rows)
        final = final_wm is not None and bucket + width + lateness <= final_wm
        candles[(sym, source, quote, bucket)] = (
            sym, bucket, first[3], max(prices), min(prices), last[3], volume, len(rows),
            sum(prices), pv, first[0], last[0], final, source, quote, first[5], last[5],
        )
    return {"candles": candles, "late": late}
