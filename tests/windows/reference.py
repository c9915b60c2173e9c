"""Brute-force reference of the candle rules (DESIGN.md, "Candles"), written for clarity."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

Row = tuple[str, int, float, float | None]  # symbol, ts, price, qty in partition order


def watermarks(ticks: list[Row], delay: int) -> list[int | None]:
    """Watermark after each tick: the highest event time so far minus the delay."""
    out: list[int | None] = []
    for i in range(len(ticks)):
        out.append(max(t[1] for t in ticks[: i + 1]) - delay)
    return out


def reference(ticks: list[Row], delay: int, lateness: int, width: int) -> dict[str, Any]:
    """Candles (as Candle.state() tuples keyed by (symbol, bucket)) and late tick indexes."""
    wms = watermarks(ticks, delay)
    late, groups = [], defaultdict(list)
    for i, (sym, ts, price, qty) in enumerate(ticks):
        bucket = (ts // width) * width
        wm = wms[i]
        if wm is not None and bucket + width + lateness <= wm:
            late.append(i)
        else:
            groups[(sym, bucket)].append((ts, i, price, qty))
    final_wm = wms[-1] if wms else None
    candles = {}
    for (sym, bucket), rows in groups.items():
        first = min(rows, key=lambda r: (r[0], r[1]))
        last = max(rows, key=lambda r: (r[0], r[1]))
        prices = [r[2] for r in rows]
        volume = sum(r[3] or 0.0 for r in rows)
        pv = sum(r[2] * (r[3] or 0.0) for r in rows)
        final = final_wm is not None and bucket + width + lateness <= final_wm
        candles[(sym, bucket)] = (
            sym, bucket, first[2], max(prices), min(prices), last[2], volume, len(rows),
            sum(prices), pv, first[0], last[0], final,
        )
    return {"candles": candles, "late": late}
