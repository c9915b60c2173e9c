"""Known tick sets for the aggregator tests, and the expected candles from the reference."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cryptoctl.db.connection import connect
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick, decode_tick
from tests.windows.reference import reference

BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z: replayed history, far from "now"
WIDTH = 60_000
SYMBOLS = ["BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "DOT", "LTC"]


def make_ticks(
    n: int, *, seed: int = 1, minutes: int = 6, late_every: int = 0, trades: bool = False
) -> list[Tick]:
    """`n` ticks spread over `minutes` of event time, out of order by up to 2 s, with ties
    (equal ts), quotes without qty and ticks with extra fields; every `late_every`-th tick is
    4 minutes behind. With `trades`, a share are exchange trades of a second market of the
    same symbol (binance, USDT) with consecutive trade ids, some sent twice (a feed's
    re-send after a reconnect): those must count once."""
    rng = random.Random(seed)
    span = minutes * WIDTH
    out: list[Tick] = []
    next_id: dict[str, int] = {}
    sent: dict[str, list[Tick]] = defaultdict(list)
    for i in range(n):
        if trades and rng.random() < 0.3:
            symbol = rng.choice(SYMBOLS[:3])
            if sent[symbol] and rng.random() < 0.1:
                out.append(rng.choice(sent[symbol][-5:]))  # a re-sent trade
                continue
            ts = max(BASE + i * span // n, sent[symbol][-1].ts if sent[symbol] else 0)
            tid = next_id.get(symbol, 1000)
            next_id[symbol] = tid + 1
            price = round(100 + rng.random() * 10, 2)
            trade = Tick(symbol, price, ts, "binance", ts + 5, "USDT", round(rng.random(), 4),
                         trade_id=tid, side=rng.choice(["buy", "sell"]))
            sent[symbol].append(trade)
            out.append(trade)
            continue
        ts = BASE + i * span // n - rng.randrange(0, 2_000)
        if rng.random() < 0.1 and out:
            ts = out[-1].ts  # a tie
        if late_every and i and i % late_every == 0 and ts - BASE > 5 * WIDTH:
            ts -= 4 * WIDTH
        price = round(100 + rng.random() * 10, 2) if rng.random() > 0.2 else 100.0
        qty = None if rng.random() < 0.2 else round(rng.random() * 3, 4)
        # Some ticks carry extras, like CoinGecko's: they take validate_tick's slow path.
        extra = {"market_cap": price * 1e6, "change_24h_pct": -1.5} if rng.random() < 0.1 else {}
        out.append(Tick(rng.choice(SYMBOLS), price, ts, "synthetic", ts + 5, qty=qty, extra=extra))
    return out


def expected(
    messages: Sequence[Any], delay_ms: int, lateness_ms: int, *, before: Sequence[Any] = ()
) -> dict[str, Any]:
    """Reference candles and late count from the messages as stored, per partition order.

    `before`: messages an earlier broker had (each partition continues after them)."""
    by_partition: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    applied: dict[int, list[tuple[int, Tick]]] = defaultdict(list)  # (offset, tick), late ones too
    invalid = duplicates = 0
    newest: dict[tuple[str, str, str], int] = {}  # market -> highest trade id applied
    ordered = sorted(before, key=lambda m: (m.partition(), m.offset()))
    ordered += sorted(messages, key=lambda m: (m.partition(), m.offset()))
    for m in sorted(ordered, key=lambda m: m.partition()):  # stable: keeps segment order
        try:
            t = decode_tick(m.value())
        except ValueError:
            invalid += 1
            continue
        if m.key() != t.symbol.encode():  # another market's partition: dead-lettered
            invalid += 1
            continue
        market = (t.symbol, t.source, t.quote)
        if isinstance(t.trade_id, int):
            if t.trade_id <= newest.get(market, -1):
                duplicates += 1
                continue
            newest[market] = t.trade_id
        tid = t.trade_id if isinstance(t.trade_id, int) else None
        by_partition[m.partition()].append((t.symbol, t.ts, t.price, t.qty, t.source, t.quote, tid))
        applied[m.partition()].append((m.offset(), t))
    candles: dict[tuple[str, str, str, int], tuple] = {}
    late = 0
    for rows in by_partition.values():
        ref = reference(rows, delay_ms, lateness_ms, WIDTH)
        candles.update(ref["candles"])
        late += len(ref["late"])
    ticks = sum(len(r) for r in by_partition.values()) - late  # applied
    return {"candles": candles, "late": late, "invalid": invalid, "ticks": ticks,
            "duplicates": duplicates, "applied": applied}


def db_candles(settings: Settings) -> dict[tuple[str, str, str, int], tuple]:
    """Candles in PostgreSQL in the reference's tuple form (Candle.state()), keyed by
    (symbol, source, quote, bucket)."""
    with connect(settings) as conn:
        rows = conn.execute(
            """SELECT symbol, (extract(epoch FROM bucket) * 1000)::bigint, open, high, low,
                      close, volume, trades, price_sum, pv_sum,
                      (extract(epoch FROM open_time) * 1000)::bigint,
                      (extract(epoch FROM close_time) * 1000)::bigint, final,
                      source, quote, open_trade_id, close_trade_id, avg_price, vwap
                 FROM price_aggregates_1m"""
        ).fetchall()
    out = {}
    for r in rows:
        assert math.isclose(r[17], r[8] / r[7], rel_tol=1e-12), "avg_price"
        assert (r[18] is None) == (r[6] == 0), "vwap null exactly when volume is 0"
        out[(r[0], r[13], r[14], r[1])] = tuple(r[:17])
    return out


def assert_candles_equal(got: dict, want: dict, *, check_final: bool = False) -> None:
    assert sorted(got) == sorted(want), "candle keys differ"
    for key, g in got.items():
        w = want[key]
        # symbol, bucket, OHLC, trades, open/close time, market, open/close trade ids
        exact = (0, 1, 2, 3, 4, 5, 7, 10, 11, 13, 14, 15, 16)
        assert [g[i] for i in exact] == [w[i] for i in exact], key
        for i in (6, 8, 9):  # volume, price_sum, pv_sum
            assert math.isclose(g[i], w[i], rel_tol=1e-9, abs_tol=1e-9), (key, i)
        if check_final:
            assert g[12] == w[12], (key, "final")


def raw_tick_count(settings: Settings) -> tuple[int, int]:
    """(rows, distinct (partition, offset)) in raw_price_data."""
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM raw_price_data"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def scalar(settings: Settings, sql: str) -> Any:
    with connect(settings) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]
