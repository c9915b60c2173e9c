"""A synthetic market: geometric Brownian motion per symbol, trades with sizes.

Deterministic with a seed: the same seed, symbols, rate and ``start`` give the same
ticks, byte for byte (event times come from ``start`` and the tick index, never from the
wall clock). Without ``start`` the feed is live: event time is the wall clock.

Tick ``i`` has the nominal event time ``origin + i * 1000 / rate`` and is emitted once the
wall clock reaches it, so history from ``start`` is generated at full speed and the feed
continues live at ``rate`` once it has caught up. ``rate = 0`` is unthrottled: live ticks
take the wall clock, history advances by one millisecond per tick.

A share of ticks can be emitted late (``out_of_order``): such a tick keeps its event time
but is held back until the feed's event time has moved on by up to ``max_delay_ms``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from cryptoctl.errors import InvalidTick, UsageError
from cryptoctl.sources.base import (
    SourceCounters,
    StopFlag,
    note_problem,
    now_ms,
    plain_fields_ok,
    valid_symbol,
)
from cryptoctl.sources.coins import synthetic_coin
from cryptoctl.tick import MAX_TS_MS, MIN_TS_MS, Tick, ValidTick, checked_tick, trusted_tick

SOURCE = "synthetic"
_MS_PER_YEAR = 365.25 * 24 * 3600 * 1000
_BATCH = 2000  # ticks per batch when unthrottled
_MAX_WAIT_S = 0.05  # a paced source wakes at least this often (stop flag, delivery reports)
# ...and at most this often: at 2,000 ticks/s a wake-up per due tick was a batch of one or
# two, and the per-batch work of the producer loop took most of a core. Event times stay
# nominal; a tick leaves at most this much after its time.
_MIN_WAIT_S = 0.01
_LOG_INVALID_EVERY = 10_000  # an invalid tick is logged the first time, then this seldom
# Standard normal quantiles: one uniform draw + a lookup is ~5x cheaper than random.gauss,
# and 65,536 levels are plenty for a demo market (tails are cut at about 4.3 sigma).
_NORMAL_BITS = 16
_NORMAL = tuple(NormalDist().inv_cdf((j + 0.5) / (1 << _NORMAL_BITS)) for j in range(1 << _NORMAL_BITS))
_LOGNORMAL = tuple(math.exp(z) for z in _NORMAL)


@dataclass(frozen=True)
class SyntheticConfig:
    symbols: Sequence[str]
    rate: float = 10.0  # ticks per second over all symbols; 0 = unthrottled
    seed: int | None = None
    start_ms: int | None = None  # generate history from here; None = live
    out_of_order: float = 0.0  # share of ticks emitted late, 0..1
    max_delay_ms: int = 5_000


class _Walk:
    """One symbol's GBM price and trade sizes."""

    __slots__ = ("price", "scale", "size", "vol")

    def __init__(self, symbol: str) -> None:
        coin = synthetic_coin(symbol)
        self.price = coin.start_price
        self.size = coin.trade_size
        self.vol = coin.annual_vol
        # Prices keep about 6 significant digits, as exchanges quote them.
        decimals = max(2, 6 - math.floor(math.log10(coin.start_price)) - 1)
        self.scale = 10.0**decimals


class SyntheticSource:
    name = SOURCE

    def __init__(self, config: SyntheticConfig) -> None:
        if not 0.0 <= config.out_of_order <= 1.0:
            raise ValueError("out_of_order must be a share between 0 and 1")
        if config.start_ms is not None and not MIN_TS_MS <= config.start_ms <= MAX_TS_MS:
            raise UsageError(
                f"--start must be between 2009 and 2100, got {config.start_ms} (epoch ms)",
                hint="e.g. --start 2024-01-01 or --start 2h",
            )
        bad = [s for s in config.symbols if not valid_symbol(s)]
        if bad:
            raise UsageError(f"invalid symbol {bad[0]!r}", hint="symbols are upper-case letters/digits")
        self.config = config
        self.counters = SourceCounters()
        self._rng = random.Random(config.seed)
        self._symbols = list(config.symbols)
        self._walks = [_Walk(s) for s in self._symbols]
        self._late: list[tuple[int, int, ValidTick]] = []  # (release ts, seq, tick)
        self._seq = 0

    def _step_ms(self) -> float:
        return 1000.0 / self.config.rate if self.config.rate > 0 else 1.0

    def _batch(self, i0: int, n: int, origin: float, step: float, dt_ms: float) -> list[ValidTick]:
        """Ticks ``i0 .. i0+n-1``; tick i has event time ``origin + i * step``.

        The hot loop of the load generator, hence the local names. Symbols were checked in
        the constructor, source and quote are constants: only the numbers are checked per
        tick, by the shared rules, and a tick that fails gets validate_tick's verdict.
        """
        walks, symbols, uniform = self._walks, self._symbols, self._rng.getrandbits
        normal, lognormal, bits = _NORMAL, _LOGNORMAL, _NORMAL_BITS
        nsym = len(walks)
        dt = dt_ms * nsym / _MS_PER_YEAR  # time since the same symbol's previous tick
        sqrt_dt, exp, plain = math.sqrt(dt), math.exp, plain_fields_ok
        out: list[ValidTick] = []
        late = self.config.out_of_order > 0
        for i in range(i0, i0 + n):
            k = i % nsym
            walk = walks[k]
            vol = walk.vol
            walk.price *= exp(-0.5 * vol * vol * dt + vol * sqrt_dt * normal[uniform(bits)])
            qty = int(walk.size * lognormal[uniform(bits)] * 1e6 + 0.5) / 1e6 or walk.size
            scale = walk.scale
            price = int(walk.price * scale + 0.5) / scale or walk.price
            ts = int(origin + i * step)
            if plain(price, qty, ts, ts):
                tick = trusted_tick(symbols[k], price, ts, SOURCE, ts, "USD", qty)
            else:
                checked = self._reject(Tick(symbols[k], price, ts, SOURCE, ts, "USD", qty))
                if checked is None:
                    continue
                tick = checked
            if late:
                self._emit(tick, out)
            else:
                out.append(tick)
        return out

    def _reject(self, tick: Tick) -> ValidTick | None:
        """validate_tick's verdict on a tick the cheap check refused: counted, not produced
        (a price that under- or overflowed after a very long run, a time beyond 2100)."""
        try:
            return checked_tick(tick.to_dict())
        except InvalidTick as exc:
            self.counters.invalid += 1
            if self.counters.invalid % _LOG_INVALID_EVERY == 1:
                note_problem(self.counters, f"synthetic tick not produced: {exc.reason}")
            return None

    def _emit(self, tick: ValidTick, out: list[ValidTick]) -> None:
        """Append the tick, or hold it back to be emitted late."""
        cfg = self.config
        if cfg.out_of_order and self._rng.random() < cfg.out_of_order:
            release = tick.ts + self._rng.randint(1, max(1, cfg.max_delay_ms))
            self._seq += 1
            heapq.heappush(self._late, (release, self._seq, tick))
        else:
            out.append(tick)
        while self._late and self._late[0][0] <= tick.ts:
            out.append(heapq.heappop(self._late)[2])

    def ticks(self, n: int) -> list[ValidTick]:
        """The first ``n`` ticks, as fast as possible (history mode needs ``start_ms``)."""
        if self.config.start_ms is None:
            raise ValueError("ticks(n) needs a start time for deterministic event times")
        step = self._step_ms()
        return self._batch(0, n, self.config.start_ms, step, step)

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        live = self.config.start_ms is None
        if self.config.rate <= 0 and live:
            yield from self._unthrottled_live(stop)
        else:
            yield from self._paced(stop, now_ms() if live else self.config.start_ms or 0)

    def _unthrottled_live(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        i = 0
        last = now_ms()
        while not stop.is_set():
            ts = now_ms()
            step = max(ts - last, 1) / _BATCH  # the GBM moves with real elapsed time
            last = ts
            yield self._batch(i, _BATCH, ts, 0.0, step)
            i += _BATCH

    def _paced(self, stop: StopFlag, origin: int) -> Iterator[list[ValidTick]]:
        step = self._step_ms()
        throttled = self.config.rate > 0
        i = 0
        while not stop.is_set():
            wall = now_ms()
            # Every tick whose event time has come, up to a batch.
            due = _BATCH if not throttled else max(0, int((wall - origin) / step) + 1 - i)
            due = min(due, _BATCH)
            if due == 0:
                nxt = origin + i * step
                stop.wait(min(_MAX_WAIT_S, max(_MIN_WAIT_S, (nxt - wall) / 1000)))
                continue
            yield self._batch(i, due, origin, step, step)
            i += due
            if throttled and due < _BATCH:  # caught up: the next ticks are due later
                stop.wait(_MIN_WAIT_S)
        if self._late:  # the held-back ticks are still emitted, late as promised
            yield [t for _, _, t in sorted(self._late)]
            self._late.clear()
