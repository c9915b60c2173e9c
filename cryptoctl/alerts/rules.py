"""Alert rules: pure logic, no I/O (docs/alerts.md, "Conditions", "One-shot and repeat").

A :class:`Rule` is one ``price_alerts`` row. Each market it watches has its own
:class:`MarketState`; :func:`evaluate` takes one applied tick of that market (in stream
order) and returns a :class:`Fired` or None. The aggregator persists the state with the
candles (cryptoctl/alerts/engine.py), so a replay continues from exactly this state.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from operator import itemgetter, le
from typing import Any


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    symbol: str
    condition: str  # above | below | change
    threshold: float  # a price; change: a percentage
    source: str | None = None  # None: any
    quote: str | None = None  # None: any
    window_ms: int | None = None  # change only
    repeat: bool = False
    notify: tuple[str, ...] = ()

    def watches(self, source: str, quote: str) -> bool:
        return (self.source is None or self.source == source) and (
            self.quote is None or self.quote == quote
        )


@dataclass(frozen=True, slots=True)
class Fired:
    """A rule met by one tick of one market. reference: a change rule's window low/high."""

    rule: Rule
    source: str
    symbol: str
    quote: str
    price: float
    ts: int
    reference: float | None = None


# A change window's ticks are kept in two plain sorted lists (a tick in event-time order is
# two appends); a range query reads the cached extremes of the whole blocks of this many
# ticks inside it (built lazily, on the first query that needs them) and slices the edges.
BLOCK = 64


class ChangeWindow:
    """The applied ticks of one market within a change rule's window, out of order too:
    ``extremes(ts)`` is the (low, high) of the ticks in (ts - width, ts]."""

    __slots__ = ("highs", "lows", "prices", "pruned_size", "times", "width")

    def __init__(self, width_ms: int, entries: list[tuple[int, float]] | None = None) -> None:
        self.width = width_ms
        # sorted by ts; ticks of one ts in the order they were added (a stable sort)
        ordered = sorted(entries or (), key=itemgetter(0))
        self.times: list[int] = [t for t, _ in ordered]
        self.prices: list[float] = [p for _, p in ordered]
        # min/max of the prices of block b (prices[b*BLOCK:(b+1)*BLOCK]), for the leading
        # whole blocks not changed since they were computed
        self.lows: list[float] = []
        self.highs: list[float] = []
        self.pruned_size = len(self.times)

    def add(self, ts: int, price: float) -> None:
        times = self.times
        if not times or ts >= times[-1]:
            times.append(ts)
            self.prices.append(price)
        else:
            i = bisect_right(times, ts)
            times.insert(i, ts)
            self.prices.insert(i, price)
            del self.lows[i // BLOCK :], self.highs[i // BLOCK :]  # blocks from i on moved

    def extremes(self, ts: int, width: int | None = None) -> tuple[float, float]:
        """(low, high) of the ticks in (ts - width, ts]; width at most the window's."""
        times, prices = self.times, self.prices
        i = bisect_right(times, ts - (width or self.width))
        j = bisect_right(times, ts)
        first, last = -(-i // BLOCK), j // BLOCK  # the whole blocks inside [i, j)
        if first >= last:
            part = prices[i:j]
            return (min(part), max(part)) if part else (float("inf"), float("-inf"))
        lows, highs = self.lows, self.highs
        for b in range(len(lows), last):
            block = prices[b * BLOCK : (b + 1) * BLOCK]
            lows.append(min(block))
            highs.append(max(block))
        lo, hi = min(lows[first:last]), max(highs[first:last])
        edges = prices[i : first * BLOCK] + prices[last * BLOCK : j]
        if edges:
            lo, hi = min(lo, min(edges)), max(hi, max(edges))
        return lo, hi

    def entries(self) -> list[tuple[int, float]]:
        return list(zip(self.times, self.prices, strict=True))

    def prune(self, floor: int) -> None:
        """No tick earlier than ``floor`` will be applied any more: forget what no later
        window can hold, and of the ticks before ``floor`` keep only those that are a
        window's low or high for some later tick (a newer tick at or below ``floor`` with a
        lower low, or a higher high, always shares the window of an older one). Ticks
        thinned by an earlier prune stay thinned: the ones kept again are the same."""
        times, prices = self.times, self.prices
        k = bisect_right(times, floor - self.width)
        j = bisect_right(times, floor)
        kept_t: list[int] = []
        kept_p: list[float] = []
        lo, hi = float("inf"), float("-inf")
        for n in range(j - 1, k - 1, -1):
            price = prices[n]
            if price < lo or price > hi:
                kept_t.append(times[n])
                kept_p.append(price)
                if price < lo:
                    lo = price
                if price > hi:
                    hi = price
        kept_t.reverse()
        kept_p.reverse()
        self.times = kept_t + times[j:]
        self.prices = kept_p + prices[j:]
        self.lows, self.highs = [], []
        self.pruned_size = len(self.times)

    def prune_grown(self, floor: int) -> None:
        """Prune once the window doubled since it was last pruned (amortised: a window
        not pruned holds more than it needs, never less)."""
        if len(self.times) > 2 * self.pruned_size + 64:
            self.prune(floor)


@dataclass(slots=True)
class MarketState:
    """One rule on one market. armed: may fire at the next tick that meets the rule.
    since: the offset of the first tick it saw (a change window holds no earlier tick)."""

    armed: bool = True
    fired: int = 0
    window: ChangeWindow | None = None
    changed: bool = field(default=False)  # since it was last taken for a flush
    since: int | None = None

    def to_json(self, with_window: bool) -> Any:
        """alert_state.window_state: where the change window starts, and (``with_window``)
        its ticks; without them the ticks are read back from the stored raw ticks."""
        if self.window is None:
            return None
        out: dict[str, Any] = {"since": self.since}
        if with_window:
            out["t"], out["p"] = self.window.times[:], self.window.prices[:]
        return out

    @classmethod
    def restore(cls, rule: Rule, armed: bool, fired: int, window_state: Any,
                recent: list[tuple[int, int, float]]) -> MarketState:
        """From its stored row; ``recent``: the market's applied ticks (offset, ts, price)
        not yet out of any window, for a window stored without its ticks."""
        stored = window_state or {}
        since = stored.get("since")
        window = None
        if rule.condition == "change":
            assert rule.window_ms is not None
            if "t" in stored:
                entries = list(zip(map(int, stored["t"]), map(float, stored["p"]), strict=True))
            else:
                entries = [(ts, price) for offset, ts, price in recent
                           if since is not None and offset >= since]
            window = ChangeWindow(rule.window_ms, entries)
        return cls(armed, fired, window, since=since)


def new_state(rule: Rule) -> MarketState:
    if rule.condition == "change":
        assert rule.window_ms is not None
        return MarketState(window=ChangeWindow(rule.window_ms))
    return MarketState()


class Band:
    """The change rules of one width in a MarketWindow, and a low/high no higher/lower
    than the extremes of the window of any tick in event-time order from now on (but
    the ticks the MarketWindow took since, see there): those of a window of the newest
    tick (exact when refreshed), and every tick taken since."""

    __slots__ = ("down", "hi", "lo", "rules", "up", "width")

    def __init__(self, width: int, rules: list[tuple[Rule, MarketState]], lo: float,
                 hi: float) -> None:
        self.width = width
        # per rule: the factors its change is met by (as change_met computes them)
        self.rules = [(r, s, 1 + r.threshold / 100, 1 - r.threshold / 100) for r, s in rules]
        narrowest = min(r.threshold for r, _ in rules)
        self.up, self.down = 1 + narrowest / 100, 1 - narrowest / 100
        self.lo, self.hi = lo, hi


class MarketWindow:
    """The change rules of one market that started at the same tick (``since``) share its
    ticks: one ChangeWindow as wide as the widest of them (stored, pruned, and read for
    exact extremes) and a Band per distinct width.

    The quiet test of a tick in event-time order (the common case: no extremes read):
    its price is below ``above`` and over ``below`` (every band's low/high times its
    narrowest threshold, as of the last tick that was not quiet) and within the narrowest
    threshold of all (``up``, ``down``) of ``lo``/``hi``, the extremes of the ticks taken
    since. Such a tick meets none of the rules: only a disarmed repeat rule has something
    to do (re-arm; ``rearm``: one may be disarmed)."""

    __slots__ = ("above", "bands", "below", "down", "hi", "lo", "newest", "rearm", "rules",
                 "started", "up", "window")

    def __init__(self, rules: list[tuple[Rule, MarketState]]) -> None:
        widest = max(rules, key=lambda rs: rs[0].window_ms or 0)
        assert widest[1].window is not None and widest[0].window_ms is not None
        # a wider window holds what narrower ones need
        self.window = ChangeWindow(widest[0].window_ms, widest[1].window.entries())
        widths: dict[int, list[tuple[Rule, MarketState]]] = {}
        for r, s in rules:
            widths.setdefault(r.window_ms or 0, []).append((r, s))
            s.window = self.window
        self.rules = rules
        prices = self.window.prices  # held: no later window holds more
        held = min(prices, default=float("inf")), max(prices, default=float("-inf"))
        self.bands = [Band(w, rs, *held) for w, rs in sorted(widths.items())]
        self.up = min(b.up for b in self.bands)
        self.down = max(b.down for b in self.bands)
        self.lo, self.hi = float("inf"), float("-inf")
        self.above, self.below = float("-inf"), float("inf")  # the first tick is not quiet
        self.rearm = True
        self.started = rules[0][1].since is not None  # one start: all or none
        self.newest = self.window.times[-1] if self.window.times else -(1 << 62)


def change_met(threshold: float, price: float, low: float, high: float) -> float | None:
    """The reference a change of ``threshold`` % is met against (the low for a rise, the
    high for a fall; a rise is looked at first), or None."""
    factor = threshold / 100
    if price >= low * (1 + factor):
        return low
    if price <= high * (1 - factor):
        return high
    return None


def evaluate(
    rule: Rule, state: MarketState, source: str, quote: str, price: float, ts: int,
    *, added: bool = False,
) -> Fired | None:
    """Apply one tick of the market (source, rule.symbol, quote) to the rule's state
    (``added``: a change rule's window has the tick already)."""
    reference: float | None = None
    if rule.condition == "above":
        met = price >= rule.threshold
    elif rule.condition == "below":
        met = price <= rule.threshold
    else:
        window = state.window
        assert window is not None
        if not added:
            window.add(ts, price)
        reference = change_met(rule.threshold, price, *window.extremes(ts, rule.window_ms))
        met = reference is not None
    return settle(rule, state, met, source, quote, price, ts, reference)


def settle(rule: Rule, state: MarketState, met: bool, source: str, quote: str, price: float,
           ts: int, reference: float | None = None) -> Fired | None:
    """Fire, disarm or re-arm the rule's market on a tick that met (or not) its condition."""
    if not met:
        if not state.armed and rule.repeat:
            state.armed = state.changed = True  # crossed back: may fire again
        return None
    if not state.armed:
        return None
    state.armed = False
    state.fired += 1
    state.changed = True
    return Fired(rule, source, rule.symbol, quote, price, ts, reference)


# (rule id, source, quote) -> (armed, fired, window_state), as stored in alert_state
StoredStates = dict[tuple[int, str, str], tuple[bool, int, Any]]
# (symbol, source, quote) -> its applied ticks (offset, ts, price) a window may hold
RecentTicks = dict[tuple[str, str, str], list[tuple[int, int, float]]]


class MarketRules:
    """The rules watching one market and their states. ``levels`` (above/below) have a
    quiet band: a tick priced strictly inside (lo, hi) changes none of their states and
    fires none of them, so it is not evaluated. ``changes`` take every tick: one
    shared MarketWindow per start (``since``) of their windows."""

    __slots__ = ("changes", "hi", "levels", "lo", "pending_offsets", "pending_prices",
                 "pending_times", "rules")

    def __init__(self, rules: list[Rule], entries: list[tuple[Rule, MarketState]]) -> None:
        self.rules = rules  # the symbol's rule list this was built from (identity)
        # Ticks of a market with change rules, in stream order, not yet applied: the
        # aggregator defers them to the end of its batch (apply_pending). Three lists of
        # numbers, not a list of tuples: nothing the garbage collector has to track.
        self.pending_prices: list[float] = []
        self.pending_times: list[int] = []
        self.pending_offsets: list[int] = []
        self.levels = [(r, s) for r, s in entries if r.condition != "change"]
        starts: dict[int | None, list[tuple[Rule, MarketState]]] = {}
        for r, s in entries:
            if r.condition == "change" and not (s.fired and not r.repeat):
                starts.setdefault(s.since, []).append((r, s))
        self.changes = [MarketWindow(group) for group in starts.values()]
        self.lo, self.hi = float("inf"), float("-inf")

    def update_band(self) -> None:
        lo, hi = float("-inf"), float("inf")
        for rule, state in self.levels:
            if state.fired and not rule.repeat:
                continue  # a one-shot rule fired in this market: never again
            # Quiet: armed and not met, or disarmed and met (not crossing back). Strict
            # on both sides: a tick at a threshold takes the exact path.
            if (rule.condition == "above") == state.armed:
                hi = min(hi, rule.threshold)
            else:
                lo = max(lo, rule.threshold)
        self.lo, self.hi = lo, hi


class RuleStates:
    """The state of every (rule, market) of one Kafka partition, restored lazily from what
    was stored at the checkpoint. A one-shot rule fires once per market: a market that
    fired it is never re-armed (its other markets still may fire it, once each).

    ``store_windows``: a change window's ticks are stored with its state (at each flush
    that changed it); otherwise only where it starts, and a restore takes its ticks from
    ``recent`` (the raw ticks stored with the candles: far cheaper to flush)."""

    __slots__ = ("_recent", "_stored", "markets", "states", "store_windows", "symbols")

    def __init__(self, stored: StoredStates | None = None, *, store_windows: bool = True,
                 recent: RecentTicks | None = None) -> None:
        self._stored = dict(stored or {})
        self._recent = recent or {}
        self.store_windows = store_windows
        self.states: dict[tuple[int, str, str], MarketState] = {}
        self.symbols: dict[int, str] = {}  # rule id -> its symbol
        # (symbol, source, quote) -> its rules; the aggregator reads the quiet band here
        self.markets: dict[tuple[str, str, str], MarketRules] = {}

    def on_tick(
        self, rules: list[Rule], source: str, quote: str, price: float, ts: int, offset: int
    ) -> list[Fired]:
        """Evaluate one applied tick (at ``offset``) of a market against its symbol's rules."""
        if not rules:
            return []
        key = (rules[0].symbol, source, quote)
        market = self.markets.get(key)
        if market is None or market.rules is not rules:
            market = self.markets[key] = self._market(rules, source, quote)
        return self.apply(market, source, quote, price, ts, offset)

    def apply(self, market: MarketRules, source: str, quote: str, price: float, ts: int,
              offset: int) -> list[Fired]:
        """on_tick, the market's rules looked up already (``markets``, current rules)."""
        out = [] if market.lo < price < market.hi else self._levels(market, source, quote,
                                                                     price, ts)
        for shared in market.changes:
            window = shared.window
            in_order = ts >= shared.newest
            if in_order:
                shared.newest = ts
                window.times.append(ts)  # ChangeWindow.add, inlined: the newest tick
                window.prices.append(price)
            else:
                window.add(ts, price)
            if not shared.started:
                shared.started = True
                for _, state in shared.rules:
                    state.since, state.changed = offset, True
            elif self.store_windows:
                for rule, state in shared.rules:
                    if not (state.fired and not rule.repeat):
                        state.changed = True
            if price < shared.lo:
                shared.lo = price
            if price > shared.hi:
                shared.hi = price
            if (in_order and shared.below < price < shared.above
                    and shared.hi * shared.down < price < shared.lo * shared.up):  # quiet
                if shared.rearm:
                    for rule, state in shared.rules:
                        if not state.armed and rule.repeat:
                            state.armed = state.changed = True
                    shared.rearm = False
                continue
            # The bands take the ticks since the last such tick; then each is evaluated.
            # A one-shot rule that fired here is never armed again: below, it neither
            # fires nor re-arms, as if skipped.
            since_lo, since_hi = shared.lo, shared.hi
            shared.lo, shared.hi = float("inf"), float("-inf")
            above, below = float("inf"), float("-inf")
            for band in shared.bands:
                low = band.lo = min(band.lo, since_lo)
                high = band.hi = max(band.hi, since_hi)
                if not in_order:
                    low, high = window.extremes(ts, band.width)
                elif not low * band.up > price > high * band.down:
                    # exact now: the window of this tick, the newest
                    low, high = band.lo, band.hi = window.extremes(ts, band.width)
                above = min(above, band.lo * band.up)
                below = max(below, band.hi * band.down)
                for rule, state, up, down in band.rules:
                    if price >= low * up:  # change_met, inlined
                        reference = low
                    elif price <= high * down:
                        reference = high
                    else:
                        if not state.armed and rule.repeat:
                            state.armed = state.changed = True
                        continue
                    fired = settle(rule, state, True, source, quote, price, ts, reference)
                    if fired is not None:
                        out.append(fired)
                        shared.rearm = True
            shared.above, shared.below = above, below
        return out

    def apply_pending(self, market: MarketRules, source: str, quote: str
                      ) -> list[tuple[Fired, int]]:
        """Apply the ticks deferred on ``market`` (its ``pending_*``), as ``apply`` one by
        one would: (event, offset of its tick). Ticks in event-time order inside the quiet
        band of every change window are taken at once (the common case)."""
        prices, times, offsets = (market.pending_prices, market.pending_times,
                                  market.pending_offsets)
        market.pending_prices, market.pending_times, market.pending_offsets = [], [], []
        out: list[tuple[Fired, int]] = []
        if not prices:
            return out
        low, high = min(prices), max(prices)
        if not self._take_quiet(market, prices, times, low, high):
            for price, ts, offset in zip(prices, times, offsets, strict=True):
                out.extend((f, offset) for f in self.apply(market, source, quote, price, ts,
                                                          offset))
            return out
        if market.lo < low and high < market.hi:
            return out  # every tick inside the level rules' band
        # The level rules: only the runs of ticks that leave their band, tick by tick.
        for start in range(0, len(prices), BLOCK):
            run = prices[start : start + BLOCK]
            if market.lo < min(run) and max(run) < market.hi:
                continue
            for k, price in enumerate(run, start):
                if not market.lo < price < market.hi:
                    out.extend((f, offsets[k]) for f in self._levels(market, source, quote,
                                                                     price, times[k]))
        return out

    def _take_quiet(self, market: MarketRules, prices: list[float], times: list[int],
                    low: float, high: float) -> bool:
        """Give every change window of ``market`` the ticks (``low``/``high``: the extremes
        of ``prices``) if each would be quiet there (``apply``: in order, inside every
        band, within the narrowest threshold of the extremes since the last tick that was
        not): then none of them fires a change rule. Else change nothing: False."""
        if not all(map(le, times, times[1:])):
            return False
        first = times[0]
        for shared in market.changes:
            lo, hi = min(shared.lo, low), max(shared.hi, high)
            # the extremes at the end bound those at every tick before it
            if not (shared.started and first >= shared.newest and shared.below < low
                    and high < shared.above and hi * shared.down < low
                    and high < lo * shared.up):
                return False
        for shared in market.changes:
            window = shared.window
            window.times.extend(times)
            window.prices.extend(prices)
            shared.newest = times[-1]
            shared.lo, shared.hi = min(shared.lo, low), max(shared.hi, high)
            for rule, state in shared.rules:
                if state.fired and not rule.repeat:
                    continue  # spent in this market
                if self.store_windows:
                    state.changed = True
                if shared.rearm and not state.armed and rule.repeat:
                    state.armed = state.changed = True
            shared.rearm = False
        return True

    def _levels(self, market: MarketRules, source: str, quote: str, price: float,
                ts: int) -> list[Fired]:
        """A tick outside the market's quiet band, applied to its level rules."""
        out = []
        for rule, state in market.levels:
            if state.fired and not rule.repeat:
                continue  # spent in this market
            fired = evaluate(rule, state, source, quote, price, ts)
            if fired is not None:
                out.append(fired)
        market.update_band()
        return out

    def _market(self, rules: list[Rule], source: str, quote: str) -> MarketRules:
        entries = []
        for rule in rules:
            if not rule.watches(source, quote):
                continue
            key = (rule.id, source, quote)
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = self._state(rule, key)
                self.symbols[rule.id] = rule.symbol
            entries.append((rule, state))
        market = MarketRules(rules, entries)
        market.update_band()
        return market

    def _state(self, rule: Rule, key: tuple[int, str, str]) -> MarketState:
        stored = self._stored.pop(key, None)
        if stored is None:
            return new_state(rule)
        recent = self._recent.get((rule.symbol, key[1], key[2]), [])
        return MarketState.restore(rule, *stored, recent)

    def take_changed(self, floor: int | None) -> list[tuple[int, str, str, MarketState]]:
        """(rule id, source, quote, state) of the states changed since the last call; their
        windows pruned (once grown) first: no tick before ``floor`` will be applied."""
        if floor is not None:
            for s in self.states.values():
                if s.window is not None:
                    s.window.prune_grown(floor)
        out = [(*key, s) for key, s in self.states.items() if s.changed]
        for *_, s in out:
            s.changed = False
        return out

    def forget(self, live: set[int]) -> None:
        """Drop the states of rules no longer active (removed, or spent and stored)."""
        for key in [k for k in self.states if k[0] not in live]:
            del self.states[key]
        self.markets.clear()  # rebuilt from the current rules at their next tick
