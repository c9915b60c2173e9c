"""Alert rules: pure logic, no I/O (docs/alerts.md, "Conditions", "One-shot and repeat").

A :class:`Rule` is one ``price_alerts`` row. Each market it watches has its own
:class:`MarketState`; :func:`evaluate` takes one applied tick of that market (in stream
order) and returns a :class:`Fired` or None. The aggregator persists the state with the
candles (cryptoctl/alerts/engine.py), so a replay continues from exactly this state.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

# A change window is kept in this many buckets of event time: a query reads the cached
# extremes of the buckets inside the range and bisects the two at its edges.
WINDOW_BUCKETS = 32


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


class _Bucket:
    __slots__ = ("hi", "lo", "prices", "suffix", "times")

    def __init__(self) -> None:
        self.times: list[int] = []  # sorted
        self.prices: list[float] = []  # in the order of times
        self.lo = float("inf")
        self.hi = float("-inf")
        self.suffix: tuple[list[float], list[float]] | None = None  # min/max from i on

    def add(self, ts: int, price: float) -> None:
        if not self.times or ts >= self.times[-1]:
            self.times.append(ts)
            self.prices.append(price)
        else:
            i = bisect_right(self.times, ts)
            self.times.insert(i, ts)
            self.prices.insert(i, price)
        self.lo = min(self.lo, price)
        self.hi = max(self.hi, price)
        self.suffix = None

    def after(self, ts: int) -> tuple[float, float]:
        """(min, max) of the prices later than ``ts`` (inf, -inf if none)."""
        i = bisect_right(self.times, ts)
        if i == 0:
            return self.lo, self.hi
        if i == len(self.times):
            return float("inf"), float("-inf")
        if self.suffix is None:
            lows, highs = self.prices[:], self.prices[:]
            for j in range(len(lows) - 2, -1, -1):
                lows[j] = min(lows[j], lows[j + 1])
                highs[j] = max(highs[j], highs[j + 1])
            self.suffix = (lows, highs)
        return self.suffix[0][i], self.suffix[1][i]

    def until(self, ts: int) -> tuple[float, float]:
        """(min, max) of the prices at or before ``ts``."""
        i = bisect_right(self.times, ts)
        if i == len(self.times):
            return self.lo, self.hi
        part = self.prices[:i]
        return (min(part), max(part)) if part else (float("inf"), float("-inf"))


class ChangeWindow:
    """The applied ticks of one market within a change rule's window, out of order too:
    ``extremes(ts)`` is the (low, high) of the ticks in (ts - width, ts]."""

    __slots__ = ("buckets", "step", "width")

    def __init__(self, width_ms: int, entries: list[tuple[int, float]] | None = None) -> None:
        self.width = width_ms
        self.step = max(1, width_ms // WINDOW_BUCKETS)
        self.buckets: dict[int, _Bucket] = {}
        for ts, price in entries or ():
            self.add(ts, price)

    def add(self, ts: int, price: float) -> None:
        b = self.buckets.get(ts // self.step)
        if b is None:
            b = self.buckets[ts // self.step] = _Bucket()
        b.add(ts, price)

    def extremes(self, ts: int) -> tuple[float, float]:
        start, step, buckets = ts - self.width, self.step, self.buckets
        first, last = start // step, ts // step
        lo, hi = float("inf"), float("-inf")
        for k in range(first, last + 1):
            b = buckets.get(k)
            if b is None:
                continue
            if k == first and k == last:
                i, j = bisect_right(b.times, start), bisect_right(b.times, ts)
                part = b.prices[i:j]
                if part:
                    lo, hi = min(lo, *part), max(hi, *part)
                continue
            if k == first:
                blo, bhi = b.after(start)
            elif k == last:
                blo, bhi = b.until(ts)
            else:
                blo, bhi = b.lo, b.hi
            if blo < lo:
                lo = blo
            if bhi > hi:
                hi = bhi
        return lo, hi

    def entries(self) -> list[tuple[int, float]]:
        return [
            (t, p)
            for k in sorted(self.buckets)
            for t, p in zip(self.buckets[k].times, self.buckets[k].prices, strict=True)
        ]

    def prune(self, floor: int) -> None:
        """No tick earlier than ``floor`` will be applied any more: forget what no later
        window can hold, and of the ticks before ``floor`` keep only those that are a
        window's low or high for some later tick (a newer tick at or below ``floor`` with a
        lower low, or a higher high, always shares the window of an older one)."""
        cut = floor - self.width
        kept_old: list[tuple[int, float]] = []
        newer: list[tuple[int, float]] = []
        lo, hi = float("inf"), float("-inf")
        for ts, price in reversed(self.entries()):
            if ts > floor:
                newer.append((ts, price))
            elif ts > cut and (price < lo or price > hi):
                kept_old.append((ts, price))
            if cut < ts <= floor:
                lo, hi = min(lo, price), max(hi, price)
        self.buckets = {}
        for ts, price in reversed(kept_old + newer):
            self.add(ts, price)


@dataclass(slots=True)
class MarketState:
    """One rule on one market. armed: may fire at the next tick that meets the rule."""

    armed: bool = True
    fired: int = 0
    window: ChangeWindow | None = None
    changed: bool = field(default=False)  # since it was last taken for a flush

    def to_json(self) -> Any:
        if self.window is None:
            return None
        return {"ticks": [[t, p] for t, p in self.window.entries()]}

    @classmethod
    def restore(cls, rule: Rule, armed: bool, fired: int, window_state: Any) -> MarketState:
        window = None
        if rule.condition == "change":
            assert rule.window_ms is not None
            ticks = (window_state or {}).get("ticks", [])
            window = ChangeWindow(rule.window_ms, [(int(t), float(p)) for t, p in ticks])
        return cls(armed, fired, window)


def new_state(rule: Rule) -> MarketState:
    if rule.condition == "change":
        assert rule.window_ms is not None
        return MarketState(window=ChangeWindow(rule.window_ms))
    return MarketState()


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
    rule: Rule, state: MarketState, source: str, quote: str, price: float, ts: int
) -> Fired | None:
    """Apply one tick of the market (source, rule.symbol, quote) to the rule's state."""
    reference: float | None = None
    if rule.condition == "above":
        met = price >= rule.threshold
    elif rule.condition == "below":
        met = price <= rule.threshold
    else:
        window = state.window
        assert window is not None
        window.add(ts, price)
        state.changed = True
        low, high = window.extremes(ts)
        reference = change_met(rule.threshold, price, low, high)
        met = reference is not None
    if not met:
        if not state.armed:
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


class RuleStates:
    """The state of every (rule, market) of one Kafka partition, restored lazily from what
    was stored at the checkpoint. A one-shot rule is spent once any market fired it."""

    __slots__ = ("_stored", "spent", "states", "symbols")

    def __init__(self, stored: StoredStates | None = None) -> None:
        self._stored = dict(stored or {})
        self.states: dict[tuple[int, str, str], MarketState] = {}
        self.symbols: dict[int, str] = {}  # rule id -> its symbol
        self.spent: set[int] = {rid for (rid, _, _), (_, fired, _) in self._stored.items()
                                if fired}

    def on_tick(
        self, rules: list[Rule], source: str, quote: str, price: float, ts: int
    ) -> list[Fired]:
        """Evaluate one applied tick of a market against its symbol's rules."""
        out = []
        states = self.states
        for rule in rules:
            if not rule.watches(source, quote):
                continue
            key = (rule.id, source, quote)
            state = states.get(key)
            if state is None:
                state = states[key] = self._state(rule, key)
                self.symbols[rule.id] = rule.symbol
            if not rule.repeat and rule.id in self.spent:
                continue  # inactive once this flush commits
            fired = evaluate(rule, state, source, quote, price, ts)
            if fired is not None:
                out.append(fired)
                if not rule.repeat:
                    self.spent.add(rule.id)
        return out

    def _state(self, rule: Rule, key: tuple[int, str, str]) -> MarketState:
        stored = self._stored.pop(key, None)
        if stored is None:
            return new_state(rule)
        return MarketState.restore(rule, *stored)

    def take_changed(self, floor: int | None) -> list[tuple[int, str, str, MarketState]]:
        """(rule id, source, quote, state) of the states changed since the last call; their
        windows pruned first: no tick before ``floor`` (event time) will be applied."""
        out = [(*key, s) for key, s in self.states.items() if s.changed]
        for *_, s in out:
            s.changed = False
            if s.window is not None and floor is not None:
                s.window.prune(floor)
        return out

    def forget(self, live: set[int]) -> None:
        """Drop the states of rules no longer active (removed, or spent and stored)."""
        for key in [k for k in self.states if k[0] not in live]:
            del self.states[key]
