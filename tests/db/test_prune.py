"""`cryptoctl db prune` on a known data set: exact counts, candles untouched unless asked
(and then only final ones), --dry-run deletes nothing, a bad duration exits 2; the cutoff
property-tested against a brute-force filter; on the TimescaleDB stand-in, drop_chunks
qualified by the extension's schema and the retention policy reported."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cryptoctl.db.connection import apply_schema, connect
from cryptoctl.db.prune import prune
from cryptoctl.errors import ExitCode
from cryptoctl.settings import Settings
from cryptoctl.times import ms_datetime
from tests.db.test_timescale import calls, timescale_pg  # noqa: F401 - a fixture
from tests.helpers import stack_env
from tests.test_exit_status import cryptoctl, error_line

DAY = 86_400_000
NOW = int(time.time() * 1000)


def insert(settings: Settings, raw: Sequence[int], late: Sequence[int] = (),
           candles: Sequence[tuple[int, bool]] = ()) -> None:  # fmt: skip
    """Rows at these epoch ms: raw ticks, late ticks, and 1m candles (bucket, final)."""
    with connect(settings) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw_price_data (time, symbol, quote, price, qty, source)"
            " VALUES (%s, 'BTC', 'USD', 100, 1, 'synthetic')",
            [(ms_datetime(ms),) for ms in raw],
        )
        cur.executemany(
            "INSERT INTO late_ticks (time, symbol, price, kafka_partition, kafka_offset, watermark,"
            " lateness_ms) VALUES (%s, 'BTC', 100, 0, 0, %s, 1000)",
            [(ms_datetime(ms), ms_datetime(ms)) for ms in late],
        )
        cur.executemany(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low, close,"
            " trades, price_sum, avg_price, open_time, close_time, final)"
            " VALUES ('synthetic', 'BTC', 'USD', %s, 1, 1, 1, 1, 1, 1, 1, %s, %s, %s)",
            [(ms_datetime(b), ms_datetime(b), ms_datetime(b), final) for b, final in candles],
        )
        conn.commit()


def times(settings: Settings, table: str, column: str = "time") -> list[datetime]:
    with connect(settings) as conn:
        return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} ORDER BY 1").fetchall()]


def known_set(settings: Settings) -> None:
    """250 raw ticks and 7 late ticks 40 days old, 30 and 3 a day old; candles: 5 final
    and 2 open ones 40 days old, 4 final a day old."""
    old, new = NOW - 40 * DAY, NOW - DAY
    insert(
        settings,
        raw=[old + i for i in range(250)] + [new + i for i in range(30)],
        late=[old + i for i in range(7)] + [new + i for i in range(3)],
        candles=[(old + i * 60_000, True) for i in range(5)]
        + [(old + (10 + i) * 60_000, False) for i in range(2)]
        + [(new + i * 60_000, True) for i in range(4)],
    )


def counts(cli, *args: str) -> dict[str, int]:
    result = cli("db", "prune", "--older-than", "30d", "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return {t["table"]: t["rows"] for t in json.loads(result.stdout)["tables"]}


def test_prune_deletes_exactly_the_old_ticks_in_batches_and_leaves_candles(cli, settings: Settings) -> None:
    known_set(settings)
    result = cli("db", "prune", "--older-than", "30d", "--batch-size", "40")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == "pruning raw_price_data: 40 rows…"  # not a TTY: lines
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[3:]}
    assert rows == {"raw_price_data": "250", "late_ticks": "7"}, result.stdout
    assert len(times(settings, "raw_price_data")) == 30 and len(times(settings, "late_ticks")) == 3
    assert len(times(settings, "price_aggregates_1m", "bucket")) == 11  # untouched
    assert counts(cli) == {"raw_price_data": 0, "late_ticks": 0}  # nothing left to do


def test_candles_only_with_the_flag_and_only_final_ones(cli, settings: Settings) -> None:
    known_set(settings)
    assert counts(cli, "--candles", "--batch-size", "2") == {
        "raw_price_data": 250, "late_ticks": 7, "price_aggregates_1m": 5,
    }  # fmt: skip
    with connect(settings) as conn:
        left = conn.execute(
            "SELECT final, count(*) FROM price_aggregates_1m GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert left == [(False, 2), (True, 4)]  # the open old ones are kept


def test_dry_run_counts_and_deletes_nothing(cli, settings: Settings) -> None:
    known_set(settings)
    result = cli("db", "prune", "--older-than", "30d", "--dry-run", "--candles")
    assert result.exit_code == 0, result.stderr
    assert "would delete" in result.stdout and "250" in result.stdout and "count only" in result.stdout
    assert len(times(settings, "raw_price_data")) == 280 and len(times(settings, "late_ticks")) == 10
    assert len(times(settings, "price_aggregates_1m", "bucket")) == 11


def test_a_bad_duration_exits_2(settings: Settings) -> None:
    for bad, says in (("thirty days", "invalid duration 'thirty days'"), ("0s", "greater than zero")):
        result = cryptoctl("db", "prune", "--older-than", bad, env=stack_env(settings))
        assert result.returncode == ExitCode.USAGE, result.stderr
        line = error_line(result)
        assert "--older-than" in line and says in line and "cryptoctl db prune --help" in line
    missing = cryptoctl("db", "prune", env=stack_env(settings))
    assert missing.returncode == ExitCode.USAGE and "--older-than" in error_line(missing)


@hsettings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ages=st.lists(st.integers(0, 10 * DAY), max_size=60),
    older_than=st.integers(1, 10 * DAY),
    batch=st.integers(1, 25),
)
def test_what_is_left_is_what_a_filter_keeps(settings: Settings, ages: list[int], older_than: int,
                                              batch: int) -> None:  # fmt: skip
    with connect(settings) as conn:
        conn.execute("TRUNCATE raw_price_data, late_ticks")
        conn.commit()
    insert(settings, raw=[NOW - a for a in ages], late=[NOW - a for a in ages[::2]])
    result = prune(settings, older_than, batch_size=batch, now_ms=NOW)
    cutoff = NOW - older_than
    expect_raw = sorted(NOW - a for a in ages if NOW - a >= cutoff)
    expect_late = sorted(NOW - a for a in ages[::2] if NOW - a >= cutoff)
    assert [t.rows for t in result.tables] == [len(ages) - len(expect_raw), len(ages[::2]) - len(expect_late)]
    assert times(settings, "raw_price_data") == [ms_datetime(ms) for ms in expect_raw]
    assert times(settings, "late_ticks") == [ms_datetime(ms) for ms in expect_late]


def test_on_timescaledb_old_chunks_are_dropped_and_the_policy_reported(timescale_pg: Settings) -> None:  # noqa: F811
    apply_schema(timescale_pg)
    with connect(timescale_pg) as conn:
        conn.execute("TRUNCATE raw_price_data, late_ticks, price_aggregates_1m")
        conn.commit()
    known_set(timescale_pg)
    dry = prune(timescale_pg, 30 * DAY, dry_run=True)
    assert [(t.table, t.rows) for t in dry.tables] == [("raw_price_data", 250), ("late_ticks", 7)]
    result = prune(timescale_pg, 30 * DAY, candles=True)
    by_table = {t.table: t for t in result.tables}
    assert result.timescaledb and result.retention_policies == {"raw_price_data": "30 days"}
    assert (by_table["raw_price_data"].how, by_table["raw_price_data"].rows) == ("drop_chunks", 250)
    assert (by_table["late_ticks"].how, by_table["late_ticks"].rows) == ("drop_chunks", 7)
    # Candles: only the final ones, row by row (a chunk can hold open candles too).
    assert (by_table["price_aggregates_1m"].how, by_table["price_aggregates_1m"].rows) == ("delete", 5)
    dropped = [c for c in calls(timescale_pg) if c[0] == "drop_chunks"]
    assert [(c[1], c[2]) for c in dropped[-2:]] == [
        ("crypto_a", "raw_price_data"),
        ("crypto_a", "late_ticks"),
    ]
    assert len(times(timescale_pg, "raw_price_data")) == 30
