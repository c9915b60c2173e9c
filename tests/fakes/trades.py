"""Known trade sets for the fake exchanges, and the brute-force candle reference.

A trade set is a list of :class:`~cryptoctl.exchanges.trade.Trade` with consecutive ids,
millisecond times and prices/sizes that are floats of short decimal strings (so
``float(str)`` round-trips exactly). Coinbase and Kraken put microseconds on the wire:
:func:`assign_micros` gives each trade its sub-millisecond part, deterministically, with
the worst case (``…:59.999999``) in a minute's last millisecond.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from cryptoctl.exchanges.trade import Trade

MINUTE_MS = 60_000


def assign_micros(trades: Sequence[Trade], seed: int = 0) -> dict[int, int]:
    """Each trade's microseconds within its millisecond (0..999), as Coinbase/Kraken send:
    non-decreasing in trade id within a millisecond (the exchange's order), repeats
    allowed (several trades in one microsecond). The last trade of a minute's last
    millisecond gets 999: rounding it (instead of flooring) moves it to the next minute."""
    by_ms: dict[int, list[int]] = defaultdict(list)
    for trade in sorted(trades, key=lambda t: t.trade_id):
        by_ms[trade.ts].append(trade.trade_id)
    micros: dict[int, int] = {}
    for ts, ids in by_ms.items():
        rng = random.Random(seed * 1_000_003 + ts)
        values = sorted(rng.randrange(1000) for _ in ids)
        if ts % MINUTE_MS == MINUTE_MS - 1:
            values[-1] = 999
        micros.update(zip(ids, values, strict=True))
    return micros


def iso_us(ts_us: int) -> str:
    """``2026-01-02T03:04:05.123456Z`` (Coinbase and Kraken v2 spell times this way)."""
    seconds, micros = divmod(ts_us, 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{micros:06d}Z"


def dec(value: float, places: int) -> str:
    """A decimal string with ``places`` digits that parses back to exactly ``value``."""
    text = f"{value:.{places}f}"
    if float(text) != value:
        raise ValueError(f"{value!r} does not fit {places} decimal places")
    return text


def generate_trades(
    seed: int,
    count: int,
    *,
    start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
    first_id: int = 1,
    price: float = 90_000.0,
    tick: str = "0.01",
    mean_gap_ms: float = 250.0,
    burst: float = 0.3,
    idle_every: int = 400,
    idle_ms: int = 150_000,
) -> list[Trade]:
    """A realistic random trade set, the same for the same arguments.

    Prices walk by ticks; sizes are log-normal with 8 decimals; ``burst`` of the trades
    share the previous trade's millisecond (one taker order filling several makers);
    about every ``idle_every`` trades the market goes quiet for ``idle_ms`` (empty
    minutes); a few trades land in a minute's last millisecond."""
    rng = random.Random(seed)
    step = Decimal(tick)
    level = (Decimal(str(price)) / step).to_integral_value()
    ts = start_ms
    side = "buy"
    trades: list[Trade] = []
    for i in range(count):
        if i:
            if idle_every and rng.random() < 1.0 / idle_every:
                ts += idle_ms + rng.randrange(MINUTE_MS)
            elif rng.random() < burst:
                pass  # same millisecond, same taker side
            elif rng.random() < 0.005:
                ts = (ts // MINUTE_MS + 1) * MINUTE_MS - 1  # a minute's last millisecond
            else:
                ts += 1 + int(rng.expovariate(1.0 / mean_gap_ms))
                side = "buy" if rng.random() < 0.5 else "sell"
            level = max(level + rng.choice((-2, -1, -1, 0, 0, 0, 1, 1, 2)), Decimal(1))
        qty_units = max(1, int(rng.lognormvariate(11.0, 1.5)))  # 1e-8 units, ~0.0006 median
        trades.append(
            Trade(
                trade_id=first_id + i,
                ts=ts,
                price=float(level * step),
                qty=float(Decimal(qty_units).scaleb(-8)),
                side=side,  # type: ignore[arg-type]
            )
        )
    return trades


class Candle(NamedTuple):
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    vwap: float
    buy_volume: float  # taker buys


def reference_candles(trades: Iterable[Trade], *, fill_empty: bool = False) -> list[Candle]:
    """1-minute candles by brute force: bucket by floor(ts/60000)*60000, open = the
    lowest (ts, id) trade, close = the highest. ``fill_empty`` adds the zero-volume
    minutes Binance and Kraken publish (OHLC = previous close, vwap = previous close)."""
    buckets: dict[int, list[Trade]] = defaultdict(list)
    for trade in trades:
        buckets[trade.ts // MINUTE_MS * MINUTE_MS].append(trade)
    candles: list[Candle] = []
    for start in sorted(buckets):
        group = buckets[start]
        first = min(group, key=lambda t: (t.ts, t.trade_id))
        last = max(group, key=lambda t: (t.ts, t.trade_id))
        volume = sum(t.qty for t in group)
        if fill_empty and candles:
            prev = candles[-1]
            for empty in range(prev.start_ms + MINUTE_MS, start, MINUTE_MS):
                c = prev.close
                candles.append(Candle(empty, c, c, c, c, 0.0, 0, c, 0.0))
        candles.append(
            Candle(
                start_ms=start,
                open=first.price,
                high=max(t.price for t in group),
                low=min(t.price for t in group),
                close=last.price,
                volume=volume,
                trades=len(group),
                vwap=sum(t.price * t.qty for t in group) / volume,
                buy_volume=sum(t.qty for t in group if t.side == "buy"),
            )
        )
    return candles
