"""Brute-force reference of the alert rules (docs/alerts.md, "Conditions"), for clarity."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cryptoctl.alerts.rules import Rule

# An applied tick, in stream order: (source, symbol, quote, price, ts)
Applied = tuple[str, str, str, float, int]


def fired(rules: Sequence[Rule], ticks: Sequence[Applied]) -> list[tuple[Any, ...]]:
    """Every firing as (tick index, rule id, source, quote, price, reference), in order."""
    out = []
    for rule in rules:
        spent: set[tuple[str, str]] = set()  # one-shot: the markets that fired it
        armed: dict[tuple[str, str], bool] = defaultdict(lambda: True)
        seen: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        for i, (source, symbol, quote, price, ts) in enumerate(ticks):
            if symbol != rule.symbol or rule.source not in (None, source):
                continue
            if rule.quote not in (None, quote):
                continue
            market = (source, quote)
            seen[market].append((ts, price))
            if market in spent:
                continue
            reference = None
            if rule.condition == "above":
                met = price >= rule.threshold
            elif rule.condition == "below":
                met = price <= rule.threshold
            else:
                assert rule.window_ms is not None
                window = [p for t, p in seen[market] if ts - rule.window_ms < t <= ts]
                low, high = min(window), max(window)
                if price >= low * (1 + rule.threshold / 100):
                    reference = low
                elif price <= high * (1 - rule.threshold / 100):
                    reference = high
                met = reference is not None
            if not met:
                armed[market] = True
            elif armed[market]:
                armed[market] = False
                out.append((i, rule.id, source, quote, price, reference))
                if not rule.repeat:
                    spent.add(market)
    return sorted(out)
