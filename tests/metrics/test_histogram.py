"""The hot path's histogram against a brute-force reference: Prometheus' cumulative
``le`` buckets (a value equal to a bound is in that bound's bucket)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.metrics.histogram import FLUSH_BUCKETS, Histogram

bounds = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8, unique=True).map(sorted)
# Values on the bounds too: the edge of an le bucket.
values = st.lists(st.one_of(st.floats(0, 120, allow_nan=False), st.sampled_from(FLUSH_BUCKETS)), max_size=60)


@given(bounds, values)
def test_cumulative_buckets_count_and_sum(bs: list[float], vs: list[float]) -> None:
    h = Histogram(bs)
    for v in vs:
        h.observe(v)
    snap = h.snapshot()
    want = [(b, sum(1 for v in vs if v <= b)) for b in bs] + [(math.inf, len(vs))]
    assert list(snap.buckets) == want
    assert snap.count == len(vs)
    assert math.isclose(snap.sum, math.fsum(vs), rel_tol=1e-9, abs_tol=1e-9)


def test_a_value_on_a_bound_is_in_that_bucket() -> None:
    h = Histogram((0.1, 1.0))
    h.observe(0.1)
    h.observe(1.0)
    h.observe(1.5)
    assert h.snapshot().buckets == ((0.1, 1), (1.0, 2), (math.inf, 3))
