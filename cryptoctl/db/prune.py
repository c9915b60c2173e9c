"""`cryptoctl db prune`: delete raw and late ticks (and, when asked, final candles) older
than a cutoff, in batches.

Each batch is its own short transaction, so the aggregator, which inserts new rows into
the same tables, never waits on the prune for long. Rows are picked by (tableoid, ctid),
which names one row even on a partitioned table or a hypertable. On TimescaleDB the tick
tables are hypertables: their old chunks are dropped whole (``drop_chunks``, qualified by
the extension's schema, like schema.sql's calls), and the retention policy is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import psycopg

# (table, time column, extra condition): what prune deletes; candles only when asked.
TICK_TABLES = (("raw_price_data", "time", None), ("late_ticks", "time", None))
CANDLES = ("price_aggregates_1m", "bucket", "final")  # never an open or updatable candle

Progress = Callable[[str, int], None]  # (table, rows deleted so far)


@dataclass(frozen=True)
class TablePrune:
    table: str
    rows: int  # deleted (or, in a dry run, that would be)
    how: str  # "delete" (batched) or "drop_chunks"
    chunks: int = 0  # chunks dropped (drop_chunks)


@dataclass(frozen=True)
class PruneResult:
    cutoff: str  # ISO-8601 UTC: rows before it go
    dry_run: bool
    tables: list[TablePrune] = field(default_factory=list)
    # TimescaleDB: table -> the retention policy's drop_after ("30 days"), where one is set
    retention_policies: dict[str, str] = field(default_factory=dict)
    timescaledb: bool = False

    @property
    def total(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self) | {"total": self.total}


def prune(
    settings: Settings,
    older_than_ms: int,
    *,
    candles: bool = False,
    dry_run: bool = False,
    batch_size: int = 10_000,
    progress: Progress | None = None,
    now_ms: int | None = None,
) -> PruneResult:
    """Delete what is older than ``older_than_ms`` before ``now_ms`` (default: now)."""
    import time

    from cryptoctl.db.connection import session, timescale_schema
    from cryptoctl.times import iso_utc, ms_datetime

    cutoff_ms = (int(time.time() * 1000) if now_ms is None else now_ms) - older_than_ms
    cutoff = ms_datetime(cutoff_ms)
    targets = [*TICK_TABLES, *([CANDLES] if candles else [])]
    report = progress or (lambda _table, _rows: None)
    with session(settings, "pruning old rows", autocommit=True) as conn:
        ext = timescale_schema(conn)
        hypertables = _hypertables(conn, ext) if ext else set()
        done = []
        for table, column, condition in targets:
            if dry_run:
                done.append(TablePrune(table, _count(conn, table, column, condition, cutoff), "delete"))
            elif ext and table in hypertables and condition is None:
                done.append(_drop_chunks(conn, ext, table, column, cutoff))
            else:
                rows = _delete_batches(
                    conn, table, column, condition, cutoff, batch_size, report, plain=ext is None
                )
                done.append(TablePrune(table, rows, "delete"))
            report(table, done[-1].rows)
        policies = _retention_policies(conn) if ext else {}
    return PruneResult(iso_utc(cutoff_ms), dry_run, done, policies, ext is not None)


def _where(column: str, condition: str | None) -> sql.Composable:
    where = sql.SQL("{} < %(cutoff)s").format(sql.Identifier(column))
    return where if condition is None else sql.SQL("{} AND {}").format(where, sql.Identifier(condition))


def _count(conn: psycopg.Connection[Any], table: str, column: str, condition: str | None, cutoff: Any) -> int:
    where = _where(column, condition)
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(table), where)
    row = conn.execute(query, {"cutoff": cutoff}).fetchone()
    return int(row[0]) if row else 0


def _delete_batches(
    conn: psycopg.Connection[Any], table: str, column: str, condition: str | None, cutoff: Any,
    batch_size: int, report: Progress, *, plain: bool,
) -> int:
    """Up to ``batch_size`` rows per statement, each committed on its own (autocommit).

    On a plain table each batch starts after the last row the previous one deleted (a TID
    range scan), so the scans do not re-read the dead rows of the batches before: the first
    ``batch_size`` old rows in heap order are deleted, so no old row is left before the
    last one. A final pass from the start deletes what that missed (none, unless the
    planner chose a synchronized scan that started mid-table), and is the only pass on a
    partitioned table or hypertable, where a ctid names a row only with its tableoid.
    """
    params = {"cutoff": cutoff, "limit": batch_size, "after": "(0,0)"}
    total = 0
    if plain:
        resume = sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM {t} WHERE ctid > %(after)s::tid AND {where} LIMIT %(limit)s))"
            " RETURNING ctid"
        ).format(t=sql.Identifier(table), where=_where(column, condition))
        while True:
            tids = [_tid(row[0]) for row in conn.execute(resume, params).fetchall()]
            total += len(tids)
            if len(tids) < batch_size:
                break
            params["after"] = "({},{})".format(*max(tids))
            report(table, total)
    rest = sql.SQL(
        "DELETE FROM {t} WHERE (tableoid, ctid) IN"
        " (SELECT tableoid, ctid FROM {t} WHERE {where} LIMIT %(limit)s)"
    ).format(t=sql.Identifier(table), where=_where(column, condition))
    while True:
        deleted = conn.execute(rest, params).rowcount
        total += deleted
        if deleted < batch_size:
            return total
        report(table, total)


def _tid(text: Any) -> tuple[int, int]:
    """``"(12,7)"`` -> (12, 7): block and line, in heap order."""
    block, line = str(text).strip("()").split(",")
    return int(block), int(line)


def _hypertables(conn: psycopg.Connection[Any], ext: str) -> set[str]:
    """cryptoctl's tables that schema.sql made hypertables (by the extension's calls)."""
    query = sql.SQL(
        "SELECT hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema()"
    )
    return {str(r[0]) for r in conn.execute(query).fetchall()}


def _drop_chunks(conn: psycopg.Connection[Any], ext: str, table: str, column: str, cutoff: Any) -> TablePrune:
    """Drop the chunks wholly before the cutoff (rows before it in a chunk that also holds
    newer ones stay until the chunk is wholly old); the rows counted before and after."""
    call = sql.SQL("SELECT {}.drop_chunks(format('%%I.%%I', current_schema(), %s::text)::regclass,"
                   " older_than => %s::timestamptz)").format(sql.Identifier(ext))
    with conn.transaction():
        before = _count(conn, table, column, None, cutoff)
        dropped = conn.execute(call, (table, cutoff)).fetchall()
        after = _count(conn, table, column, None, cutoff)
    return TablePrune(table, before - after, "drop_chunks", len(dropped))


def _retention_policies(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """table -> drop_after of the TimescaleDB retention policy on it (none: not listed)."""
    rows = conn.execute(
        "SELECT hypertable_name, config->>'drop_after' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()"
        " ORDER BY hypertable_name"
    ).fetchall()
    return {str(name): str(after) for name, after in rows}
