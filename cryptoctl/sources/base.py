"""What every source shares: the interface, its counters, the one way to build a tick."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NewType, Protocol, cast

from cryptoctl.tick import (
    MAX_TS_MS,
    MAX_VALUE,
    MIN_TS_MS,
    Tick,
    fast_tick_fields,
    is_code,
    validate_tick,
)

log = logging.getLogger("cryptoctl.producer")

# A tick that has passed the shared validation (validate_tick's rules). Sources yield only
# these and the Kafka sender takes only these, so each tick is checked exactly once, in
# the source, where a bad one can still be reported with its context (a line number, a
# coin id). mypy enforces the flow; at run time it is a plain Tick, at no cost.
ValidTick = NewType("ValidTick", Tick)

# The Tick constructor, typed as returning a ValidTick: for a source's hot loop that has
# checked the fields itself with `plain_fields_ok` (or knows them constant and valid, like
# its own name and the quote "USD"). Positional: symbol, price, ts, source, recv_ts,
# quote, qty.
trusted_tick = cast(Callable[[str, float, int, str, int, str, float | None], ValidTick], Tick)


class StopFlag(Protocol):
    """What a source waits on: a ``threading.Event`` fits, so does the produce loop's
    run control (which also serves Kafka delivery reports while a source sleeps)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class SourceCounters:
    """Written by the source (one thread), read by anyone: plain ints, no lock needed."""

    unchanged: int = 0  # a quote whose event time did not move: not produced again
    invalid: int = 0  # a quote or row rejected by validation: counted, never produced
    source_errors: int = 0  # a request or read that failed (after its retries)
    retries: int = 0  # requests retried by the source
    last_problem: str = ""


class Source(Protocol):
    name: str
    counters: SourceCounters

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        """Batches of validated ticks until the source ends or ``stop`` is set.

        A source paces itself (poll interval, --rate, --speed) by waiting on ``stop``.
        """
        ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def checked_tick(obj: dict[str, Any]) -> ValidTick:
    """A tick dict -> ValidTick through the shared validation, or InvalidTick.

    The cheap check answers for plainly valid ticks; anything else goes to validate_tick,
    so the verdict is always validate_tick's.
    """
    fields = fast_tick_fields(obj)
    if fields is None:
        return ValidTick(validate_tick(obj))
    symbol, price, qty, ts, quote, source, recv_ts, _ = fields
    return trusted_tick(symbol, price, ts, source, recv_ts, quote, qty)


def valid_symbol(symbol: str) -> bool:
    """validate_tick's rule for the symbol (what a cache of checked symbols may hold)."""
    return is_code(symbol)


def plain_fields_ok(price: float, qty: float | None, ts: int, recv_ts: int) -> bool:
    """validate_tick's rules for the per-tick numbers, as plain comparisons on floats and
    ints (NaN fails every comparison). With a valid symbol, a non-empty source and an
    upper-case quote, True means validate_tick accepts the tick with these values."""
    return (
        0.0 < price < MAX_VALUE
        and (qty is None or 0.0 <= qty < MAX_VALUE)
        and MIN_TS_MS <= ts <= MAX_TS_MS
        and MIN_TS_MS <= recv_ts <= MAX_TS_MS
    )


def note_problem(counters: SourceCounters, message: str, *, level: int = logging.WARNING) -> None:
    counters.last_problem = message
    log.log(level, message)
