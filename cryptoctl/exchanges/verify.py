"""`cryptoctl verify`: our 1-minute candles against the exchange's own, minute by minute.

Pure: both sides come in as rows, the verdicts go out. Rules (docs/exchanges.md):

- only closed minutes in ``[start_ms, end_ms)`` are judged (the caller never passes the
  minute still forming);
- a minute without trades is ``empty`` on a side: no row at all (we store no candle for
  it, Coinbase publishes none) or a row with zero volume and no trades (Binance, Kraken);
- prices compare exactly (both sides are ``float(str)`` of the exchange's decimals),
  trade counts exactly where the exchange gives one (Coinbase does not), volume and VWAP
  to 1e-9 relative (sums of floats), VWAP also to the digits the exchange published
  (``vwap_step``: Kraken rounds it to the pair's price decimals);
- a minute touched by a recorded gap, or stored as incomplete, is ``incomplete``: we know
  trades are missing there, so a difference is expected and not a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

MINUTE_MS = 60_000
REL_TOLERANCE = 1e-9

Status = Literal["match", "differs", "missing_here", "missing_there", "empty", "incomplete"]
STATUSES: tuple[Status, ...] = (
    "match", "differs", "missing_here", "missing_there", "empty", "incomplete",
)
GOOD: frozenset[Status] = frozenset({"match", "empty"})


class MinuteCandle(NamedTuple):
    """One side's candle of one minute. ``trades``/``vwap`` are None where unknown
    (Coinbase gives neither; Binance's VWAP is quote volume / volume)."""

    bucket_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None = None
    vwap: float | None = None
    complete: bool = True
    # The exchange's VWAP is published rounded (Kraken: to the pair's price decimals;
    # Binance's quote volume to 8): it matches within this much as well as within 1e-9.
    vwap_step: float = 0.0


class FieldDiff(NamedTuple):
    field: str
    ours: float | int | None
    theirs: float | int | None


class Minute(NamedTuple):
    symbol: str
    bucket_ms: int
    status: Status
    diffs: tuple[FieldDiff, ...] = ()


def _empty(c: MinuteCandle | None) -> bool:
    return c is None or (c.volume == 0 and not c.trades)


def _close(a: float, b: float, step: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=step)


def differences(ours: MinuteCandle, theirs: MinuteCandle) -> tuple[FieldDiff, ...]:
    """The fields on which two candles of one minute disagree, in a fixed order."""
    out = [
        FieldDiff(name, getattr(ours, name), getattr(theirs, name))
        for name in ("open", "high", "low", "close")
        if getattr(ours, name) != getattr(theirs, name)
    ]
    if theirs.trades is not None and ours.trades != theirs.trades:
        out.append(FieldDiff("trades", ours.trades, theirs.trades))
    if not _close(ours.volume, theirs.volume):
        out.append(FieldDiff("volume", ours.volume, theirs.volume))
    step = theirs.vwap_step
    if ours.vwap is not None and theirs.vwap is not None and not _close(ours.vwap, theirs.vwap, step):
        out.append(FieldDiff("vwap", ours.vwap, theirs.vwap))
    return tuple(out)


def compare(
    symbol: str,
    ours: Iterable[MinuteCandle],
    theirs: Iterable[MinuteCandle],
    start_ms: int,
    end_ms: int,
    *,
    gaps: Sequence[tuple[int, int]] = (),
) -> list[Minute]:
    """A verdict per minute of ``[start_ms, end_ms)`` (both floored to the minute).

    ``gaps`` are recorded gaps of this market as (after_ts, before_ts) event-time ranges:
    every minute from the one holding ``after_ts`` to the one holding ``before_ts`` may
    miss trades, so it is ``incomplete`` (as is a candle stored with complete false).
    """
    first = start_ms - start_ms % MINUTE_MS
    last = end_ms - end_ms % MINUTE_MS
    here = {c.bucket_ms: c for c in ours}
    there = {c.bucket_ms: c for c in theirs}
    holed = [(a - a % MINUTE_MS, b - b % MINUTE_MS) for a, b in gaps]
    out = []
    for bucket in range(first, last, MINUTE_MS):
        mine, exch = here.get(bucket), there.get(bucket)
        if (mine is not None and not mine.complete) or any(a <= bucket <= b for a, b in holed):
            out.append(Minute(symbol, bucket, "incomplete"))
        elif _empty(mine) and _empty(exch):
            out.append(Minute(symbol, bucket, "empty"))
        elif _empty(exch):
            out.append(Minute(symbol, bucket, "missing_there"))
        elif mine is None or _empty(mine):
            out.append(Minute(symbol, bucket, "missing_here"))
        else:
            assert exch is not None
            diffs = differences(mine, exch)
            out.append(Minute(symbol, bucket, "differs" if diffs else "match", diffs))
    return out


def counts(minutes: Iterable[Minute]) -> dict[Status, int]:
    """How many minutes have each status (every status present, zeros included)."""
    out: dict[Status, int] = dict.fromkeys(STATUSES, 0)
    for m in minutes:
        out[m.status] += 1
    return out


def all_good(minutes: Iterable[Minute]) -> bool:
    return all(m.status in GOOD for m in minutes)
