"""bench/soak.py's pure parts: reading the processes' status lines, and matching sampled
ticks with the Redis candle updates that first show them."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.producer import ProducerStats
from cryptoctl.render import aggregate, produce
from tests.render.test_reports import agg_stats, producer_fields

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import soak  # a script beside the benches, not a package


def test_counters_of_the_aggregators_status_line() -> None:
    line = aggregate.status_line(agg_stats(
        ticks=1_234_567, late=3, invalid=12_001, fenced=2, duplicates=5, gaps=1,
        cache_pending=4, cache_connected=False,
    ))  # fmt: skip
    assert soak.AGGREGATE_STATUS in line
    got = soak.counters(line)
    assert {k: got[k] for k in ("ticks", "late", "invalid", "fenced", "duplicates", "gaps")} == {
        "ticks": 1_234_567, "late": 3, "invalid": 12_001, "fenced": 2, "duplicates": 5, "gaps": 1,
    }  # fmt: skip
    assert got["redis pending (down)"] == 4
    assert "ticks/s" not in got and "flush p50" not in got


def test_counters_of_the_producers_status_line() -> None:
    stats = ProducerStats(**producer_fields(  # type: ignore[arg-type]
        delivered=2_000_001, failed=7, retries=1_500, invalid=2, source_errors=3))
    line = produce.status_line(stats)
    assert soak.PRODUCE_STATUS in line
    got = soak.counters(line)
    assert {k: got[k] for k in ("delivered", "failed", "retries", "invalid", "source errors")} == {
        "delivered": 2_000_001, "failed": 7, "retries": 1_500, "invalid": 2, "source errors": 3,
    }  # fmt: skip


def test_log_lines_are_not_status_lines() -> None:
    warning = "06:41:02 warning: Redis unreachable at redis://127.0.0.1:6379/0 (retrying)"
    assert soak.AGGREGATE_STATUS not in warning and soak.PRODUCE_STATUS not in warning


SYMBOLS = st.sampled_from(["BTC", "ETH", "SOL"])
TIMES = st.integers(0, 200)


@given(
    ticks=st.lists(st.tuples(SYMBOLS, TIMES), max_size=30),
    updates=st.lists(st.tuples(st.integers(0, 300), SYMBOLS, TIMES), max_size=30),
)
def test_visible_latencies_match_a_brute_force_search(
    ticks: list[tuple[str, int]], updates: list[tuple[int, str, int]]
) -> None:
    # arrival order is time order; seconds (the probe's clock) vs milliseconds (event time)
    arrived = [(t / 1000, sym, close_ts) for t, sym, close_ts in sorted(updates, key=lambda u: u[0])]
    expected, missing = [], 0
    for sym, ts in ticks:
        seen = [t for t, s, close_ts in arrived if s == sym and close_ts >= ts]
        if seen:
            expected.append((ts, min(seen) * 1000 - ts))
        else:
            missing += 1
    assert soak.visible_latencies(ticks, arrived) == (expected, missing)
