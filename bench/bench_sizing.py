"""Bytes on disk per stored raw tick, late tick and 1m candle, indexes included.

    .venv/bin/python bench/bench_sizing.py [--rows 200000]

Starts the local runtime's PostgreSQL alone (free port, temporary state dir), applies
schema.sql, and for each table writes --rows rows the way the aggregator does (COPY),
then reports (pg_total_relation_size after - before) / rows: heap, TOAST and every index
of the table. Raw ticks are measured twice: quotes without a trade id (synthetic,
CoinGecko) and exchange trades (trade id and side). After VACUUM (ANALYZE), as a table
that has been written for a while and vacuumed by autovacuum would be.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchlib import free_port

from cryptoctl.db.connection import apply_schema, connect
from cryptoctl.settings import Settings
from cryptoctl.stack import local
from cryptoctl.times import ms_datetime

BASE_TS = 1_704_067_200_000
SYMBOLS = ["BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "DOT", "LTC", "AVAX", "LINK"]

Rows = Callable[[int], Iterator[tuple[Any, ...]]]


def quotes(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        ts = BASE_TS + i * 10
        yield (ms_datetime(ts), SYMBOLS[i % 10], "USD", 100.0 + i % 997 / 10, 0.5, "synthetic",
               ms_datetime(ts + 5), i % 6, i // 6, None, None, None)  # fmt: skip


def trades(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        ts = BASE_TS + i * 10
        yield (ms_datetime(ts), SYMBOLS[i % 10], "USDT", 100.0 + i % 997 / 10, 0.0123, "binance",
               ms_datetime(ts + 5), i % 6, i // 6, None, str(3_000_000_000 + i),
               "buy" if i % 2 else "sell")  # fmt: skip


def late(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        ts = BASE_TS + i * 10
        yield (ms_datetime(ts), "synthetic", SYMBOLS[i % 10], "USD", None, 100.0, 0.5, i % 6, i,
               ms_datetime(ts + 90_000), 90_000)  # fmt: skip


def candles(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        bucket = BASE_TS + (i // 10) * 60_000
        yield ("synthetic", SYMBOLS[i % 10], "USD", ms_datetime(bucket), 100.0, 101.0, 99.0, 100.5,
               12.5, 120, 12_060.0, 1256.25, 100.5, 100.5, ms_datetime(bucket + 10),
               ms_datetime(bucket + 59_990), i % 6, True)  # fmt: skip


TABLES: list[tuple[str, str, str, Rows]] = [
    ("raw tick (quote)", "raw_price_data",
     "time, symbol, quote, price, qty, source, recv_time, kafka_partition, kafka_offset, extra,"
     " trade_id, side", quotes),
    ("raw tick (exchange trade)", "raw_price_data",
     "time, symbol, quote, price, qty, source, recv_time, kafka_partition, kafka_offset, extra,"
     " trade_id, side", trades),
    ("late tick", "late_ticks",
     "time, source, symbol, quote, trade_id, price, qty, kafka_partition, kafka_offset,"
     " watermark, lateness_ms", late),
    ("1m candle", "price_aggregates_1m",
     "source, symbol, quote, bucket, open, high, low, close, volume, trades, price_sum, pv_sum,"
     " avg_price, vwap, open_time, close_time, kafka_partition, final", candles),
]  # fmt: skip


def measure(settings: Settings, table: str, columns: str, rows: Rows, n: int) -> float:
    """Bytes per row of ``n`` rows written to an empty ``table`` (then vacuumed)."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")
        conn.execute(f"VACUUM {table}")
        before = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
        with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows(n):
                copy.write_row(row)
        conn.execute(f"VACUUM (ANALYZE) {table}")
        after = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"  {table}: {before:,} -> {after:,} bytes (PostgreSQL {version})", file=sys.stderr)
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cryptoctl-bench-") as home:
        settings = Settings(
            home=Path(home),
            database_url=f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
        )
        settings = replace(settings, db_schema="sizing")
        local.start_service(settings, "postgres")
        try:
            apply_schema(settings)
            print(f"{args.rows:,} rows per table; {platform.machine()}, Python {platform.python_version()}")
            print(f"{'row':<28}{'bytes/row':>10}{'per 1M rows':>14}")
            for label, table, columns, rows in TABLES:
                t0 = time.perf_counter()
                per_row = measure(settings, table, columns, rows, args.rows)
                print(f"{label:<28}{per_row:>10.0f}{per_row * 1e6 / 2**20:>11.0f} MiB"
                      f"   ({time.perf_counter() - t0:.1f}s)")  # fmt: skip
        finally:
            local.stop_service(settings, "postgres")


if __name__ == "__main__":
    main()
