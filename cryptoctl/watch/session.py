"""The watch loop: read messages, update the state, hand ticks and redraws to the caller.

The caller (the CLI) decides what a tick and a redraw mean: a JSON line on stdout, or a
Rich Live refresh. Nothing here knows about the terminal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cryptoctl.cache.poller import CandlePoller
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from cryptoctl.watch.reader import open_consumer, read
from cryptoctl.watch.state import WatchState

__all__ = ["CandlePoller", "run_watch"]  # CandlePoller: what `watch` passes in


def run_watch(
    settings: Settings,
    state: WatchState,
    stop: threading.Event,
    *,
    from_beginning: bool = False,
    duration_s: float | None = None,
    on_tick: Callable[[Tick], None] | None = None,
    on_refresh: Callable[[], None] | None = None,
    refresh_s: float = 0.25,
    candles: CandlePoller | None = None,
    clock: Callable[[], float] = time.time,
) -> WatchState:
    """Watch until ``stop`` is set or ``duration_s`` has passed; returns the final state."""
    consumer = open_consumer(settings, from_beginning=from_beginning)
    deadline = time.monotonic() + duration_s if duration_s is not None else None
    last_refresh = 0.0
    try:
        for item in read(consumer, stop, deadline=deadline):
            now = clock()
            if item is not None:
                if item.gap:
                    state.gaps += 1  # a feed's record of missing trades: nothing to show
                elif item.tick is None:
                    state.reject(item.invalid or "invalid")
                elif state.apply(item.tick, now) and on_tick is not None:
                    on_tick(item.tick)
            if now - last_refresh >= refresh_s:
                last_refresh = now
                if candles is not None:
                    found = candles.poll(state.symbols(), now, keep=state.wants)
                    state.candles, state.cache_status = found.current, found.status
                if on_refresh is not None:
                    on_refresh()
    finally:
        consumer.close()
    return state

