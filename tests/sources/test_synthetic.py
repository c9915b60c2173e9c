from __future__ import annotations

import itertools
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoctl.sources.synthetic import SyntheticConfig, SyntheticSource
from cryptoctl.tick import validate_tick

START = 1_700_000_000_000


def source(**kw: object) -> SyntheticSource:
    base: dict[str, object] = {"symbols": ["BTC", "ETH"], "rate": 100.0, "seed": 7, "start_ms": START}
    return SyntheticSource(SyntheticConfig(**(base | kw)))  # type: ignore[arg-type]


def test_same_seed_same_ticks_byte_for_byte() -> None:
    a = [t.to_json() for t in source().ticks(2000)]
    b = [t.to_json() for t in source().ticks(2000)]
    assert a == b
    assert [t.to_json() for t in source(seed=8).ticks(2000)] != a


def test_batches_match_ticks_in_history_mode() -> None:
    """The streaming path gives the same ticks as the direct one (history runs unpaced)."""
    stop = threading.Event()
    got = []
    for batch in source(rate=1000.0).batches(stop):
        got.extend(batch)
        if len(got) >= 3000:
            stop.set()
    expected = source(rate=1000.0).ticks(3000)
    assert [t.to_json() for t in got[:3000]] == [t.to_json() for t in expected]


def test_a_fast_live_feed_wakes_at_most_every_10_ms() -> None:
    """At 2,000 ticks/s the live feed gives batches of many ticks, not one per wake-up (a
    batch per due tick cost the producer most of a core); every tick still comes, in
    order of its nominal time."""
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    started = time.monotonic()
    timer.start()
    batches = list(source(rate=2000.0, start_ms=None).batches(stop))
    elapsed = time.monotonic() - started  # 0.5 s, or more on a loaded machine
    timer.cancel()
    ticks = [t for b in batches for t in b]
    assert len(batches) <= elapsed / 0.01 + 5  # wakes at most every 10 ms, whatever the load
    assert len(ticks) >= 10 * len(batches) / 2  # so most batches hold ~20 ticks
    times = [t.ts for t in ticks]
    assert times == sorted(times)


@given(rate=st.floats(1, 10_000), n=st.integers(10, 3000))
@settings(max_examples=30, deadline=None)
def test_event_times_follow_the_rate(rate: float, n: int) -> None:
    ticks = source(rate=rate).ticks(n)
    span_ms = ticks[-1].ts - ticks[0].ts
    assert abs(span_ms - (n - 1) * 1000 / rate) <= 1
    assert all(b.ts >= a.ts for a, b in itertools.pairwise(ticks))


def test_ticks_are_valid_realistic_and_round_robin() -> None:
    ticks = source(symbols=["BTC", "ETH", "SHIB"]).ticks(3000)
    for t in ticks:
        assert validate_tick(t.to_dict()) == t
        assert t.qty is not None and t.qty > 0
    btc = [t.price for t in ticks if t.symbol == "BTC"]
    assert min(btc) > 50_000 and max(btc) < 80_000
    assert [t.symbol for t in ticks[:6]] == ["BTC", "ETH", "SHIB"] * 2


def test_out_of_order_share_and_delay() -> None:
    n = 5000
    ticks = source(rate=1000.0, out_of_order=0.2, max_delay_ms=500).ticks(n)
    high = 0
    late = []
    for t in ticks:
        if t.ts < high:
            late.append(high - t.ts)
        high = max(high, t.ts)
    # A held-back tick is followed by later ones: roughly the share, never later than D.
    assert 0.12 * n < len(late) < 0.28 * n
    assert max(late) <= 500


def test_ticks_past_the_plausible_time_range_are_counted_not_produced() -> None:
    """Each tick's numbers are checked once, in the source, by the shared rules."""
    from cryptoctl.tick import MAX_TS_MS

    src = source(rate=1000.0, start_ms=MAX_TS_MS - 5)  # 1 ms apart: ticks 0..5 are in range
    ticks = src.ticks(10)
    assert [t.ts for t in ticks] == [MAX_TS_MS - 5 + i for i in range(6)]
    assert src.counters.invalid == 4
    assert "not a plausible epoch-ms time" in src.counters.last_problem


def test_start_or_symbols_that_cannot_give_valid_ticks_are_usage_errors() -> None:
    import pytest

    from cryptoctl.errors import UsageError

    with pytest.raises(UsageError, match="--start must be between 2009 and 2100"):
        source(start_ms=0)
    with pytest.raises(UsageError, match="invalid symbol 'btc'"):
        source(symbols=["btc"])
