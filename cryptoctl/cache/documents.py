"""The documents of the Redis cache: one type per kind of value, shared by writer and reader.

The writer (cryptoctl/cache/writer.py) stores ``to_json()`` of these, and publishes the
candle document on the candle channel; the reader parses them back with ``from_json``,
which returns None for anything the writer does not write (a hash, a bare number, a
field of another type, a time outside the range of tick times), so a foreign key is
skipped rather than guessed at. Times are epoch milliseconds. ``source`` and ``quote``
name the market where it is known (None until candles are keyed by market); a document
without them, as older releases wrote it, reads as None for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from cryptoctl.tick import MAX_TS_MS, MIN_TS_MS

if TYPE_CHECKING:
    from cryptoctl.windows import Candle

CANDLE_STATES = ("open", "closed", "final")
_new = tuple.__new__


def _int(value: Any) -> bool:
    return type(value) is int


def _time(value: Any) -> bool:
    """Epoch ms within the range a tick may have (so any clock can show it)."""
    return type(value) is int and MIN_TS_MS <= value <= MAX_TS_MS


def _num(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _object(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


class CandleDoc(NamedTuple):
    """A 1-minute candle as cached (``candle:current:``/``candle:final:``) and published."""

    symbol: str
    bucket_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    avg: float
    vwap: float | None
    open_ts: int
    close_ts: int
    state: str  # "open", "closed" (the watermark passed its end, still updatable), "final"
    final: bool
    source: str | None = None
    quote: str | None = None

    @classmethod
    def from_candle(cls, c: Candle, *, closed: bool) -> CandleDoc:
        state = "final" if c.final else ("closed" if closed else "open")
        # tuple.__new__: the generated __new__ (a Python function) costs half as much again,
        # once per candle of every flush.
        return _new(cls, (
            c.symbol, c.bucket, c.open, c.high, c.low, c.close, c.volume, c.trades, c.avg,
            c.vwap, c.open_ts, c.close_ts, state, c.final, c.source, c.quote,
        ))  # fmt: skip

    def to_json(self) -> bytes:
        """The fields in declaration order, as an object (a dict literal: the fastest way
        to one, and this runs for every candle of every flush)."""
        sym, bucket, o, h, lo, c, vol, n, avg, vwap, open_ts, close_ts, state, final, src, q = self
        return orjson.dumps({
            "symbol": sym, "bucket_ms": bucket, "open": o, "high": h, "low": lo, "close": c,
            "volume": vol, "trades": n, "avg": avg, "vwap": vwap, "open_ts": open_ts,
            "close_ts": close_ts, "state": state, "final": final, "source": src, "quote": q,
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> CandleDoc | None:
        d = _object(raw)
        if d is None:
            return None
        try:
            doc = cls(
                d["symbol"], d["bucket_ms"], d["open"], d["high"], d["low"], d["close"],
                d["volume"], d["trades"], d["avg"], d["vwap"], d["open_ts"], d["close_ts"],
                d["state"], d["final"], d.get("source"), d.get("quote"),
            )
        except KeyError:
            return None
        ok = (
            type(doc.symbol) is str
            and _int(doc.trades)
            and all(_time(v) for v in (doc.bucket_ms, doc.open_ts, doc.close_ts))
            and all(_num(v) for v in (doc.open, doc.high, doc.low, doc.close, doc.volume, doc.avg))
            and (doc.vwap is None or _num(doc.vwap))
            and doc.state in CANDLE_STATES
            and type(doc.final) is bool
            and _opt_str(doc.source)
            and _opt_str(doc.quote)
        )
        return doc if ok else None


class LatestDoc(NamedTuple):
    """The latest price of a symbol (``latest:``): the close of its newest open candle."""

    symbol: str
    price: float
    ts: int  # event time of the price
    source: str | None = None
    quote: str | None = None

    @classmethod
    def of_candle(cls, c: CandleDoc) -> LatestDoc:
        return _new(cls, (c.symbol, c.close, c.close_ts, c.source, c.quote))

    def to_json(self) -> bytes:
        sym, price, ts, src, q = self
        return orjson.dumps({"symbol": sym, "price": price, "ts": ts, "source": src, "quote": q})

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> LatestDoc | None:
        d = _object(raw)
        if d is None:
            return None
        try:
            doc = cls(d["symbol"], d["price"], d["ts"], d.get("source"), d.get("quote"))
        except KeyError:
            return None
        ok = (
            type(doc.symbol) is str and _num(doc.price) and _time(doc.ts)
            and _opt_str(doc.source) and _opt_str(doc.quote)
        )
        return doc if ok else None
