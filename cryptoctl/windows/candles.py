"""One-minute event-time candles and the per-partition watermark (DESIGN.md, "Candles").

Pure and deterministic: event times in, candles out. No clock, no broker. The consumer
loop feeds ticks in partition order and tells :meth:`PartitionWindows.advance_idle` how
much wall-clock time passed; everything else follows from the event times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

WIDTH_MS = 60_000
# "No watermark yet": lower than any event time, so nothing is late before the first tick.
NO_WATERMARK = -(1 << 62)


@dataclass(slots=True, eq=False)
class Candle:
    """Full state of one window of one market: enough to continue it exactly after a
    restart. The market is (source, symbol, quote); source and quote come last so that
    the window logic reads as it always did (a market of one source and quote)."""

    symbol: str
    bucket: int  # window start, epoch ms, UTC-aligned
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    price_sum: float
    pv_sum: float
    open_ts: int  # event time of the open tick (ties: lowest trade id, else first in partition order)
    close_ts: int  # event time of the close tick (ties: highest trade id, else last)
    final: bool = False
    dirty: bool = True  # changed since the last flush
    source: str = ""
    quote: str = "USD"
    open_tid: int | None = None  # trade id of the open tick (exchange trades)
    close_tid: int | None = None  # trade id of the close tick

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Where :class:`PartitionWindows` keeps it: (symbol, source, quote, bucket)."""
        return (self.symbol, self.source, self.quote, self.bucket)

    @property
    def avg(self) -> float:
        return self.price_sum / self.trades

    @property
    def vwap(self) -> float | None:
        return self.pv_sum / self.volume if self.volume > 0 else None

    def state(self) -> tuple[object, ...]:
        """The comparable value of the candle (used by tests and the flush snapshot)."""
        return (
            self.symbol, self.bucket, self.open, self.high, self.low, self.close,
            self.volume, self.trades, self.price_sum, self.pv_sum, self.open_ts,
            self.close_ts, self.final, self.source, self.quote, self.open_tid, self.close_tid,
        )


def new_candle(
    symbol: str, bucket: int, ts: int, price: float, qty: float | None,
    source: str = "", quote: str = "USD", tid: int | None = None,
) -> Candle:
    q = qty or 0.0
    return Candle(
        symbol, bucket, price, price, price, price, q, 1, price, price * q, ts, ts,
        False, True, source, quote, tid, tid,
    )


class PartitionWindows:
    """The open windows and the watermark of one Kafka partition.

    A window ``[start, end)`` is open while ``watermark < end`` and updatable until
    ``watermark >= end + lateness``; then it is final: emitted once by :meth:`finalize`
    and forgotten. A tick for a final window is late and is not applied.
    """

    __slots__ = ("announced", "candles", "delay", "lateness", "max_ts", "watermark", "width")

    def __init__(
        self,
        delay_ms: int,
        lateness_ms: int,
        *,
        width_ms: int = WIDTH_MS,
        watermark: int | None = None,
        candles: Iterable[Candle] = (),
    ) -> None:
        self.delay = delay_ms
        self.lateness = lateness_ms
        self.width = width_ms
        self.watermark = NO_WATERMARK if watermark is None else watermark
        # A restored partition has no ticks yet: assume its newest tick made the watermark,
        # so the idle rule can still close its windows when nothing more arrives.
        self.max_ts = NO_WATERMARK if watermark is None else watermark + delay_ms
        self.candles: dict[tuple[str, str, str, int], Candle] = {c.key: c for c in candles}
        self.announced = NO_WATERMARK  # the watermark take_newly_closed last looked at

    def add(
        self, symbol: str, ts: int, price: float, qty: float | None,
        source: str = "", quote: str = "USD", tid: int | None = None,
    ) -> bool:
        """Apply one tick of the market (source, symbol, quote); False when it is late (its
        window is already final). ``tid``, an exchange's trade id, breaks open/close ties
        on one millisecond; without it partition order does."""
        if ts > self.max_ts:
            self.max_ts = ts
            if ts - self.delay > self.watermark:
                self.watermark = ts - self.delay
        bucket = ts - ts % self.width
        if bucket + self.width + self.lateness <= self.watermark:
            return False
        key = (symbol, source, quote, bucket)
        c = self.candles.get(key)
        if c is None:
            self.candles[key] = new_candle(symbol, bucket, ts, price, qty, source, quote, tid)
            return True
        # Inlined rather than a Candle method: this runs once per tick. A tie compares trade
        # ids only where both ticks have one.
        if ts < c.open_ts or (
            ts == c.open_ts and tid is not None and c.open_tid is not None and tid < c.open_tid
        ):
            c.open, c.open_ts, c.open_tid = price, ts, tid
        if ts > c.close_ts or (
            ts == c.close_ts and (tid is None or c.close_tid is None or tid >= c.close_tid)
        ):
            c.close, c.close_ts, c.close_tid = price, ts, tid
        if price > c.high:
            c.high = price
        elif price < c.low:
            c.low = price
        c.trades += 1
        c.price_sum += price
        if qty:
            c.volume += qty
            c.pv_sum += price * qty
        c.dirty = True
        return True

    def advance_idle(self, idle_ms: int) -> None:
        """The idle rule: ``idle_ms`` of wall time passed since this partition's last tick.

        The watermark moves as if the newest tick had been that much later, never further:
        a replay of old data is not turned late, and quiet symbols still close.
        """
        if idle_ms > 0 and self.max_ts != NO_WATERMARK:
            wm = self.max_ts - self.delay + idle_ms
            if wm > self.watermark:
                self.watermark = wm

    def is_late(self, ts: int) -> bool:
        return ts - ts % self.width + self.width + self.lateness <= self.watermark

    def finalize(self) -> list[Candle]:
        """Windows the watermark has passed by ``lateness``: marked final, removed, returned."""
        limit = self.watermark - self.lateness - self.width
        done = [c for c in self.candles.values() if c.bucket <= limit]
        for c in done:
            c.final = True
            c.dirty = True
            del self.candles[c.key]
        return done

    def take_dirty(self) -> list[Candle]:
        """Open candles changed since the last call; their dirty flag is cleared."""
        out = [c for c in self.candles.values() if c.dirty]
        for c in out:
            c.dirty = False
        return out

    def take_newly_closed(self) -> list[Candle]:
        """Unchanged candles the watermark closed since the last call (their stored state
        is current; only their open/closed state moved)."""
        if self.watermark == self.announced:
            return []
        low, high, width = self.announced, self.watermark, self.width
        self.announced = high
        return [
            c for c in self.candles.values()
            if not c.dirty and low < c.bucket + width <= high
        ]

    def is_closed(self, c: Candle) -> bool:
        """Open for new ticks no longer (watermark >= end), though still updatable."""
        return self.watermark >= c.bucket + self.width
