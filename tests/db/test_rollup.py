"""Roll-ups: an N-minute candle from SQL equals aggregating its ticks directly.

1-minute candles are built from generated ticks of several markets (three of them BTC:
binance BTC/USDT, coinbase BTC/USD, coingecko BTC/USD) with a small reference, stored in
a fresh schema with generated feed gaps, rolled up by the SQL of ``cryptoctl candles``,
and compared with a brute-force aggregation of the same ticks into N-minute buckets per
market, the complete flag with a brute-force reading of the gaps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cryptoctl.db.connection import connect, timescale_available
from cryptoctl.db.queries import (
    INTERVALS,
    MINUTE_MS,
    bucket_range,
    fetch_candles,
    rollup_sql,
)
from cryptoctl.settings import Settings

DAY0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# A market as stored: (source, symbol, quote).
MarketTuple = tuple[str, str, str]
BINANCE_BTC: MarketTuple = ("binance", "BTC", "USDT")
COINBASE_BTC: MarketTuple = ("coinbase", "BTC", "USD")
COINGECKO_BTC: MarketTuple = ("coingecko", "BTC", "USD")
COINBASE_ETH: MarketTuple = ("coinbase", "ETH", "USD")
MARKETS = [BINANCE_BTC, COINBASE_BTC, COINGECKO_BTC, COINBASE_ETH]
TWO_DAYS = 2 * 86_400_000

# A tick as the windows take it, in arrival order: (market, ts, price, qty).
WindowTick = tuple[MarketTuple, int, float, float | None]
# A recorded feed gap: (market, after_ms, before_ms), the times of the trades around it.
Gap = tuple[MarketTuple, int, int]

ticks_strategy = st.lists(
    st.tuples(
        st.sampled_from(MARKETS),
        st.integers(0, 2 * 86_400_000 - 1),  # two days, so 1d and 4h buckets have several
        st.floats(0.5, 1000.0, allow_nan=False, allow_infinity=False).map(lambda p: round(p, 4)),
        st.one_of(st.none(), st.floats(0.0, 5.0).map(lambda q: round(q, 3))),
    ),
    min_size=1,
    max_size=60,
)

gaps_strategy = st.lists(
    st.tuples(st.sampled_from(MARKETS), st.integers(0, TWO_DAYS - 1), st.integers(0, 10 * MINUTE_MS)).map(
        lambda g: (g[0], g[1], min(TWO_DAYS - 1, g[1] + g[2]))
    ),
    max_size=3,
)

# Market filters of `candles`: (symbols, source, quote); the source matched without regard
# to case, the quote given in any case.
filters_strategy = st.sampled_from(
    [
        (None, None, None),
        (["BTC"], None, None),
        (["ETH", "BTC"], None, None),
        (["BTC"], "Coinbase", None),
        (None, None, "usd"),
        (["BTC"], "binance", "USDT"),
        (None, "coingecko", "USDT"),  # no such market
    ]
)
Filters = tuple[list[str] | None, str | None, str | None]


def rollup_cases(max_examples: int) -> Callable[[Callable[..., None]], Any]:
    """The property test of a rollup: random ticks, final flags, interval, filters and gaps
    (the arguments ``ticks, finals, interval, filters, gaps`` after the fixture)."""

    def decorate(test: Callable[..., None]) -> Any:
        cases = given(
            ticks=ticks_strategy,
            finals=st.lists(st.booleans(), max_size=60),
            interval=st.sampled_from(list(INTERVALS)),
            filters=filters_strategy,
            gaps=gaps_strategy,
        )
        return hsettings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )(cases(test))

    return decorate


def selected(market: MarketTuple, filters: Filters) -> bool:
    symbols, source, quote = filters
    return (
        (not symbols or market[1] in symbols)
        and (source is None or market[0] == source.lower())
        and (quote is None or market[2] == quote.upper())
    )


def minute_complete(market: MarketTuple, minute_ms: int, gaps: Iterable[Gap]) -> bool:
    """Brute force: no gap of the market has its missing trades in [minute, minute + 1m]."""
    return not any(
        g[0] == market and g[1] < minute_ms + MINUTE_MS and g[2] >= minute_ms for g in gaps
    )


def aggregate(ticks: Sequence[WindowTick], width_ms: int) -> dict[tuple[MarketTuple, int], dict[str, Any]]:
    """Brute force: OHLC of ticks grouped by (market, floor(ts / width)).

    open = earliest ts (ties: first in arrival order); close = latest ts (ties: last).
    """
    groups: dict[tuple[MarketTuple, int], list[tuple[int, WindowTick]]] = defaultdict(list)
    for order, t in enumerate(ticks):
        groups[(t[0], t[1] - t[1] % width_ms)].append((order, t))
    out = {}
    for key, items in groups.items():
        first = min(items, key=lambda it: (it[1][1], it[0]))[1]
        last = max(items, key=lambda it: (it[1][1], it[0]))[1]
        prices = [t[2] for _, t in items]
        volume = sum(t[3] or 0.0 for _, t in items)
        pv = sum(t[2] * (t[3] or 0.0) for _, t in items)
        out[key] = {
            "open": first[2],
            "close": last[2],
            "high": max(prices),
            "low": min(prices),
            "volume": volume,
            "trades": len(items),
            "avg": sum(prices) / len(items),
            "vwap": pv / volume if volume > 0 else None,
        }
    return out


def store_minutes(
    conn: Any, ticks: Sequence[WindowTick], finals: Iterable[bool], gaps: Sequence[Gap] = ()
) -> dict:
    """1-minute candles of the ticks, inserted with full state, and the feed gaps; returns
    final per candle."""
    ts_of: dict[tuple[MarketTuple, int], list[tuple[int, WindowTick]]] = defaultdict(list)
    for order, t in enumerate(ticks):
        ts_of[(t[0], t[1] - t[1] % MINUTE_MS)].append((order, t))
    minutes = aggregate(ticks, MINUTE_MS)
    final_of = dict(zip(sorted(minutes), finals, strict=False))
    rows = []
    for key, c in minutes.items():
        items = ts_of[key]
        open_ts = min(it[1][1] for it in items)
        close_ts = max(it[1][1] for it in items)
        price_sum = sum(t[2] for _, t in items)
        pv_sum = sum(t[2] * (t[3] or 0.0) for _, t in items)
        rows.append(
            (
                *key[0],
                dt(DAY0 + key[1]),
                c["open"],
                c["high"],
                c["low"],
                c["close"],
                c["volume"],
                c["trades"],
                price_sum,
                pv_sum,
                c["avg"],
                c["vwap"],
                dt(DAY0 + open_ts),
                dt(DAY0 + close_ts),
                final_of.get(key, True),
            )
        )
    conn.execute("DELETE FROM price_aggregates_1m")
    conn.execute("DELETE FROM feed_gaps")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low,"
            " close, volume, trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time,"
            " final) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        cur.executemany(
            "INSERT INTO feed_gaps (source, symbol, quote, first_trade_id, last_trade_id,"
            " after_time, before_time, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, 'test')",
            [(*m, 10 * i + 1, 10 * i + 5, dt(DAY0 + a), dt(DAY0 + b)) for i, (m, a, b) in enumerate(gaps)],
        )
    return {key: final_of.get(key, True) for key in minutes}


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_rollup(
    conn: Any,
    ticks: Sequence[WindowTick],
    finals: list[bool],
    interval: str,
    filters: Filters,
    function: Any,
    gaps: Sequence[Gap] = (),
) -> None:
    final_minutes = store_minutes(conn, ticks, finals, gaps)
    width = INTERVALS[interval]
    symbols, source, quote = filters
    got = fetch_candles(
        conn,
        interval=interval,
        since_ms=DAY0,
        until_ms=DAY0 + TWO_DAYS,
        symbols=symbols,
        source=source,
        quote=quote,
        function=function,
    )
    wanted = {k: v for k, v in aggregate(ticks, width).items() if selected(k[0], filters)}
    order = sorted(wanted, key=lambda k: (k[1], k[0][1], k[0][0], k[0][2]))  # bucket, symbol, source, quote
    assert [((c.source, c.symbol, c.quote), c.bucket_ms - DAY0) for c in got] == order
    for c in got:
        market = (c.source, c.symbol, c.quote)
        ref = wanted[(market, c.bucket_ms - DAY0)]
        assert (c.open, c.close, c.high, c.low, c.trades) == (
            ref["open"],
            ref["close"],
            ref["high"],
            ref["low"],
            ref["trades"],
        )
        assert close(c.volume, ref["volume"]) and close(c.avg, ref["avg"])
        assert close(c.vwap, ref["vwap"]), (c.vwap, ref["vwap"])
        assert c.interval == interval and c.bucket_ms % width == 0  # UTC-aligned
        start = c.bucket_ms - DAY0
        minutes = {m: f for (mk, m), f in final_minutes.items() if mk == market and m - m % width == start}
        assert c.final == all(minutes.values())
        assert c.complete == all(minute_complete(market, m, gaps) for m in minutes)


@pytest.fixture
def conn(settings: Settings) -> Any:
    with connect(settings, autocommit=True) as connection:
        yield connection


def bucket_functions(conn: Any) -> list[str]:
    # time_bucket exists only with TimescaleDB (not on the local stack); date_bin always.
    return ["date_bin", "time_bucket"] if timescale_available(conn) else ["date_bin"]


@rollup_cases(max_examples=60)
def test_rollup_equals_direct_aggregation(
    conn: Any, ticks: list[WindowTick], finals: list[bool], interval: str, filters: Filters,
    gaps: list[Gap],
) -> None:
    for function in bucket_functions(conn):
        check_rollup(conn, ticks, finals, interval, filters, function, gaps)


def test_ties_on_open_and_close_time_use_the_candle_order(conn: Any) -> None:
    # Two ticks at the same ms: open is the first, close the last (arrival order).
    ticks: list[WindowTick] = [
        (BINANCE_BTC, 5_000, 10.0, 1.0),
        (BINANCE_BTC, 5_000, 11.0, 1.0),
        (BINANCE_BTC, 61_000, 12.0, None),
        (BINANCE_BTC, 61_000, 9.0, None),
    ]
    for function in bucket_functions(conn):
        check_rollup(conn, ticks, [True, False], "5m", (None, None, None), function)


def test_three_markets_of_one_symbol_are_three_candle_sets(conn: Any) -> None:
    # The same minute in three BTC markets: three candles, never one merged candle.
    ticks: list[WindowTick] = [
        (COINGECKO_BTC, 1_000, 100.0, None),
        (BINANCE_BTC, 2_000, 101.0, 1.0),
        (COINBASE_BTC, 3_000, 99.0, 2.0),
        (BINANCE_BTC, 4_000, 103.0, 1.0),
    ]
    store_minutes(conn, ticks, [True] * 3)
    got = fetch_candles(conn, interval="1m", since_ms=DAY0, until_ms=DAY0 + MINUTE_MS, symbols=["BTC"])
    assert [(c.source, c.quote, c.open, c.close, c.trades) for c in got] == [
        ("binance", "USDT", 101.0, 103.0, 2),
        ("coinbase", "USD", 99.0, 99.0, 1),
        ("coingecko", "USD", 100.0, 100.0, 1),
    ]


def test_a_gap_marks_its_minutes_and_their_rollup_incomplete(conn: Any) -> None:
    # binance trades at 00:00:30 and 00:02:10 with ids missing between: minutes 0, 1 and 2
    # of binance are incomplete (minute 1 has no candle: no trade came); coinbase is not.
    ticks: list[WindowTick] = [
        (BINANCE_BTC, m * MINUTE_MS + 30_000, 100.0 + m, 1.0) for m in (0, 2, 3, 7)
    ] + [(COINBASE_BTC, m * MINUTE_MS + 30_000, 200.0, 1.0) for m in (0, 2)]
    gaps: list[Gap] = [(BINANCE_BTC, 30_000, 2 * MINUTE_MS + 10_000)]
    store_minutes(conn, ticks, [True] * 6, gaps)
    window = {"since_ms": DAY0, "until_ms": DAY0 + 10 * MINUTE_MS}
    minutes = fetch_candles(conn, interval="1m", source="binance", **window)
    assert [((c.bucket_ms - DAY0) // MINUTE_MS, c.complete) for c in minutes] == [
        (0, False), (2, False), (3, True), (7, True)]
    rolled = fetch_candles(conn, interval="5m", **window)
    assert [(c.source, (c.bucket_ms - DAY0) // MINUTE_MS, c.complete) for c in rolled] == [
        ("binance", 0, False), ("coinbase", 0, True), ("binance", 5, True)]
    for function in bucket_functions(conn):
        check_rollup(conn, ticks, [True] * 6, "5m", (None, None, None), function, gaps)


def test_sql_paths_differ_only_in_bucket_function() -> None:
    date_bin, time_bucket = rollup_sql("date_bin").as_string(), rollup_sql("time_bucket").as_string()
    assert "date_bin(%(width)s::interval, bucket, %(origin)s::timestamptz)" in date_bin
    assert date_bin.replace("date_bin(", "time_bucket(") == time_bucket
    # qualified by TimescaleDB's schema, quoted as needed
    qualified = rollup_sql("time_bucket", 'Ts "x"').as_string()
    assert date_bin.replace("date_bin(", '"Ts ""x"""."time_bucket"(') == qualified


def test_timescale_path_chosen_when_extension_present() -> None:
    class FakeConn:
        def __init__(self, timescale: bool) -> None:
            self.timescale, self.sql, self.lookups = timescale, "", 0

        def execute(self, sql: Any, params: Any = None) -> Any:
            text = sql if isinstance(sql, str) else sql.as_string()
            if "pg_extension" in text:
                self.lookups += 1
                return _Rows([("tsdb_ext",)] if self.timescale else [])
            self.sql = text
            return _Rows([])

    for timescale, name in ((True, '"tsdb_ext"."time_bucket"('), (False, " date_bin(")):
        fake = FakeConn(timescale)
        for _ in range(2):
            fetch_candles(fake, interval="1h", since_ms=DAY0, until_ms=DAY0 + 1)  # type: ignore[arg-type]
        assert name in fake.sql
        assert fake.lookups == 1  # once per connection


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


def test_bucket_range_whole_candles() -> None:
    hour = INTERVALS["1h"]
    assert bucket_range(DAY0 + 90 * MINUTE_MS, DAY0 + 150 * MINUTE_MS, hour) == (
        DAY0 + hour,
        DAY0 + 3 * hour,
    )
    assert bucket_range(DAY0, DAY0 + hour, hour) == (DAY0, DAY0 + hour)
