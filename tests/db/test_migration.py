"""A database made by cryptoctl 0.1 (schema version 1) or by the release before alerts
(version 2) keeps its candles and alert rules when the current schema.sql is applied
(`up` / `db init`), and gains the market and alert columns."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cryptoctl.db.connection import apply_schema, connect
from cryptoctl.errors import DatabaseError
from cryptoctl.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
V1 = (FIXTURES / "schema_v1.sql").read_text()
V2 = (FIXTURES / "schema_v2.sql").read_text()


def _old_database(settings: Settings, schema_sql: str) -> None:
    """The test's schema emptied and made by an older release's schema.sql."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{settings.db_schema}"')
        conn.execute(f'SET search_path TO "{settings.db_schema}"')
        conn.execute(schema_sql.encode())


def _v1_database(settings: Settings) -> None:
    """The test's schema as cryptoctl 0.1 left it: its schema.sql, candles and ticks."""
    _old_database(settings, V1)
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO raw_price_data (time, symbol, quote, price, source) VALUES"
            " ('2026-01-01T00:00:01Z', 'BTC', 'USD', 100, 'coingecko'),"
            " ('2026-01-01T00:00:02Z', 'BTC', 'USD', 101, 'coingecko'),"
            " ('2026-01-01T00:00:03Z', 'BTC', 'USD', 102, 'synthetic')"
        )
        for symbol, close in (("BTC", 101.0), ("ETH", 3000.0)):
            conn.execute(
                "INSERT INTO price_aggregates_1m (symbol, bucket, open, high, low, close, volume,"
                " trades, price_sum, pv_sum, avg_price, open_time, close_time, final) VALUES"
                " (%s, '2026-01-01T00:00:00Z', 100, 102, 99, %s, 0, 3, 303, 0, 101,"
                " '2026-01-01T00:00:01Z', '2026-01-01T00:00:03Z', true)",
                (symbol, close),
            )


def _candles(settings: Settings) -> list[tuple[object, ...]]:
    with connect(settings) as conn:
        return conn.execute(
            "SELECT source, symbol, quote, close, trades, final FROM price_aggregates_1m"
            " ORDER BY symbol"
        ).fetchall()


def test_a_version_1_database_keeps_its_candles_with_a_market(settings: Settings) -> None:
    _v1_database(settings)
    apply_schema(settings)
    # A symbol's candles get the source and quote its raw ticks name most; without raw
    # ticks the source is unknown (it was never stored) and the quote USD (v1's only one).
    assert _candles(settings) == [
        ("coingecko", "BTC", "USD", 101.0, 3, True),
        ("unknown", "ETH", "USD", 3000.0, 3, True),
    ]
    with connect(settings) as conn:
        assert conn.execute("SELECT version FROM cryptoctl_schema").fetchall() == [(3,)]
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'price_aggregates_1m'::regclass AND contype = 'p'"
        ).fetchone()
        assert pk == ("PRIMARY KEY (source, symbol, quote, bucket)",)
        latest = conn.execute(
            "SELECT source, symbol, quote, price FROM v_latest_prices ORDER BY symbol"
        ).fetchall()
        assert latest == [("coingecko", "BTC", "USD", 101.0), ("unknown", "ETH", "USD", 3000.0)]
        # Two markets of one symbol and minute are two candles now.
        conn.execute(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low,"
            " close, trades, price_sum, avg_price, open_time, close_time) VALUES ('binance',"
            " 'BTC', 'USDT', '2026-01-01T00:00:00Z', 1, 1, 1, 1, 1, 1, 1, now(), now())"
        )
        conn.commit()
    apply_schema(settings)  # and applying it again changes nothing
    assert len(_candles(settings)) == 3


def test_a_version_2_database_keeps_its_candles_and_rules(settings: Settings) -> None:
    _old_database(settings, V2)
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low,"
            " close, trades, price_sum, avg_price, open_time, close_time, final) VALUES"
            " ('binance', 'BTC', 'USDT', '2026-01-01T00:00:00Z', 1, 2, 1, 2, 2, 3, 1.5,"
            " '2026-01-01T00:00:01Z', '2026-01-01T00:00:02Z', true)"
        )
        conn.execute(
            "INSERT INTO price_alerts (symbol, condition, threshold) VALUES ('BTC', 'above', 100)"
        )
        conn.execute("INSERT INTO cryptoctl_schema (version) VALUES (2)")
        conn.commit()
    apply_schema(settings)
    apply_schema(settings)
    with connect(settings) as conn:
        assert conn.execute("SELECT version FROM cryptoctl_schema").fetchall() == [(3,)]
        assert conn.execute(
            "SELECT source, symbol, quote, close, trades FROM price_aggregates_1m"
        ).fetchall() == [("binance", "BTC", "USDT", 2.0, 2)]
        # The old rule is a rule on every BTC market, one-shot, without targets.
        assert conn.execute(
            "SELECT symbol, source, quote, condition, threshold, window_ms, repeat, notify,"
            " active FROM price_alerts"
        ).fetchall() == [("BTC", None, None, "above", 100.0, None, False, [], True)]
        # Change rules are allowed now, and need their window.
        conn.execute(
            "INSERT INTO price_alerts (symbol, condition, threshold, window_ms)"
            " VALUES ('ETH', 'change', 5, 600000)"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO price_alerts (symbol, condition, threshold) VALUES ('ETH', 'change', 5)"
            )


def test_a_fresh_database_is_version_3_and_reapplying_changes_nothing(settings: Settings) -> None:
    apply_schema(settings)
    with connect(settings) as conn:
        assert conn.execute("SELECT version FROM cryptoctl_schema").fetchall() == [(3,)]


def test_a_database_of_a_newer_cryptoctl_is_refused_unchanged(settings: Settings) -> None:
    with connect(settings) as conn:
        conn.execute("UPDATE cryptoctl_schema SET version = 4")
        conn.commit()
    with pytest.raises(DatabaseError, match="schema version 4, newer than this cryptoctl"):
        apply_schema(settings)
    with connect(settings) as conn:
        assert conn.execute("SELECT version FROM cryptoctl_schema").fetchall() == [(4,)]
