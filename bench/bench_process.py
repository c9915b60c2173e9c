"""The aggregator's per-tick cost alone: ``Aggregator._process`` over in-memory messages.

    .venv/bin/python bench/bench_process.py [--ticks 100000] [--repeat 7] [--store] [--trades]

No broker, no database: messages are plain objects with the confluent-kafka Message
methods the loop calls, values are real tick JSON (5 symbols, event time in order; with
--trades, exchange trades with consecutive trade ids and a taker side, 1 % of them sent
twice: the per-market exactly-once check and the trade-id tie rule run on each). A
market's first trade claims its home partition in PostgreSQL: here a stub answers "this
partition". It prints the best and the median nanoseconds per tick over --repeat runs.
For an A/B of two checkouts, run this file with each checkout's interpreter, alternating:

    /path/to/old/.venv/bin/python bench/bench_process.py
    .venv/bin/python bench/bench_process.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import orjson

from cryptoctl.aggregator.core import Aggregator, AggregatorOptions, PartitionState
from cryptoctl.settings import load_settings
from cryptoctl.windows import PartitionWindows

SYMBOLS = ["BTC", "ETH", "SOL", "ADA", "XRP"]
BASE_TS = 1_704_067_200_000


class FakeMessage:
    """What ``_process`` calls on a confluent-kafka Message."""

    __slots__ = ("_key", "_offset", "_value")

    def __init__(self, value: bytes, key: bytes, offset: int) -> None:
        self._value, self._key, self._offset = value, key, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return "bench"


class HomeHere:
    """Sink.claim_market without a database: every market's home is the asking partition."""

    def claim_market(self, market: Any, partition: int, trade_id: int, ts: int) -> tuple[int, int]:
        return partition, trade_id - 1


def messages(n: int, *, trades: bool = False, symbols: list[str] = SYMBOLS) -> list[Any]:
    rng = random.Random(1)
    out: list[Any] = []
    for i in range(n):
        sym, ts = symbols[i % len(symbols)], BASE_TS + i * 3
        tick: dict[str, Any] = {"v": 1, "symbol": sym, "quote": "USD",
                                "price": round(100 + rng.random(), 4),
                                "qty": round(rng.random(), 4), "ts": ts, "source": "synthetic",
                                "recv_ts": ts}
        if trades:
            tick |= {"source": "binance", "quote": "USDT", "trade_id": 1_000 + i // len(symbols),
                     "side": "buy" if i % 2 else "sell"}
            if i > 100 and rng.random() < 0.01:  # a re-sent trade: counted once
                out.append(FakeMessage(out[-len(symbols)]._value, sym.encode(), i))
                continue
        out.append(FakeMessage(orjson.dumps(tick), sym.encode(), i))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--store", action="store_true", help="buffer raw ticks as `aggregate` does")
    ap.add_argument("--trades", action="store_true", help="exchange trades with trade ids")
    args = ap.parse_args()
    msgs = messages(args.ticks, trades=args.trades)
    runs = []
    for _ in range(args.repeat):
        agg = Aggregator(load_settings(environ={}), AggregatorOptions(store_ticks=args.store))
        agg._states[0] = PartitionState(1, PartitionWindows(5_000, 60_000), None, 0.0)
        agg._sink = HomeHere()  # type: ignore[assignment]
        t0 = time.perf_counter()
        for i in range(0, len(msgs), 10_000):
            agg._process(msgs[i : i + 10_000], 0.0)
        runs.append(time.perf_counter() - t0)
    per_tick = [r / len(msgs) * 1e9 for r in runs]
    print(f"ns/tick best {min(per_tick):,.0f} median {statistics.median(per_tick):,.0f}"
          f" ({args.ticks:,} ticks, {args.repeat} runs, store={args.store},"
          f" trades={args.trades})")


if __name__ == "__main__":
    main()
