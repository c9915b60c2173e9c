"""Read-side SQL: candles rolled up from 1-minute candles, latest prices, 24h statistics.

Every read is keyed by the market (source, symbol, quote): Binance BTC/USDT and Coinbase
BTC/USD are two markets with two sets of candles, two latest prices, two rows of stats.
Filters (symbols, source, quote) are all optional. Every query is parameterised.

The roll-up SQL is one template whose only difference between plain PostgreSQL and
TimescaleDB is the bucket function (``date_bin`` or ``time_bucket``), both given the same
UTC origin, so both paths give identical buckets. ``time_bucket`` is called qualified by
the extension's schema, which need not be on the search_path (that holds cryptoctl's
schema only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from weakref import WeakKeyDictionary

from cryptoctl.times import datetime_ms, ms_datetime

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from cryptoctl.exchanges.verify import MinuteCandle
    from cryptoctl.settings import Settings

MINUTE_MS = 60_000
# Interval name -> width in milliseconds. Every width divides a day, so buckets aligned to
# the Unix epoch are aligned to UTC midnight too.
INTERVALS: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}
# Both bucket functions get this origin: a UTC midnight, so every interval is UTC-aligned
# (TimescaleDB's own default origin is a Monday, 2000-01-03; date_bin has none).
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

BucketFunction = Literal["date_bin", "time_bucket"]


class Market(NamedTuple):
    """A market, in the order markets are listed: by symbol, then source, then quote."""

    symbol: str
    source: str
    quote: str

    def __str__(self) -> str:
        return f"{self.source} {self.symbol}/{self.quote}"


@dataclass(frozen=True, slots=True)
class CandleRow:
    """One stored candle of one market as read back (1m, or rolled up from 1m in SQL)."""

    source: str
    symbol: str
    quote: str
    interval: str
    bucket_ms: int  # window start, epoch ms UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    avg: float | None
    vwap: float | None  # None when volume is 0
    final: bool
    complete: bool = True  # False: a recorded feed gap (feed_gaps) touches one of its minutes

    @property
    def market(self) -> Market:
        return Market(self.symbol, self.source, self.quote)


@dataclass(frozen=True, slots=True)
class LatestPrice:
    symbol: str
    price: float
    time_ms: int | None  # event time of the price, when known
    origin: str  # where it was read: "redis" or "postgres"
    source: str | None = None  # the tick source (coingecko, synthetic, ...), when known
    quote: str | None = None  # the market's quote currency, when known


@dataclass(frozen=True, slots=True)
class Stats24h:
    source: str
    symbol: str
    quote: str
    open: float
    high: float
    low: float
    last: float
    change_pct: float | None
    volume: float
    trades: int
    first_bucket_ms: int
    last_bucket_ms: int


def interval_ms(name: str) -> int:
    """``"5m"`` -> 300000; ValueError naming the choices otherwise."""
    try:
        return INTERVALS[name]
    except KeyError:
        choices = ", ".join(INTERVALS)
        raise ValueError(f"invalid interval {name!r}: use one of {choices}") from None


def bucket_range(since_ms: int, until_ms: int, width_ms: int) -> tuple[int, int]:
    """The 1-minute buckets to read for candles starting in [since, until).

    ``since`` is rounded down to its interval's start, so the first candle is whole; the
    end is rounded up, so a candle that starts before ``until`` is whole too.
    """
    start = since_ms - since_ms % width_ms
    end = -(-until_ms // width_ms) * width_ms
    return start, end


def bucket_expression(function: BucketFunction, ext_schema: str | None = None) -> sql.Composable:
    """The SQL that maps a 1-minute ``bucket`` to the start of its roll-up bucket.

    ``ext_schema`` qualifies ``time_bucket``: TimescaleDB's schema (quoted as needed).
    """
    from psycopg import sql

    args = sql.SQL("(%(width)s::interval, bucket, %(origin)s::timestamptz)")
    if function == "date_bin":
        return sql.SQL("date_bin") + args
    if function == "time_bucket":
        name = sql.Identifier(ext_schema, "time_bucket") if ext_schema else sql.SQL("time_bucket")
        return name + args
    raise ValueError(f"unknown bucket function {function!r}")


# Per market: open of the first 1m candle, close of the last (ties broken by the event time
# of the open/close tick), max/min, sums; avg and VWAP re-weighted from the stored sums.
# A 1m candle is incomplete when a feed gap of its market overlaps its minute (the missing
# trades lie between after_time and before_time); a rolled-up one when any minute is.
_ROLLUP = """
WITH minutes AS (
    SELECT c.*,
           NOT EXISTS (SELECT 1 FROM feed_gaps g
                       WHERE g.source = c.source AND g.symbol = c.symbol AND g.quote = c.quote
                         AND g.after_time < c.bucket + interval '1 minute'
                         AND g.before_time >= c.bucket) AS complete
    FROM price_aggregates_1m c
    WHERE c.bucket >= %(start)s AND c.bucket < %(end)s
      AND (%(symbols)s::text[] IS NULL OR c.symbol = ANY(%(symbols)s::text[]))
      AND (%(source)s::text IS NULL OR lower(c.source) = lower(%(source)s::text))
      AND (%(quote)s::text IS NULL OR c.quote = %(quote)s::text)
)
SELECT source, symbol, quote,
       {bucket} AS rollup_bucket,
       (array_agg(open ORDER BY bucket ASC, open_time ASC))[1]     AS open,
       max(high)                                                  AS high,
       min(low)                                                   AS low,
       (array_agg(close ORDER BY bucket DESC, close_time DESC))[1] AS close,
       sum(volume)                                                AS volume,
       sum(trades)                                                AS trades,
       sum(price_sum) / nullif(sum(trades), 0)                    AS avg,
       CASE WHEN sum(volume) > 0 THEN sum(pv_sum) / sum(volume) END AS vwap,
       bool_and(final)                                            AS final,
       bool_and(complete)                                         AS complete
FROM minutes
GROUP BY source, symbol, quote, rollup_bucket
ORDER BY rollup_bucket, symbol, source, quote
"""


def rollup_sql(function: BucketFunction, ext_schema: str | None = None) -> sql.Composed:
    from psycopg import sql

    return sql.SQL(_ROLLUP).format(bucket=bucket_expression(function, ext_schema))


def market_params(
    symbols: Sequence[str] | None, source: str | None, quote: str | None
) -> dict[str, Any]:
    """The market filter of every read: symbols and quote upper-case (as stored), the
    source matched without regard to case; None means any."""
    return {
        "symbols": [s.upper() for s in symbols] if symbols else None,
        "source": source or None,
        "quote": quote.upper() if quote else None,
    }


def rollup_params(
    interval: str,
    since_ms: int,
    until_ms: int,
    symbols: Sequence[str] | None,
    source: str | None = None,
    quote: str | None = None,
) -> dict[str, Any]:
    width = interval_ms(interval)
    start, end = bucket_range(since_ms, until_ms, width)
    return {
        "width": timedelta(milliseconds=width),
        "origin": ORIGIN,
        "start": ms_datetime(start),
        "end": ms_datetime(end),
    } | market_params(symbols, source, quote)


def _candle(row: Sequence[Any], interval: str) -> CandleRow:
    (source, symbol, quote, bucket, open_, high, low, close, volume, trades, avg, vwap, final,
     complete) = row
    return CandleRow(
        source=source,
        symbol=symbol,
        quote=quote,
        interval=interval,
        bucket_ms=datetime_ms(bucket),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=float(volume),
        trades=int(trades),
        avg=avg,
        vwap=vwap,
        final=bool(final),
        complete=bool(complete),
    )


# TimescaleDB's schema per connection, looked up once (None: no extension).
_EXT_SCHEMAS: WeakKeyDictionary[Any, str | None] = WeakKeyDictionary()


def _timescale_schema(conn: psycopg.Connection[Any]) -> str | None:
    from cryptoctl.db.connection import timescale_schema

    if conn not in _EXT_SCHEMAS:
        _EXT_SCHEMAS[conn] = timescale_schema(conn)
    return _EXT_SCHEMAS[conn]


def fetch_candles(
    conn: psycopg.Connection[Any],
    *,
    interval: str,
    since_ms: int,
    until_ms: int,
    symbols: Sequence[str] | None = None,
    source: str | None = None,
    quote: str | None = None,
    function: BucketFunction | None = None,
) -> list[CandleRow]:
    """Candles of ``interval`` starting in [since, until), per market: oldest first, then
    by symbol, source and quote.

    ``function`` defaults to ``time_bucket`` when TimescaleDB is installed, else ``date_bin``.
    """
    ext_schema = _timescale_schema(conn)
    if function is None:
        function = "time_bucket" if ext_schema is not None else "date_bin"
    params = rollup_params(interval, since_ms, until_ms, symbols, source, quote)
    rows = conn.execute(rollup_sql(function, ext_schema), params).fetchall()
    return [_candle(row, interval) for row in rows]


_MARKET_FILTER = """
WHERE (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))
  AND (%(source)s::text IS NULL OR lower(source) = lower(%(source)s::text))
  AND (%(quote)s::text IS NULL OR quote = %(quote)s::text)
ORDER BY symbol, source, quote
"""

_LATEST = "SELECT source, symbol, quote, price, time FROM v_latest_prices" + _MARKET_FILTER


def fetch_latest_prices(
    conn: psycopg.Connection[Any],
    symbols: Sequence[str] | None = None,
    *,
    source: str | None = None,
    quote: str | None = None,
) -> list[LatestPrice]:
    """The latest price of each market (its newest candle's close), by market."""
    rows = conn.execute(_LATEST, market_params(symbols, source, quote)).fetchall()
    return [
        LatestPrice(sym, price, datetime_ms(time), "postgres", source=src, quote=quo)
        for src, sym, quo, price, time in rows
    ]


_STATS = (
    "SELECT source, symbol, quote, open, high, low, last, change_pct, volume, trades,"
    " first_bucket, last_bucket FROM v_price_stats_24h" + _MARKET_FILTER
)


def fetch_stats_24h(
    conn: psycopg.Connection[Any],
    symbols: Sequence[str] | None = None,
    *,
    source: str | None = None,
    quote: str | None = None,
) -> list[Stats24h]:
    """24-hour statistics of each market with candles in the last 24 hours, by market."""
    rows = conn.execute(_STATS, market_params(symbols, source, quote)).fetchall()
    return [
        Stats24h(
            source=r[0],
            symbol=r[1],
            quote=r[2],
            open=r[3],
            high=r[4],
            low=r[5],
            last=r[6],
            change_pct=r[7],
            volume=float(r[8]),
            trades=int(r[9]),
            first_bucket_ms=datetime_ms(r[10]),
            last_bucket_ms=datetime_ms(r[11]),
        )
        for r in rows
    ]


def load_candles(
    settings: Settings,
    *,
    interval: str,
    since_ms: int,
    until_ms: int,
    symbols: Sequence[str] | None = None,
    source: str | None = None,
    quote: str | None = None,
) -> list[CandleRow]:
    """Connect with ``settings`` and fetch candles (see :func:`fetch_candles`)."""
    from cryptoctl.db.connection import session

    with session(settings, "reading candles") as conn:
        return fetch_candles(
            conn, interval=interval, since_ms=since_ms, until_ms=until_ms, symbols=symbols,
            source=source, quote=quote,
        )  # fmt: skip


def load_latest_prices(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    *,
    source: str | None = None,
    quote: str | None = None,
) -> list[LatestPrice]:
    from cryptoctl.db.connection import session

    with session(settings, "reading latest prices") as conn:
        return fetch_latest_prices(conn, symbols, source=source, quote=quote)


def load_stats_24h(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    *,
    source: str | None = None,
    quote: str | None = None,
) -> list[Stats24h]:
    from cryptoctl.db.connection import session

    with session(settings, "reading 24h statistics") as conn:
        return fetch_stats_24h(conn, symbols, source=source, quote=quote)


def stored_candle_counts(settings: Settings) -> tuple[int, int]:
    """(candles, final candles) stored in PostgreSQL, for `run`'s summary."""
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE final) FROM price_aggregates_1m"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# --- verify: one market's stored 1-minute candles and recorded gaps ----------------------

_MINUTES = """
SELECT bucket, open, high, low, close, volume, trades, vwap
FROM price_aggregates_1m
WHERE source = %(source)s AND symbol = %(symbol)s AND quote = %(quote)s
  AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
"""

_GAPS = """
SELECT after_time, before_time
FROM feed_gaps
WHERE source = %(source)s AND symbol = %(symbol)s AND quote = %(quote)s
  AND after_time < %(end)s AND before_time >= %(start)s
ORDER BY after_time
"""


def _market_params(source: str, symbol: str, quote: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return {
        "source": source,
        "symbol": symbol.upper(),
        "quote": quote.upper(),
        "start": ms_datetime(start_ms),
        "end": ms_datetime(end_ms),
    }


def stored_minutes(
    settings: Settings, source: str, symbol: str, quote: str, start_ms: int, end_ms: int
) -> list[MinuteCandle]:
    """One market's stored 1-minute candles with bucket in [start, end), oldest first."""
    from cryptoctl.db.connection import session
    from cryptoctl.exchanges.verify import MinuteCandle

    params = _market_params(source, symbol, quote, start_ms, end_ms)
    with session(settings, "reading candles to verify") as conn:
        rows = conn.execute(_MINUTES, params).fetchall()
    return [
        MinuteCandle(datetime_ms(b), o, h, low, c, float(v), int(n), vwap)
        for b, o, h, low, c, v, n, vwap in rows
    ]


def recorded_gaps(
    settings: Settings, source: str, symbol: str, quote: str, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """One market's recorded feed gaps touching [start, end), as (after, before) epoch ms."""
    from cryptoctl.db.connection import session

    params = _market_params(source, symbol, quote, start_ms, end_ms)
    with session(settings, "reading recorded feed gaps") as conn:
        rows = conn.execute(_GAPS, params).fetchall()
    return [(datetime_ms(after), datetime_ms(before)) for after, before in rows]
