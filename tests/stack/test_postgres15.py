"""schema.sql and every query also run on PostgreSQL 15, the oldest version we support.

The local runtime ships PostgreSQL 18; this starts the machine's PostgreSQL 15 (Debian's
`postgresql-15`, which .ci/run installs) through the same local-runtime code, then applies
the schema twice, runs the exactly-once sink (claim, upsert, binary COPY, fencing) and the
candle roll-up against a brute-force reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cryptoctl.db.connection import apply_schema, connect
from cryptoctl.db.sink import PartitionFlush, Sink
from cryptoctl.db.status import schema_objects
from cryptoctl.settings import Settings
from cryptoctl.stack import binaries, local
from cryptoctl.tick import Tick
from cryptoctl.windows import PartitionWindows
from tests.conftest import free_port, state_home
from tests.db.test_rollup import check_rollup

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def pg15() -> Iterator[Settings]:
    if not (PG15_BIN / "postgres").is_file():
        pytest.fail(f"PostgreSQL 15 is not installed at {PG15_BIN}: apt-get install postgresql-15")
    mp = pytest.MonkeyPatch()
    mp.setattr(binaries, "postgres_bin_dir", lambda: PG15_BIN)
    with state_home() as home:
        settings = Settings(
            home=home,
            database_url=f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
            db_schema="pg15",
        )
        try:
            local.start_service(settings, "postgres")
            yield settings
        finally:
            local.stop_service(settings, "postgres")
            mp.undo()


def test_it_is_postgresql_15(pg15: Settings) -> None:
    with connect(pg15) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None and 150000 <= int(version[0]) < 160000


def test_schema_applies_twice_unchanged(pg15: Settings) -> None:
    def shape() -> list[tuple]:
        with connect(pg15) as conn:
            return conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'pg15' ORDER BY 1, 2"
            ).fetchall()

    apply_schema(pg15)
    first = shape()
    apply_schema(pg15)
    assert shape() == first
    objects = schema_objects()  # the names read from schema.sql, which `status` counts
    assert {row[0] for row in first} == {*objects.tables, *objects.views}


def test_sink_and_views(pg15: Settings) -> None:
    settings = replace(pg15, db_schema="pg15_sink")
    apply_schema(settings)
    base = 1_793_491_200_000
    windows = PartitionWindows(5_000, 60_000)
    rows = [Tick(symbol="BTC", price=100.0 + i, ts=base + i * 1_000, source="test",
                 recv_ts=base + i * 1_000, qty=0.5) for i in range(90)]
    for t in rows:
        windows.add(t.symbol, t.ts, t.price, t.qty)
    candles = windows.finalize() + windows.take_dirty()
    assert len(candles) == 2

    sink = Sink(settings, group="g", topic="t", owner="a", retry_for_s=5)
    stale = Sink(settings, group="g", topic="t", owner="b", retry_for_s=5)
    old_epoch = stale.claim([0], "c1")[0].epoch
    epoch = sink.claim([0], "c1")[0].epoch
    flush = PartitionFlush(0, epoch, 90, windows.watermark, candles, list(rows), list(range(90)))
    assert stale.commit([replace(flush, epoch=old_epoch)], "c1") == {0}
    assert sink.commit([flush], "c1") == set()
    sink.close()
    stale.close()

    with connect(settings) as conn:
        assert conn.execute("SELECT count(*), sum(price) FROM raw_price_data").fetchone() == (
            90, sum(r[1] for r in rows))
        got = conn.execute(
            "SELECT open, close, trades FROM price_aggregates_1m ORDER BY bucket").fetchall()
        assert got == [(100.0, 159.0, 60), (160.0, 189.0, 30)]
        assert conn.execute("SELECT next_offset FROM processing_metadata").fetchone() == (90,)
        assert conn.execute("SELECT symbol, price FROM v_latest_prices").fetchall() == [
            ("BTC", 189.0)]
        conn.execute("SELECT * FROM v_price_stats_24h").fetchall()  # compiles and runs on 15


def test_rollup_on_date_bin(pg15: Settings) -> None:
    settings = replace(pg15, db_schema="pg15_rollup")
    apply_schema(settings)
    btc, eth = ("synthetic", "BTC", "USD"), ("synthetic", "ETH", "USD")
    ticks = [(btc, m * 60_000 + s * 7_000, 100.0 + (m * 7 + s) % 13, 0.1 * s or None)
             for m in range(12) for s in range(4)]
    ticks += [(eth, m * 60_000 + 1_000, 50.0 + m, None) for m in range(0, 12, 3)]
    ticks += [(("binance", "BTC", "USDT"), m * 60_000 + 2_000, 90.0 + m, 1.0) for m in range(6)]
    with connect(settings, autocommit=True) as conn:
        check_rollup(conn, ticks, [True] * 11 + [False], "5m", (None, None, None), "date_bin",
                     gaps=[(btc, 3 * 60_000 + 500, 4 * 60_000 + 10)])
