"""What every source shares: the interface, its counters, the one way to build a tick."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cryptoctl.tick import Tick, fast_tick_fields, validate_tick

log = logging.getLogger("cryptoctl.producer")


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

    def batches(self, stop: StopFlag) -> Iterator[list[Tick]]:
        """Batches of valid ticks until the source ends or ``stop`` is set.

        A source paces itself (poll interval, --rate, --speed) by waiting on ``stop``.
        """
        ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def checked_tick(obj: dict[str, Any]) -> Tick:
    """A tick dict -> Tick through the shared validation, or InvalidTick.

    The cheap check answers for plainly valid ticks; anything else goes to validate_tick,
    so the verdict is always validate_tick's.
    """
    fields = fast_tick_fields(obj)
    if fields is None:
        return validate_tick(obj)
    symbol, price, qty, ts, quote, source, recv_ts, _ = fields
    return Tick(symbol, price, ts, source, recv_ts, quote, qty)


def note_problem(counters: SourceCounters, message: str, *, level: int = logging.WARNING) -> None:
    counters.last_problem = message
    log.log(level, message)
