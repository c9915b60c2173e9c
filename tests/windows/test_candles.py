"""Window logic against the brute-force reference (tests/windows/reference.py)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoctl.windows import NO_WATERMARK, Candle, PartitionWindows
from tests.windows.reference import Row, reference

WIDTH = 60_000
BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z, aligned to the minute

symbols = st.sampled_from(["BTC", "ETH", "SOL"])
# Few distinct prices and times make ties (equal ts, equal price) common.
prices = st.one_of(st.sampled_from([100.0, 101.5, 99.25]), st.floats(0.01, 1e6))
qtys = st.one_of(st.none(), st.just(0.0), st.floats(0.0001, 1000.0))
offsets = st.one_of(st.integers(0, 4 * WIDTH), st.sampled_from([0, 59_999, 60_000, 120_000]))
# Markets: quotes without trade ids (one symbol, two sources of it) and exchange trades,
# whose few distinct trade ids make same-millisecond ties common.
MARKETS = [("BTC", "", "USD", False), ("BTC", "binance", "USDT", True),
           ("ETH", "coinbase", "USD", True), ("SOL", "synthetic", "USD", False)]


@st.composite
def tick_rows(draw):
    symbol, source, quote, traded = draw(st.sampled_from(MARKETS))
    tid = draw(st.integers(0, 5)) if traded else None
    return (symbol, BASE + draw(offsets), draw(prices), draw(qtys), source, quote, tid)


ticks_st = st.lists(tick_rows(), max_size=80)
delays = st.sampled_from([0, 1_000, 5_000, 30_000])
latenesses = st.sampled_from([0, 10_000, 60_000])


def run(ticks: list[Row], delay: int, lateness: int) -> tuple[dict, list[int]]:
    w = PartitionWindows(delay, lateness, width_ms=WIDTH)
    late = [i for i, row in enumerate(ticks) if not w.add(*row)]
    out = {c.key: c.state() for c in w.finalize()}
    out.update({k: c.state() for k, c in w.candles.items()})
    return out, late


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, g in got.items():
        w = want[key]
        # symbol, bucket, OHLC, trades, times, final, source, quote, open/close trade ids
        exact = (0, 1, 2, 3, 4, 5, 7, 10, 11, 12, 13, 14, 15, 16)
        assert [g[i] for i in exact] == [w[i] for i in exact], key
        for i in (6, 8, 9):  # volume, price_sum, pv_sum
            assert math.isclose(g[i], w[i], rel_tol=1e-9, abs_tol=1e-9), (key, i)


@settings(max_examples=300, deadline=None)
@given(ticks_st, delays, latenesses)
def test_matches_reference(ticks, delay, lateness):
    got, late = run(ticks, delay, lateness)
    want = reference(ticks, delay, lateness, WIDTH)
    assert late == want["late"]
    assert_same(got, want["candles"])


@settings(max_examples=200, deadline=None)
@given(ticks_st, delays, latenesses, st.lists(st.integers(0, 80), max_size=6))
def test_checkpoint_and_restore_matches_reference(ticks, delay, lateness, cuts):
    """Flush at arbitrary points, forget everything, restore from the "database"."""
    db: dict[tuple[str, str, str, int], tuple] = {}
    wm: int | None = None
    late: list[int] = []
    bounds = sorted({0, len(ticks), *(c for c in cuts if c <= len(ticks))})
    for lo, hi in itertools.pairwise(bounds):
        restored = [Candle(*s[:12], False, True, *s[13:]) for s in db.values() if not s[12]]
        w = PartitionWindows(delay, lateness, width_ms=WIDTH, watermark=wm, candles=restored)
        for i in range(lo, hi):
            if not w.add(*ticks[i]):
                late.append(i)
        for c in w.finalize() + w.take_dirty():
            db[c.key] = c.state()
        wm = None if w.watermark == NO_WATERMARK else w.watermark
    want = reference(ticks, delay, lateness, WIDTH)
    assert late == want["late"]
    assert_same(db, want["candles"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(symbols, st.integers(0, 10 * WIDTH), st.integers(0, 4_999)),
                max_size=100))
def test_shuffled_within_the_delay_is_never_late(rows):
    """Ticks arriving at most `delay` out of order are all applied."""
    delay = 5_000
    arrival = sorted(rows, key=lambda r: r[1] + r[2])
    w = PartitionWindows(delay, 0, width_ms=WIDTH)
    assert all(w.add(s, BASE + t, 1.0, None) for s, t, _ in arrival)


@settings(max_examples=200, deadline=None)
@given(ticks_st, st.lists(st.integers(0, 3 * WIDTH), max_size=5))
def test_idle_advance_is_bounded_and_monotonic(ticks, idles):
    delay = 5_000
    w = PartitionWindows(delay, 10_000, width_ms=WIDTH)
    before = w.watermark
    for row, idle in zip(ticks, idles + [0] * len(ticks), strict=False):
        w.add(*row)
        w.advance_idle(idle)
        assert w.watermark >= before
        assert w.watermark <= w.max_ts - delay + max([0, *idles])
        before = w.watermark


def test_idle_partition_never_jumps_to_now():
    w = PartitionWindows(5_000, 60_000, width_ms=WIDTH)
    w.advance_idle(10_000)
    assert w.watermark == NO_WATERMARK  # no tick yet: nothing to advance from
    w.add("BTC", BASE + 1_000, 1.0, 1.0)
    w.advance_idle(3_000)
    assert w.watermark == BASE + 1_000 - 5_000 + 3_000


def test_final_once_then_late():
    w = PartitionWindows(0, 1_000, width_ms=WIDTH)
    w.add("BTC", BASE + 10, 1.0, 2.0)
    w.add("BTC", BASE + WIDTH + 1_000, 3.0, None)  # watermark = end + lateness
    (final,) = w.finalize()
    assert (final.bucket, final.final, final.vwap, final.avg) == (BASE, True, 1.0, 1.0)
    assert w.finalize() == []
    assert not w.add("BTC", BASE + 20, 9.0, None)  # its window is final: late
    assert w.is_late(BASE + 20)


def test_restored_partition_closes_by_idle_time():
    c = Candle("BTC", BASE, 1.0, 1.0, 1.0, 1.0, 0.0, 1, 1.0, 0.0, BASE, BASE)
    w = PartitionWindows(5_000, 0, width_ms=WIDTH, watermark=BASE, candles=[c])
    assert w.finalize() == []
    w.advance_idle(WIDTH)
    assert [x.bucket for x in w.finalize()] == [BASE]
    assert c.vwap is None


def test_a_candle_closed_by_the_idle_rule_is_announced_once() -> None:
    w = PartitionWindows(delay_ms=1_000, lateness_ms=60_000)
    assert w.add("BTC", 59_500, 1.0, 1.0)
    assert w.take_dirty() and w.take_newly_closed() == []  # open: nothing to announce
    w.advance_idle(1_000)
    assert w.take_newly_closed() == []  # watermark 59_500: still open
    w.advance_idle(1_500)
    closed = w.take_newly_closed()
    assert [(c.symbol, c.bucket) for c in closed] == [("BTC", 0)]
    assert w.is_closed(closed[0]) and not closed[0].final
    w.advance_idle(2_000)
    assert w.take_newly_closed() == []  # announced once


def test_ties_on_one_millisecond_go_by_trade_id_not_arrival() -> None:
    w = PartitionWindows(0, 0, width_ms=WIDTH)
    for tid, price in ((7, 2.0), (5, 1.0), (9, 4.0), (8, 3.0)):  # one ms, ids out of order
        assert w.add("BTC", BASE + 10, price, 1.0, "binance", "USDT", tid)
    (c,) = w.candles.values()
    assert (c.open, c.open_tid, c.close, c.close_tid) == (1.0, 5, 4.0, 9)
    q = PartitionWindows(0, 0, width_ms=WIDTH)
    for price in (2.0, 1.0, 4.0, 3.0):  # no trade ids: first and last in partition order
        q.add("BTC", BASE + 10, price, None, "coingecko", "USD")
    (c,) = q.candles.values()
    assert (c.open, c.close) == (2.0, 3.0)


def test_two_markets_of_one_symbol_are_two_candles() -> None:
    w = PartitionWindows(0, 0, width_ms=WIDTH)
    w.add("BTC", BASE + 1, 100.0, 1.0, "binance", "USDT", 1)
    w.add("BTC", BASE + 2, 200.0, 1.0, "coinbase", "USD", 1)
    w.add("BTC", BASE + 3, 300.0, None, "coingecko", "USD")
    assert sorted((k[1], c.close) for k, c in w.candles.items()) == [
        ("binance", 100.0), ("coinbase", 200.0), ("coingecko", 300.0)
    ]
