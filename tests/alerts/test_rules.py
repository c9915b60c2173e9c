"""Alert rule logic against the brute-force reference (tests/alerts/reference.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.alerts.rules import (
    ChangeWindow,
    Fired,
    MarketRules,
    RecentTicks,
    Rule,
    RuleStates,
    StoredStates,
)
from tests.alerts.reference import Applied, fired

BASE = 1_704_067_200_000
MARKETS = [("binance", "BTC", "USDT"), ("coinbase", "BTC", "USD"), ("kraken", "ETH", "USD")]
# Few distinct prices: ticks hovering exactly at a threshold are common.
prices = st.one_of(st.sampled_from([95.0, 100.0, 105.0, 110.0]), st.floats(50.0, 150.0))
# Event time moves forward by steps, with ticks up to 3 s behind: out of order in windows.
steps = st.tuples(st.integers(0, 2_000), st.integers(0, 3_000))


@st.composite
def streams(draw: st.DrawFn) -> list[Applied]:
    out: list[Applied] = []
    now = BASE
    for step, behind in draw(st.lists(steps, max_size=60)):
        now += step
        source, symbol, quote = draw(st.sampled_from(MARKETS))
        out.append((source, symbol, quote, draw(prices), now - behind))
    return out


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    rules = []
    for rid in range(1, draw(st.integers(1, 6)) + 1):
        condition = draw(st.sampled_from(["above", "below", "change"]))
        threshold = (
            draw(st.sampled_from([1.0, 5.0, 10.0, 30.0])) if condition == "change"
            else draw(st.sampled_from([95.0, 100.0, 105.0]))
        )
        market = draw(st.sampled_from([(None, None), ("binance", None), (None, "USD"),
                                       ("coinbase", "USD")]))
        rules.append(Rule(
            rid, draw(st.sampled_from(["BTC", "ETH"])), condition, threshold, *market,
            window_ms=draw(st.sampled_from([1, 1_000, 4_000, 20_000])) if condition == "change"
            else None,
            repeat=draw(st.booleans()),
        ))
    return rules


def run(rules: list[Rule], ticks: list[Applied], states: RuleStates | None = None,
        start: int = 0, batch: int = 1) -> list[tuple]:
    """As the aggregator applies ticks, in batches of ``batch``: a tick inside its market's
    quiet band is not evaluated; a market with change rules takes its ticks at the end of
    the batch (apply_pending)."""
    states = states or RuleStates()
    by_symbol: dict[str, list[Rule]] = {}
    for r in rules:
        by_symbol.setdefault(r.symbol, []).append(r)
    out = []
    deferred: list[tuple[MarketRules, str, str]] = []

    def take(i: int, f: Fired) -> None:
        source, symbol, quote, price, ts = ticks[i]
        assert (f.symbol, f.source, f.quote, f.price, f.ts) == (symbol, source, quote, price, ts)
        out.append((i, f.rule.id, f.source, f.quote, f.price, f.reference))

    def end_of_batch() -> None:
        for m, source, quote in deferred:
            for f, i in states.apply_pending(m, source, quote):
                take(i, f)
        deferred.clear()

    for i, (source, symbol, quote, price, ts) in enumerate(ticks[start:], start):
        if (i - start) % batch == 0:
            end_of_batch()
        watching = by_symbol.get(symbol, [])
        m = states.markets.get((symbol, source, quote))
        if m is not None and m.rules is watching:
            if m.changes:
                if not m.pending_times:
                    deferred.append((m, source, quote))
                m.pending_prices.append(price)
                m.pending_times.append(ts)
                m.pending_offsets.append(i)
                continue
            if m.lo < price < m.hi:
                continue
        for f in states.on_tick(watching, source, quote, price, ts, i):
            take(i, f)
    end_of_batch()
    return sorted(out)


# ticks per aggregator batch: one (each tick applied as it comes), a few, all of them
batches = st.sampled_from([1, 2, 5, 1_000])


def stored(states: RuleStates, floor: int | None) -> StoredStates:
    """What the aggregator writes to alert_state at a flush (JSON round trip included)."""
    import json

    return {
        (rid, source, quote): (s.armed, s.fired,
                               json.loads(json.dumps(s.to_json(states.store_windows))))
        for rid, source, quote, s in states.take_changed(floor)
    }


@given(rule_sets(), streams(), batches)
def test_rules_fire_as_the_reference_says(rules, ticks, batch):
    assert run(rules, ticks, batch=batch) == fired(rules, ticks)


@given(rule_sets(), streams(), st.data(), st.booleans(), batches)
def test_a_restored_state_continues_exactly(rules, ticks, data, store_windows, batch):
    """A checkpoint mid-stream (state stored and restored, windows pruned to what later
    ticks can see) fires what one uninterrupted run fires. Windows stored with their ticks,
    or read back from the applied ticks (the raw ticks stored with the candles)."""
    cut = data.draw(st.integers(0, len(ticks)))
    rules_at = data.draw(st.integers(0, cut))  # the rules loaded after this many ticks
    first = RuleStates(store_windows=store_windows)
    before = run(rules, ticks[:cut], first, start=rules_at, batch=batch)
    # Every later tick is at most 3 s behind the newest so far: nothing before that floor.
    floor = max((t[4] for t in ticks[:cut]), default=BASE) - 3_000
    for state in first.states.values():  # as a flush may (take_changed: once grown)
        if state.window is not None:
            state.window.prune(floor)
    saved = stored(first, floor)
    for state in first.states.values():  # a pruned window pruned again is the same
        if state.window is not None:
            state.window.prune(floor)
        state.changed = True
    assert {k: v for k, v in stored(first, floor).items() if k in saved} == saved
    recent: RecentTicks = {}
    for i, (source, symbol, quote, price, ts) in enumerate(ticks[:cut]):
        if ts > floor - 20_000:  # the widest window
            recent.setdefault((symbol, source, quote), []).append((i, ts, price))
    after = run(rules, ticks, RuleStates(saved, store_windows=store_windows, recent=recent),
                start=cut, batch=batch)
    want = [f for f in fired(rules, ticks[rules_at:])]
    assert before + after == [(i + rules_at, *rest) for i, *rest in want]


def test_hovering_at_the_threshold_fires_once_per_crossing():
    rule = Rule(1, "BTC", "above", 100.0, repeat=True)
    prices = [99.0, 100.0, 100.0, 101.0, 100.0, 99.99, 100.0, 100.5, 99.0]
    ticks = [("binance", "BTC", "USDT", p, BASE + i) for i, p in enumerate(prices)]
    got = [i for i, *_ in run([rule], ticks)]
    assert got == [1, 6] == [i for i, *_ in fired([rule], ticks)]


def test_one_shot_fires_once_in_each_market():
    rule = Rule(1, "BTC", "below", 90.0)
    ticks = [("binance", "BTC", "USDT", 89.0, BASE), ("coinbase", "BTC", "USD", 80.0, BASE + 1),
             ("binance", "BTC", "USDT", 95.0, BASE + 2), ("binance", "BTC", "USDT", 85.0, BASE + 3),
             ("coinbase", "BTC", "USD", 70.0, BASE + 4)]
    want = [(0, 1, "binance", "USDT", 89.0, None), (1, 1, "coinbase", "USD", 80.0, None)]
    assert run([rule], ticks) == want == fired([rule], ticks)


def test_change_within_a_window_names_its_reference():
    rule = Rule(7, "ETH", "change", 5.0, window_ms=10_000, repeat=True)
    ticks = [("kraken", "ETH", "USD", p, BASE + t) for t, p in
             [(0, 100.0), (4_000, 103.0), (9_000, 105.0),  # +5 % on the low: fires
              (9_500, 104.0), (20_000, 98.0), (20_100, 97.0),  # back in range, re-armed
              (15_000, 92.0),  # out of order: the window (5 s, 15 s] holds 105 -> fires
              ]]
    got = run([rule], ticks)
    assert got == [(2, 7, "kraken", "USD", 105.0, 100.0), (6, 7, "kraken", "USD", 92.0, 105.0)]
    assert got == fired([rule], ticks)


@given(st.lists(st.tuples(st.integers(0, 50_000), prices), max_size=80),
       st.integers(1, 20_000), st.integers(0, 60_000))
def test_window_extremes_and_pruning(entries, width, floor):
    window = ChangeWindow(width, entries)
    pruned = ChangeWindow(width, entries)
    pruned.prune(floor)
    for ts in range(floor, 60_001, 997):
        inside = [p for t, p in entries if ts - width < t <= ts]
        want = (min(inside), max(inside)) if inside else (float("inf"), float("-inf"))
        assert window.extremes(ts) == want
        assert pruned.extremes(ts) == want


@given(st.lists(st.tuples(st.integers(0, 50_000), prices), min_size=130, max_size=300),
       st.integers(1, 20_000), st.integers(0, 60_000))
def test_pruning_keeps_exactly_the_ticks_a_later_window_may_need(entries, width, floor):
    """Of the ticks in (floor - width, floor], those strictly lower or strictly higher than
    every later one of them (the only ones a window of a tick at or after floor can have
    as its low or high); every tick after floor. Many blocks: the skipped ones too."""
    window = ChangeWindow(width, entries)
    window.prune(floor)
    ordered = sorted(entries, key=lambda e: e[0])
    aged = [(t, p) for t, p in ordered if floor - width < t <= floor]
    want = [(t, p) for n, (t, p) in enumerate(aged)
            if all(p < q for _, q in aged[n + 1 :]) or all(p > q for _, q in aged[n + 1 :])]
    want += [(t, p) for t, p in ordered if t > floor]
    assert window.entries() == want


@given(st.lists(st.tuples(st.integers(0, 3_000), st.integers(0, 5_000), prices), max_size=80),
       st.lists(st.tuples(st.sampled_from([1, 700, 2_500, 9_000]),
                          st.sampled_from([0.5, 2.0, 10.0]), st.booleans()),
                min_size=1, max_size=5), batches)
def test_change_rules_sharing_a_window_fire_as_the_reference_says(moves, specs, batch):
    """Several change rules of one market, of different widths, share its window: ticks in
    order (the running low/high) and far behind (the exact fallback) both exact."""
    rules = [Rule(i, "BTC", "change", t, window_ms=w, repeat=r) for i, (w, t, r) in
             enumerate(specs, 1)]
    now, ticks = BASE, []
    for step, behind, price in moves:
        now += step
        ticks.append(("binance", "BTC", "USDT", price, now - behind))
    assert run(rules, ticks, batch=batch) == fired(rules, ticks)


# Ticks (step, how far behind, price), each followed by a query or a prune at some lag
# (or nothing): enough of them for many whole blocks per window.
window_ops = st.lists(st.tuples(st.integers(0, 20), st.sampled_from([0, 0, 0, 40, 900]), prices,
                                st.sampled_from([None] * 8 + ["query"] * 3 + ["prune"]),
                                st.integers(0, 5_000)), min_size=100, max_size=400)


@given(window_ops, st.sampled_from([1, 500, 2_000, 9_000]))
def test_window_extremes_as_ticks_come_out_of_order_and_are_pruned(ops, width):
    """Many ticks per window (whole blocks, their cached extremes, blocks moved by a tick
    out of order), pruned as the aggregator does (the floor only moves forward; no later
    tick or query before it)."""
    window, held = ChangeWindow(width), []
    now = floor = BASE
    for step, behind, price, then, lag in ops:
        now += step
        ts = max(now - behind, floor)
        window.add(ts, price)
        held.append((ts, price))
        if then == "prune":
            floor = max(floor, now - 1_000 - lag)  # behind the newest, as a watermark is
            window.prune(floor)
        elif then == "query":
            ts = max(now - lag % 1_000, floor)
            inside = [p for t, p in held if ts - width < t <= ts]
            want = (min(inside), max(inside)) if inside else (float("inf"), float("-inf"))
            assert window.extremes(ts) == want
    assert window.times == sorted(window.times)


# A price walking by up to 1.5 % a tick, event time mostly in order: change rules of a
# fraction of that cross their thresholds often (fire, re-arm), over windows of many ticks.
walks = st.lists(st.tuples(st.integers(0, 60), st.sampled_from([0] * 8 + [150, 2_500]),
                           st.integers(-15, 15)), min_size=100, max_size=300)


@given(walks, st.lists(st.tuples(st.sampled_from([700, 4_000, 15_000]),
                                 st.sampled_from([0.3, 1.0, 2.5]), st.booleans()),
                       min_size=1, max_size=4),
       st.lists(st.sampled_from(["above", "below"]), max_size=2), batches)
def test_change_rules_over_long_walks_fire_as_the_reference_says(moves, specs, levels, batch):
    """The quiet band of each window width (no extremes read for a tick in order inside
    it), its exact refresh when a tick leaves it, re-arming while quiet; with level rules
    of the same market next to them."""
    rules = [Rule(i, "BTC", "change", t, window_ms=w, repeat=r) for i, (w, t, r) in
             enumerate(specs, 1)]
    rules += [Rule(10 + i, "BTC", c, 100.0, repeat=True) for i, c in enumerate(levels)]
    now, price, ticks = BASE, 100.0, []
    for step, behind, move in moves:
        now += step
        price = round(price * (1 + move / 1000), 4)
        ticks.append(("binance", "BTC", "USDT", price, now - behind))
    assert run(rules, ticks, batch=batch) == fired(rules, ticks)


def test_a_repeat_change_rule_re_arms_on_a_quiet_tick_after_firing():
    """Fired on a rise, then a tick in order within the threshold of its window's low and
    high (the quiet path: no extremes read) re-arms it, and the next rise fires again."""
    rule = Rule(3, "SOL", "change", 1.0, window_ms=10_000, repeat=True)
    ticks = [("kraken", "SOL", "USD", p, BASE + t) for t, p in
             [(0, 100.0), (500, 100.2), (1_000, 102.0), (2_000, 100.99), (3_000, 103.0)]]
    got = run([rule], ticks)
    assert [i for i, *_ in got] == [2, 4]
    assert got == fired([rule], ticks)


@given(batches)
def test_a_quiet_tick_behind_the_newest_keeps_the_window_in_order(batch):
    """A tick older than the newest, inside the quiet band, is still placed by its time:
    the window of a later tick holds what is really within it (here the high it falls
    from), batched or not."""
    rule = Rule(4, "ETH", "change", 1.0, window_ms=1_000)
    ticks = [("binance", "ETH", "USDT", p, BASE + t) for t, p in
             [(1_000, 100.0), (2_000, 100.5), (500, 99.6), (2_100, 99.4)]]
    got = run([rule], ticks, batch=batch)
    assert [(i, ref) for i, _, _, _, _, ref in got] == [(3, 100.5)]
    assert got == fired([rule], ticks)


def test_a_quiet_run_taken_at_once_marks_a_stored_window_changed():
    """Windows stored with their ticks: after a flush, a run of quiet ticks taken at once
    still marks the state changed, so the next flush stores the window with them."""
    rule = Rule(5, "BTC", "change", 5.0, window_ms=10_000)
    states = RuleStates(store_windows=True)
    ticks = [("binance", "BTC", "USDT", 100.0 + i / 100, BASE + i * 10) for i in range(20)]
    assert run([rule], ticks[:5], states, batch=1_000) == []
    states.take_changed(None)  # a flush
    m = states.markets[("BTC", "binance", "USDT")]
    for i, (_, _, _, price, ts) in enumerate(ticks[5:], 5):  # as the aggregator defers
        m.pending_prices.append(price)
        m.pending_times.append(ts)
        m.pending_offsets.append(i)
    assert states.apply_pending(m, "binance", "USDT") == []
    changed = states.take_changed(None)
    assert [rid for rid, *_ in changed] == [5]
    assert changed[0][3].to_json(True)["t"][-1] == ticks[-1][4]
