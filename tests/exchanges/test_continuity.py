"""Trade continuity: the produced trades are gap-free, or the gap is recorded.

Examples first, then a property test: a consecutive trade set, a live stream derived from
it (dropped blocks, re-sends after reconnects), an in-memory REST history over the set
(random pages that overlap and overshoot, an optional hole, optional failures), compared
with a brute-force reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cryptoctl.errors import CryptoctlError
from cryptoctl.exchanges.continuity import NOT_IN_HISTORY, UNKNOWN_ID, MarketContinuity, order_key
from cryptoctl.exchanges.trade import Gap, Market, Trade

MARKET = Market("binance", "BTC", "USDT")
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


class RestDown(CryptoctlError):
    """The retry budget of a history call is spent."""


class Banned(CryptoctlError):
    """Stands in for the exchange's ban (418): must stop the feed, not become a gap."""


def trade(trade_id: int, ts: int) -> Trade:
    return Trade(trade_id, ts, 100.0 + trade_id % 7, 0.5, "buy" if trade_id % 2 else "sell")


def consecutive(first_id: int, times: Sequence[int]) -> list[Trade]:
    return [trade(first_id + i, ts) for i, ts in enumerate(times)]


@dataclass
class FakeHistory:
    """An exchange's REST history over ``trades`` (consecutive ids), in memory.

    Pages cycle through ``page_sizes``; each page after the first starts ``overlap``
    trades back, and a trades_after page may run ``overshoot`` ids past ``until_id``.
    ``hole`` ids are missing; ids above ``horizon`` are not there yet. The calls numbered in
    ``failing`` raise after ``fail_after`` pages.
    """

    trades: list[Trade]
    page_sizes: Sequence[int] = (1000,)
    overlap: int = 0
    overshoot: int = 0
    sloppy_since: int = 0  # trades_since also gives this many trades before the time
    hole: range = range(0)
    horizon: int | None = None
    failing: frozenset[int] = frozenset()
    fail_after: int = 0
    error: type[Exception] = RestDown
    calls: list[tuple[str, int]] = field(default_factory=list)

    def trades_after(
        self, market: Market, after: Trade, *, until_id: int | None = None
    ) -> Iterator[list[Trade]]:
        assert market == MARKET
        stop = None if until_id is None else until_id + self.overshoot
        rows = [
            t for t in self._known() if t.trade_id > after.trade_id and (stop is None or t.trade_id <= stop)
        ]
        return self._pages("after", after.trade_id, rows)

    def trades_since(self, market: Market, ts_ms: int) -> Iterator[list[Trade]]:
        assert market == MARKET
        known = self._known()
        first = next((i for i, t in enumerate(known) if t.ts >= ts_ms), len(known))
        return self._pages("since", ts_ms, known[max(0, first - self.sloppy_since) :])

    def _known(self) -> list[Trade]:
        return [
            t
            for t in self.trades
            if t.trade_id not in self.hole and (self.horizon is None or t.trade_id <= self.horizon)
        ]

    def _pages(self, kind: str, arg: int, rows: list[Trade]) -> Iterator[list[Trade]]:
        call = len(self.calls)
        self.calls.append((kind, arg))
        start, n = 0, 0
        while start < len(rows):
            if call in self.failing and n == self.fail_after:
                raise self.error(f"call {call} failed")
            size = self.page_sizes[n % len(self.page_sizes)]
            yield rows[start : start + size]
            start = max(start + size - self.overlap, start + 1)
            n += 1
        if call in self.failing:  # fail_after beyond the last page: fails at the end
            raise self.error(f"call {call} failed")


def feed(cont: MarketContinuity, stream: Sequence[Trade | None]) -> list[Trade]:
    """What a feed loop does: every live trade in, everything produced out; None = reconnect."""
    out: list[Trade] = []
    for item in stream:
        if item is None:
            cont.on_reconnect()
        else:
            out.extend(cont.on_trade(item))
    return out


def ids(trades: Sequence[Trade]) -> list[int]:
    return [t.trade_id for t in trades]


# -- examples ---------------------------------------------------------------------------


def test_a_three_trade_jump_is_filled_over_rest_before_the_trade_that_showed_it() -> None:
    full = consecutive(100, [T0 + i for i in range(6)])
    history = FakeHistory(full)
    cont = MarketContinuity(MARKET, history)

    out = feed(cont, [full[0], full[1], full[5]])

    assert ids(out) == [100, 101, 102, 103, 104, 105]
    assert out == full
    assert history.calls == [("after", 101)]
    s = cont.stats
    assert (s.produced, s.live, s.filled_trades, s.fills, s.gaps) == (6, 3, 3, 1, ())
    assert s.last == (105, T0 + 5)


def test_duplicates_after_a_reconnect_are_dropped_and_counted() -> None:
    full = consecutive(7, [T0, T0, T0 + 1, T0 + 2])
    history = FakeHistory(full)
    cont = MarketContinuity(MARKET, history)

    out = feed(cont, [full[0], full[1], full[2], None, full[1], full[2], full[3]])

    assert out == full
    assert (cont.stats.duplicates, cont.stats.reconnects, history.calls) == (2, 1, [])


def test_since_includes_a_trade_exactly_at_the_time_and_excludes_one_ms_earlier() -> None:
    since = T0 + 1000
    full = consecutive(50, [since - 2, since - 1, since, since, since + 5])
    history = FakeHistory(full, sloppy_since=2)  # a history that pages by time starts early
    cont = MarketContinuity(MARKET, history, since_ms=since)

    assert ids(list(cont.start())) == [52, 53, 54]
    assert ids(feed(cont, [full[4]])) == []  # the live stream repeats the history's newest
    assert cont.stats.history_trades == 3
    assert cont.stats.duplicates == 1


def test_since_history_then_the_live_stream_bridges_what_came_in_between() -> None:
    since = T0
    full = consecutive(1, [T0 + i for i in range(10)])
    history = FakeHistory(full, horizon=4, page_sizes=(2,), overlap=1)
    cont = MarketContinuity(MARKET, history, since_ms=since)

    first = list(cont.start())
    history.horizon = None  # time passes: the exchange has more trades now
    rest = feed(cont, [full[8], full[9]])

    assert ids(first) == [1, 2, 3, 4]
    assert ids(rest) == [5, 6, 7, 8, 9, 10]
    assert history.calls == [("since", since), ("after", 4)]


def test_since_without_start_the_first_live_trade_fetches_the_history() -> None:
    full = consecutive(1, [T0 + i for i in range(5)])
    cont = MarketContinuity(MARKET, FakeHistory(full), since_ms=T0 + 2)

    assert ids(feed(cont, [full[0], full[4]])) == [3, 4, 5]
    assert cont.stats.before_since == 1


def test_resume_with_nothing_missed_makes_no_rest_call() -> None:
    full = consecutive(10, [T0 + i for i in range(4)])
    history = FakeHistory(full)
    cont = MarketContinuity(MARKET, history, last=full[1])

    assert list(cont.start()) == []
    assert feed(cont, [full[1], full[2], full[3]]) == full[2:]
    assert history.calls == []
    assert cont.stats.duplicates == 1


def test_resume_fills_what_was_missed_while_down() -> None:
    full = consecutive(10, [T0 + i for i in range(6)])
    history = FakeHistory(full)
    cont = MarketContinuity(MARKET, history, last=full[1])

    assert feed(cont, [None, full[5]]) == full[2:]
    assert history.calls == [("after", 11)]


def test_rest_down_records_the_gap_and_goes_on_with_the_live_trade() -> None:
    full = consecutive(100, [T0 + 10 * i for i in range(6)])
    history = FakeHistory(full, failing=frozenset({0}), fail_after=1, page_sizes=(1,))
    cont = MarketContinuity(MARKET, history)

    out = feed(cont, [full[0], full[5]])

    assert ids(out) == [100, 101, 105]
    assert cont.stats.gaps == (Gap(MARKET, 102, 104, T0 + 10, T0 + 50, "REST history failed: call 0 failed"),)
    assert (cont.stats.rest_errors, cont.stats.fills, cont.stats.filled_trades) == (1, 1, 1)


def test_a_hole_in_the_exchanges_history_is_recorded() -> None:
    full = consecutive(1, [T0 + i for i in range(8)])
    cont = MarketContinuity(MARKET, FakeHistory(full, hole=range(3, 5)))

    assert ids(feed(cont, [full[0], full[7]])) == [1, 2, 5, 6, 7, 8]
    assert cont.stats.gaps == (Gap(MARKET, 3, 4, T0 + 1, T0 + 4, NOT_IN_HISTORY),)


def test_an_os_error_is_a_gap_too() -> None:
    full = consecutive(1, [T0 + i for i in range(3)])
    cont = MarketContinuity(MARKET, FakeHistory(full, failing=frozenset({0}), error=ConnectionResetError))

    assert ids(feed(cont, [full[0], full[2]])) == [1, 3]
    assert [(g.first_id, g.last_id) for g in cont.stats.gaps] == [(2, 2)]


def test_a_fatal_error_propagates_and_leaves_the_state_at_what_was_produced() -> None:
    full = consecutive(1, [T0 + i for i in range(6)])
    history = FakeHistory(full, failing=frozenset({0}), fail_after=1, page_sizes=(2,), error=Banned)
    cont = MarketContinuity(MARKET, history, fatal=(Banned,))
    feed(cont, [full[0]])

    got: list[Trade] = []
    with pytest.raises(Banned):
        got.extend(cont.on_trade(full[5]))

    assert ids(got) == [2, 3]
    assert cont.last == full[2]
    assert cont.stats.gaps == ()


def test_since_when_the_history_fails_before_any_trade_the_gap_has_no_first_id() -> None:
    full = consecutive(1, [T0 + i for i in range(5)])
    history = FakeHistory(full, failing=frozenset({0, 1}))
    cont = MarketContinuity(MARKET, history, since_ms=T0 + 1)

    assert list(cont.start()) == []
    assert ids(feed(cont, [full[4]])) == [5]
    assert cont.stats.gaps == (
        Gap(MARKET, UNKNOWN_ID, 4, T0 + 1, T0 + 4, "REST history failed: call 1 failed"),
    )


def test_resume_and_since_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either"):
        MarketContinuity(MARKET, FakeHistory([]), last=trade(1, T0), since_ms=T0)


def test_order_key_breaks_ties_on_one_millisecond_by_trade_id() -> None:
    trades = [trade(3, T0 + 1), trade(2, T0 + 1), trade(4, T0)]
    assert ids(sorted(trades, key=order_key)) == [4, 2, 3]


# -- property ---------------------------------------------------------------------------


@dataclass
class Scenario:
    full: list[Trade]
    stream: list[Trade | None]
    history: FakeHistory
    mode: str  # "fresh" | "resume" | "since"
    resume: int | None  # index into full
    since_ms: int | None
    call_start: bool
    start_horizon: int | None  # history.horizon while start() runs


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    first_id = draw(st.integers(1, 10**9))
    size = draw(st.integers(1, 40))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 1, 2, 5]), min_size=size, max_size=size))
    times, ts = [], T0 + draw(st.integers(0, 10**6))
    for step in steps:
        ts += step
        times.append(ts)
    full = consecutive(first_id, times)
    n = len(full)

    # The live stream: blocks delivered or dropped; reconnects, some re-sending recent trades.
    stream: list[Trade | None] = []
    pos, newest = 0, -1  # next index of full; index of the newest delivered
    while pos < n:
        length = draw(st.integers(1, 5))
        if draw(st.integers(0, 2)) == 0 or pos + length >= n:  # the last trade always comes live
            stream.extend(full[pos : pos + length])
            newest = min(pos + length, n) - 1
        pos += length
        if draw(st.integers(0, 3)) == 0:
            stream.append(None)
            if newest > 0:
                back = draw(st.integers(0, 3))
                stream.extend(full[max(0, newest - back) : newest])

    mode = draw(st.sampled_from(["fresh", "resume", "since"]))
    resume = draw(st.integers(0, n - 1)) if mode == "resume" else None
    since_ms = None
    if mode == "since":
        since_ms = full[draw(st.integers(0, n - 1))].ts + draw(st.sampled_from([-1, 0, 0, 1]))
    first_since = next((i for i, t in enumerate(full) if since_ms is not None and t.ts >= since_ms), None)

    hole = range(0)
    if draw(st.booleans()):
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(a + 1, min(n, a + 10)))
        if first_since is None or not a <= first_since < b:  # the start itself is never lost
            hole = range(first_id + a, first_id + b)
    failing = frozenset(draw(st.lists(st.integers(0, 3), max_size=3))) if draw(st.booleans()) else frozenset()
    history = FakeHistory(
        full,
        page_sizes=draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)),
        overlap=draw(st.integers(0, 2)),
        overshoot=draw(st.integers(0, 2)),
        sloppy_since=draw(st.integers(0, 2)),
        hole=hole,
        failing=failing,
        fail_after=draw(st.integers(0, 3)),
        error=draw(st.sampled_from([RestDown, OSError])),
    )
    call_start = draw(st.booleans())
    start_horizon = first_id + draw(st.integers(-1, n)) if call_start else None
    return Scenario(full, stream, history, mode, resume, since_ms, call_start, start_horizon)


def expected(sc: Scenario, start_out: Sequence[Trade]) -> tuple[int | None, int | None, set[int]]:
    """Brute force: (first id, last id) the market must cover, and the ids no history
    could give (in the hole, and not delivered live in time). None when nothing is due."""
    live = [t for t in sc.stream if t is not None]
    hole = set(sc.history.hole)
    if sc.mode == "fresh":
        first = live[0].trade_id
        due = [t.trade_id for t in live]
    elif sc.mode == "resume":
        assert sc.resume is not None
        first = sc.full[sc.resume].trade_id + 1
        due = [t.trade_id for t in live if t.trade_id >= first]
    else:
        assert sc.since_ms is not None
        since = [t for t in sc.full if t.ts >= sc.since_ms]
        if not since:
            return None, None, set()
        first = since[0].trade_id
        due = [t.trade_id for t in live if t.ts >= sc.since_ms] + ids(start_out)
    if not due:
        return None, None, set()
    last = max(due)
    # A hole id still arrives in time if the stream brings it before anything newer (and
    # after start(), whatever start() passed is settled); a late re-send comes too late.
    in_time, newest = set(), max(ids(start_out), default=first - 1)
    for t in live:
        if t.trade_id > newest:
            in_time.add(t.trade_id)
            newest = t.trade_id
    lost = {i for i in hole if first <= i <= last and i not in in_time}
    return first, last, lost


def ranges(values: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


@hsettings(max_examples=400)
@given(scenarios())
def test_the_produced_trades_match_the_reference(sc: Scenario) -> None:
    last = sc.full[sc.resume] if sc.resume is not None else None
    cont = MarketContinuity(MARKET, sc.history, last=last, since_ms=sc.since_ms)
    by_id = {t.trade_id: t for t in sc.full}

    sc.history.horizon = sc.start_horizon
    start_out = list(cont.start()) if sc.call_start else []
    sc.history.horizon = None
    per_call: list[tuple[Trade, list[Trade]]] = []
    for item in sc.stream:
        if item is None:
            cont.on_reconnect()
        else:
            per_call.append((item, list(cont.on_trade(item))))
    out = start_out + [t for _, produced in per_call for t in produced]
    gaps = cont.stats.gaps

    # In id order, each once, each the exchange's own trade.
    got = ids(out)
    assert got == sorted(set(got))
    assert all(by_id[t.trade_id] == t for t in out)

    # Everything from the start to the newest is produced or in a recorded gap, and each
    # gap lies between two produced trades (or the resume point) with their times.
    first, newest, lost = expected(sc, start_out)
    if newest is None:
        assert out == [] and gaps == ()
    else:
        assert first is not None
        assert got[-1] == newest
        gap_ids = set()
        for g in gaps:
            lo = first if g.first_id == UNKNOWN_ID else g.first_id
            gap_ids |= set(range(lo, g.last_id + 1))
            assert g.market == MARKET
            assert g.before_ts == by_id[g.last_id + 1].ts and g.last_id + 1 in got
            if g.first_id == UNKNOWN_ID:
                assert sc.since_ms is not None and g.after_ts == sc.since_ms and got[0] == g.last_id + 1
            else:
                assert g.after_ts == by_id[g.first_id - 1].ts
                assert g.first_id - 1 in got or (last is not None and g.first_id - 1 == last.trade_id)
        assert gap_ids.isdisjoint(got)
        assert gap_ids | set(got) == set(range(first, newest + 1))
        # What the history does not hold is a gap whatever else happens ...
        assert lost <= gap_ids
        # ... and with a history that never fails, the gaps are exactly that.
        if not sc.history.failing:
            assert sorted(gap_ids) == sorted(lost)
            assert [(g.first_id, g.last_id) for g in gaps] == ranges(lost)
            assert {g.reason for g in gaps} <= {NOT_IN_HISTORY}

    event(f"mode {sc.mode}, {'failing' if sc.history.failing else 'reliable'} history")
    event(f"rest calls: {min(len(sc.history.calls), 3)}")
    event(f"gaps: {'none' if not gaps else 'unknown first id' if gaps[0].first_id == UNKNOWN_ID else 'some'}")

    s = cont.stats
    live_trades = [t for t in sc.stream if t is not None]
    produced_live = sum(1 for item, produced in per_call if produced and produced[-1] is item)
    rest_calls = [p for item, p in per_call if len(p) > (1 if p and p[-1] is item else 0)]
    assert s.produced == len(out)
    assert s.live == produced_live
    assert s.history_trades == len(start_out)
    assert s.filled_trades == len(out) - len(start_out) - produced_live
    assert s.fills == len(rest_calls)
    assert s.duplicates + s.before_since + produced_live == len(live_trades)
    assert s.reconnects == sc.stream.count(None)
    assert s.rest_errors <= len(sc.history.failing)
    assert s.last == ((out[-1].trade_id, out[-1].ts) if out else (last and (last.trade_id, last.ts)))
    if sc.mode != "since":
        assert s.before_since == 0 and start_out == []


def test_a_bug_in_the_history_is_not_turned_into_a_gap() -> None:
    full = consecutive(1, [T0 + i for i in range(3)])
    cont = MarketContinuity(MARKET, FakeHistory(full, failing=frozenset({0}), error=KeyError))
    feed(cont, [full[0]])

    with pytest.raises(KeyError):
        list(cont.on_trade(full[2]))
    assert cont.stats.gaps == ()


def test_a_fill_abandoned_half_way_is_resumed_by_the_next_live_trade() -> None:
    full = consecutive(1, [T0 + i for i in range(8)])
    history = FakeHistory(full, page_sizes=(2,))
    cont = MarketContinuity(MARKET, history)
    feed(cont, [full[0]])

    fill = cont.on_trade(full[5])
    first = [next(fill), next(fill)]  # the caller stops here (its producer failed, say)
    del fill
    rest = list(cont.on_trade(full[7]))

    assert ids(first + rest) == [2, 3, 4, 5, 6, 7, 8]
    assert history.calls == [("after", 1), ("after", 3)]
    assert cont.stats.gaps == ()
