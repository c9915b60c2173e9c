"""Roll-ups: an N-minute candle from SQL equals aggregating its ticks directly.

1-minute candles are built from generated ticks with a small reference, stored in a fresh
schema, rolled up by the SQL of ``cryptoctl candles``, and compared with a brute-force
aggregation of the same ticks into N-minute buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
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


# (symbol, ts, price, qty) in arrival order
# A tick as the windows take it: (symbol, ts, price, qty).
WindowTick = tuple[str, int, float, float | None]

ticks_strategy = st.lists(
    st.tuples(
        st.sampled_from(["BTC", "ETH"]),
        st.integers(0, 2 * 86_400_000 - 1),  # two days, so 1d and 4h buckets have several
        st.floats(0.5, 1000.0, allow_nan=False, allow_infinity=False).map(lambda p: round(p, 4)),
        st.one_of(st.none(), st.floats(0.0, 5.0).map(lambda q: round(q, 3))),
    ),
    min_size=1,
    max_size=60,
)


def aggregate(ticks: Sequence[WindowTick], width_ms: int) -> dict[tuple[str, int], dict[str, Any]]:
    """Brute force: OHLC of ticks grouped by (symbol, floor(ts / width)).

    open = earliest ts (ties: first in arrival order); close = latest ts (ties: last).
    """
    groups: dict[tuple[str, int], list[tuple[int, WindowTick]]] = defaultdict(list)
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


def store_minutes(conn: Any, ticks: Sequence[WindowTick], finals: Iterable[bool]) -> dict:
    """1-minute candles of the ticks, inserted with full state; returns final per candle."""
    ts_of: dict[tuple[str, int], list[tuple[int, WindowTick]]] = defaultdict(list)
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
                key[0],
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
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO price_aggregates_1m (symbol, bucket, open, high, low, close, volume,"
            " trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time, final)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
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
    symbols: list[str] | None,
    function: Any,
) -> None:
    final_minutes = store_minutes(conn, ticks, finals)
    width = INTERVALS[interval]
    got = fetch_candles(
        conn,
        interval=interval,
        since_ms=DAY0,
        until_ms=DAY0 + 2 * 86_400_000,
        symbols=symbols,
        function=function,
    )
    wanted = {k: v for k, v in aggregate(ticks, width).items() if not symbols or k[0] in symbols}
    assert [(c.symbol, c.bucket_ms - DAY0) for c in got] == sorted(wanted, key=lambda k: (k[1], k[0]))
    for c in got:
        ref = wanted[(c.symbol, c.bucket_ms - DAY0)]
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
        minutes = [
            f for (s, m), f in final_minutes.items() if s == c.symbol and m - m % width == c.bucket_ms - DAY0
        ]
        assert c.final == all(minutes)


@pytest.fixture
def conn(settings: Settings) -> Any:
    with connect(settings, autocommit=True) as connection:
        yield connection


def bucket_functions(conn: Any) -> list[str]:
    # time_bucket exists only with TimescaleDB (not on the local stack); date_bin always.
    return ["date_bin", "time_bucket"] if timescale_available(conn) else ["date_bin"]


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ticks=ticks_strategy,
    finals=st.lists(st.booleans(), max_size=60),
    interval=st.sampled_from(list(INTERVALS)),
    only=st.sampled_from([None, ["BTC"], ["ETH", "BTC"]]),
)
def test_rollup_equals_direct_aggregation(
    conn: Any, ticks: list[WindowTick], finals: list[bool], interval: str, only: list[str] | None
) -> None:
    for function in bucket_functions(conn):
        check_rollup(conn, ticks, finals, interval, only, function)


def test_ties_on_open_and_close_time_use_the_candle_order(conn: Any) -> None:
    # Two ticks at the same ms: open is the first, close the last (arrival order).
    ticks: list[WindowTick] = [
        ("BTC", 5_000, 10.0, 1.0),
        ("BTC", 5_000, 11.0, 1.0),
        ("BTC", 61_000, 12.0, None),
        ("BTC", 61_000, 9.0, None),
    ]
    for function in bucket_functions(conn):
        check_rollup(conn, ticks, [True, False], "5m", None, function)


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
