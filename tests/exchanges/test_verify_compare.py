"""verify's minute-by-minute verdicts, against cases built to have a known verdict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.exchanges.verify import (
    MINUTE_MS,
    FieldDiff,
    MinuteCandle,
    all_good,
    compare,
    counts,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
candles = st.builds(
    lambda o, h, low, c, v, n: MinuteCandle(
        0, o, max(o, h, low, c), min(o, h, low, c), c, v, n, v and (o + c) / 2
    ),
    prices, prices, prices, prices,
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), st.integers(1, 10_000),
)
# What a minute is made to be, and the verdict that must come out.
KINDS = ("match", "differs", "missing_here", "missing_there", "empty", "empty_zero_row",
         "incomplete", "gap")


def _case(kind: str, bucket: int, c: MinuteCandle, exchange_counts: bool):
    c = c._replace(bucket_ms=bucket)
    theirs = c if exchange_counts else c._replace(trades=None, vwap=None)
    if kind == "match":
        return c, theirs, "match"
    if kind == "differs":
        return c, theirs._replace(close=c.close * 2), "differs"
    if kind == "missing_here":
        return None, theirs, "missing_here"
    if kind == "missing_there":
        return c, None, "missing_there"
    if kind == "empty":
        return None, None, "empty"
    if kind == "empty_zero_row":  # Binance/Kraken publish empty minutes with zero volume
        flat = c.close
        zero = MinuteCandle(bucket, flat, flat, flat, flat, 0.0, 0 if exchange_counts else None)
        return None, zero, "empty"
    if kind == "incomplete":
        return c._replace(complete=False), theirs._replace(high=c.high + 1), "incomplete"
    return c, theirs._replace(low=c.low / 2), "incomplete"  # "gap": a recorded gap


@given(
    st.lists(st.tuples(st.sampled_from(KINDS), candles), min_size=1, max_size=30),
    st.booleans(),
)
def test_each_minute_gets_the_verdict_it_was_built_for(cases, exchange_counts) -> None:
    ours, theirs, expected, gaps = [], [], [], []
    for i, (kind, c) in enumerate(cases):
        bucket = T0 + i * MINUTE_MS
        mine, exch, verdict = _case(kind, bucket, c, exchange_counts)
        ours += [mine] if mine else []
        theirs += [exch] if exch else []
        expected.append(verdict)
        if kind == "gap":
            gaps.append((bucket + 1_500, bucket + 59_999))
    minutes = compare("BTC", ours, theirs, T0, T0 + len(cases) * MINUTE_MS, gaps=gaps)
    assert [m.bucket_ms for m in minutes] == [T0 + i * MINUTE_MS for i in range(len(cases))]
    assert [m.status for m in minutes] == expected
    assert all_good(minutes) == all(v in ("match", "empty") for v in expected)
    assert sum(counts(minutes).values()) == len(cases)


def test_differs_names_each_field_with_both_values() -> None:
    ours = MinuteCandle(T0, 10.0, 12.0, 9.0, 11.0, 3.0, 7, 10.5)
    theirs = ours._replace(open=10.5, trades=8, volume=3.0 * (1 + 1e-6), vwap=10.6)
    (minute,) = compare("ETH", [ours], [theirs], T0, T0 + MINUTE_MS)
    assert minute.status == "differs"
    assert minute.diffs == (
        FieldDiff("open", 10.0, 10.5),
        FieldDiff("trades", 7, 8),
        FieldDiff("volume", 3.0, 3.0 * (1 + 1e-6)),
        FieldDiff("vwap", 10.5, 10.6),
    )


def test_sums_within_one_billionth_match_and_prices_must_be_exact() -> None:
    ours = MinuteCandle(T0, 10.0, 12.0, 9.0, 11.0, 3.0, 7, 10.5)
    near = ours._replace(volume=3.0 * (1 + 5e-10), vwap=10.5 * (1 - 5e-10))
    assert compare("BTC", [ours], [near], T0, T0 + MINUTE_MS)[0].status == "match"
    off = ours._replace(close=11.000000000001)
    assert compare("BTC", [ours], [off], T0, T0 + MINUTE_MS)[0].diffs == (
        FieldDiff("close", 11.0, 11.000000000001),
    )


def test_a_gap_spanning_minutes_marks_each_of_them_and_only_them() -> None:
    cs = [MinuteCandle(T0 + i * MINUTE_MS, 1.0, 1.0, 1.0, 1.0, 1.0, 1) for i in range(5)]
    minutes = compare("BTC", cs, cs, T0, T0 + 5 * MINUTE_MS,
                      gaps=[(T0 + MINUTE_MS + 59_999, T0 + 3 * MINUTE_MS)])
    assert [m.status for m in minutes] == ["match", "incomplete", "incomplete", "incomplete", "match"]


def test_the_range_is_floored_to_whole_minutes() -> None:
    c = MinuteCandle(T0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
    assert [m.bucket_ms for m in compare("BTC", [c], [c], T0 + 30_000, T0 + 150_000)] == [
        T0, T0 + MINUTE_MS
    ]
