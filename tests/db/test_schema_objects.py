"""The tables and views read from schema.sql are those it creates in a real database."""

from __future__ import annotations

from typing import Any

from cryptoctl.db.connection import connect
from cryptoctl.db.status import parse_schema, schema_objects, table_rows
from cryptoctl.settings import Settings


def created(settings: Settings) -> dict[str, set[str]]:
    """Table and view names in the test's schema, by kind, as PostgreSQL lists them."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT table_type, table_name FROM information_schema.tables WHERE table_schema = %s",
            (settings.db_schema,),
        ).fetchall()
    out: dict[str, set[str]] = {"BASE TABLE": set(), "VIEW": set()}
    for kind, name in rows:
        out[kind].add(name)
    return out


def test_parsed_names_are_what_the_schema_creates(settings: Settings) -> None:
    objects = schema_objects()
    real = created(settings)  # the fixture applied schema.sql to a fresh schema
    assert set(objects.tables) == real["BASE TABLE"]
    assert set(objects.views) == real["VIEW"]
    assert len(objects.tables) == len(set(objects.tables)) >= 7
    assert "kafka_generations" in objects.tables  # the table the old copied list lacked
    assert objects.views == ("v_latest_prices", "v_price_stats_24h")


def test_status_lists_every_table_with_its_rows(cli: Any, settings: Settings) -> None:
    import json

    with connect(settings) as conn:
        conn.execute("INSERT INTO cryptocurrencies (symbol) VALUES ('BTC'), ('ETH')")
        conn.commit()
        assert dict(table_rows(conn))["cryptocurrencies"] == 2
    result = cli("status", "--format", "json")
    assert result.exit_code == 0, result.stderr
    tables = {t["name"]: t["rows"] for t in json.loads(result.stdout)["tables"]}
    assert list(tables) == list(schema_objects().tables)
    assert tables["cryptocurrencies"] == 2 and tables["kafka_generations"] == 0


def test_parse_skips_comments_and_the_do_block() -> None:
    text = """
-- CREATE TABLE IF NOT EXISTS not_a_table (x int);
CREATE TABLE IF NOT EXISTS first (x int);
create table if not exists Second (
    y int
);
CREATE INDEX IF NOT EXISTS first_idx ON first (x);
CREATE OR REPLACE VIEW v_first AS SELECT x FROM first;
DO $$
BEGIN
    CREATE TABLE IF NOT EXISTS inside_do (z int);
END
$$;
"""
    objects = parse_schema(text)
    assert objects.tables == ("first", "second")
    assert objects.views == ("v_first",)
