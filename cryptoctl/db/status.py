"""The SQL of `cryptoctl status` (and of the local runtime's PostgreSQL checks): server
version, database creation, and the tables schema.sql creates with their row counts.

The names of the tables and views come from schema.sql itself, so a table added there
shows up in `status` without a second list to keep in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# Statements at the start of a line only: a CREATE inside the DO block (the TimescaleDB
# extension) is indented, and a comment that mentions one starts with "--".
_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE | re.IGNORECASE)
_VIEW = re.compile(r"^CREATE OR REPLACE VIEW\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class SchemaObjects:
    tables: tuple[str, ...]  # in the order schema.sql creates them
    views: tuple[str, ...]


def parse_schema(text: str) -> SchemaObjects:
    """The tables (``CREATE TABLE IF NOT EXISTS name``) and views (``CREATE OR REPLACE
    VIEW name``) a schema file creates."""
    return SchemaObjects(
        tuple(m.lower() for m in _TABLE.findall(text)), tuple(m.lower() for m in _VIEW.findall(text))
    )


@cache
def schema_objects() -> SchemaObjects:
    """What cryptoctl's schema.sql creates."""
    from cryptoctl.db.connection import schema_sql

    return parse_schema(schema_sql())


def server_version(conn: psycopg.Connection[Any]) -> str | None:
    """The server's version as it reports it (``16.4 (Ubuntu 16.4-1.pgdg22.04+1)``)."""
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row and row[0] else None


def ping(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1")


def ensure_database(conn: psycopg.Connection[Any], name: str) -> None:
    """Create database ``name`` unless it exists (``conn``: autocommit, another database)."""
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def relation_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether table or view ``name`` exists on the connection's search_path."""
    row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return bool(row and row[0] is not None)


_GAPS = """
SELECT source, symbol, quote, first_trade_id, last_trade_id,
       (extract(epoch FROM after_time) * 1000)::bigint,
       (extract(epoch FROM before_time) * 1000)::bigint, reason, count(*) OVER ()
  FROM feed_gaps
 ORDER BY before_time DESC, id DESC
 LIMIT %s
"""


def feed_gaps(conn: psycopg.Connection[Any], limit: int = 10) -> tuple[int, list[tuple[Any, ...]]]:
    """(how many gaps exchange feeds recorded, the newest ``limit`` of them as rows of
    source, symbol, quote, first id, last id, after ms, before ms, reason). A schema without
    the table (an older release's) has none."""
    if not relation_exists(conn, "feed_gaps"):
        return 0, []
    rows = conn.execute(_GAPS, (limit,)).fetchall()
    return (int(rows[0][8]) if rows else 0), [tuple(r[:8]) for r in rows]


def table_rows(conn: psycopg.Connection[Any], names: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(table, rows) of each of ``names`` (default: schema.sql's tables) that exists on the
    connection's search_path, in the order given."""
    from psycopg import sql

    out = []
    for name in schema_objects().tables if names is None else names:
        if relation_exists(conn, name):
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
            out.append((name, int(count[0]) if count else 0))
    return out


_CHECKPOINTS = """
SELECT m.consumer_group, m.topic, m.kafka_partition, m.next_offset, m.watermark_ms, m.owner,
       m.cluster_id,
       (extract(epoch FROM now() - coalesce(m.committed_at, m.updated_at)) * 1000)::bigint,
       {generation}
  FROM processing_metadata m {join}
 ORDER BY m.consumer_group, m.topic, m.kafka_partition
"""


def checkpoints(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The aggregators' stored checkpoints, one row per (group, topic, partition): group,
    topic, partition, next offset, watermark ms, owner, cluster id, ms since the last commit
    (since the claim if it never committed; a claim alone does not count: an aggregator
    restarting in a loop without committing is stalled; by the server's clock), and the
    pipeline's Kafka group generation. A schema without the tables (not initialised, an
    older release's) has none."""
    if not relation_exists(conn, "processing_metadata"):
        return []
    with_generations = relation_exists(conn, "kafka_generations")
    query = _CHECKPOINTS.format(
        generation="coalesce(g.generation, 0)" if with_generations else "0",
        join="LEFT JOIN kafka_generations g USING (consumer_group, topic)" if with_generations else "",
    )
    return [tuple(r) for r in conn.execute(query).fetchall()]
