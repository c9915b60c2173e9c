"""The aggregator's exactly-once sink: claims, checkpoints and fenced flush transactions.

PostgreSQL is the checkpoint. Each flush is one transaction that (1) locks the
``processing_metadata`` rows of its partitions and checks that our owner epoch is still the
current one, (2) upserts the full state of every changed candle, (3) COPYs the raw ticks
(binary), (4) inserts late ticks and (5) advances next_offset/watermark. A consumer whose
partition was claimed by someone else (a higher epoch) writes nothing for it.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from cryptoctl.durations import ms_datetime
from cryptoctl.errors import ConfigError, ServiceUnavailable
from cryptoctl.settings import Settings
from cryptoctl.tick import TickRow
from cryptoctl.windows import Candle

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Claim:
    """What a consumer takes over with a partition."""

    partition: int
    epoch: int
    next_offset: int | None  # None: read from the beginning (new, or a new broker)
    watermark_ms: int | None
    candles: list[Candle]
    cluster_changed: bool = False


@dataclass
class PartitionFlush:
    """Everything one flush writes for one partition (built once, retried as is)."""

    partition: int
    epoch: int
    next_offset: int
    watermark_ms: int | None
    candles: list[Candle] = field(default_factory=list)
    raw: bytes = b""  # binary COPY payload, empty when not storing ticks
    raw_count: int = 0
    late: list[tuple[Any, ...]] = field(default_factory=list)  # late_ticks rows


# One pipeline (consumer group + topic) per schema: candles are keyed by symbol and bucket,
# so a second pipeline's claims would load the first one's candles as its own state and
# double-count. Checked under a schema-wide lock by every claim (and at start-up).
_PIPELINE_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':cryptoctl'))"
_OTHER_PIPELINE = """
SELECT consumer_group, topic FROM processing_metadata
 WHERE consumer_group <> %s OR topic <> %s
 LIMIT 1
"""
_CLAIM = """
INSERT INTO processing_metadata AS m (consumer_group, topic, kafka_partition, owner_epoch, owner)
VALUES (%s, %s, %s, 1, %s)
ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE
   SET owner_epoch = m.owner_epoch + 1, owner = EXCLUDED.owner, updated_at = now()
RETURNING owner_epoch, next_offset, watermark_ms, cluster_id
"""
_PROGRESS = """
SELECT kafka_partition, next_offset FROM processing_metadata
 WHERE consumer_group = %s AND topic = %s AND cluster_id = %s
"""
_GENERATION = """
SELECT generation FROM kafka_generations WHERE consumer_group = %s AND topic = %s
"""
_BUMP_GENERATION = """
INSERT INTO kafka_generations AS g (consumer_group, topic, generation, reason)
VALUES (%(group)s, %(topic)s, %(next)s, %(reason)s)
ON CONFLICT (consumer_group, topic) DO UPDATE
   SET generation = EXCLUDED.generation, reason = EXCLUDED.reason, updated_at = now()
 WHERE g.generation = %(seen)s
RETURNING generation
"""
# Whether any member of the pipeline claimed or committed within the last N seconds.
_RECENT_PROGRESS = """
SELECT count(*) FROM processing_metadata
 WHERE consumer_group = %s AND topic = %s AND updated_at > now() - make_interval(secs => %s)
"""
_LOAD = """
SELECT symbol, (extract(epoch FROM bucket) * 1000)::bigint, open, high, low, close, volume,
       trades, price_sum, pv_sum, (extract(epoch FROM open_time) * 1000)::bigint,
       (extract(epoch FROM close_time) * 1000)::bigint
  FROM price_aggregates_1m
 WHERE kafka_partition = %s AND NOT final
"""
_LOCK = """
SELECT kafka_partition, owner_epoch FROM processing_metadata
 WHERE consumer_group = %s AND topic = %s AND kafka_partition = ANY(%s)
   FOR UPDATE
"""
_UPSERT = """
INSERT INTO price_aggregates_1m (symbol, bucket, open, high, low, close, volume, trades,
    price_sum, pv_sum, avg_price, vwap, open_time, close_time, kafka_partition, final)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (symbol, bucket) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, price_sum = EXCLUDED.price_sum,
    pv_sum = EXCLUDED.pv_sum, avg_price = EXCLUDED.avg_price, vwap = EXCLUDED.vwap,
    open_time = EXCLUDED.open_time, close_time = EXCLUDED.close_time,
    kafka_partition = EXCLUDED.kafka_partition, final = EXCLUDED.final, updated_at = now()
"""
_COPY_RAW = (
    "COPY raw_price_data (time, symbol, quote, price, qty, source, recv_time, kafka_partition,"
    " kafka_offset, extra) FROM STDIN (FORMAT BINARY)"
)
_LATE = """
INSERT INTO late_ticks (time, symbol, price, qty, kafka_partition, kafka_offset, watermark,
                        lateness_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
_ADVANCE = """
UPDATE processing_metadata
   SET next_offset = %s, watermark_ms = %s, cluster_id = %s, updated_at = now()
 WHERE consumer_group = %s AND topic = %s AND kafka_partition = %s AND owner_epoch = %s
"""


def candle_row(c: Candle, partition: int) -> tuple[Any, ...]:
    return (
        c.symbol, ms_datetime(c.bucket), c.open, c.high, c.low, c.close, c.volume, c.trades,
        c.price_sum, c.pv_sum, c.avg, c.vwap, ms_datetime(c.open_ts), ms_datetime(c.close_ts),
        partition, c.final,
    )


def late_row(tick: TickRow, partition: int, offset: int, watermark_ms: int) -> tuple[Any, ...]:
    """A late_ticks row of a tick."""
    symbol, price, ts, _source, _recv_ts, _quote, qty, _extra = tick
    return (
        ms_datetime(ts), symbol, price, qty, partition, offset, ms_datetime(watermark_ms),
        watermark_ms - ts,
    )


# --- binary COPY of raw ticks ---------------------------------------------------------------
# Built by hand: psycopg would need a datetime per tick; here a row is one struct.pack.
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01, the origin of PostgreSQL timestamps
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
_RowFormat = tuple[Callable[..., bytes], bytes, bytes, bytes]
_row_formats: dict[tuple[str, str, str, bool], _RowFormat] = {}


def _row_format(symbol: str, quote: str, source: str, has_qty: bool) -> _RowFormat:
    sb, qb, srcb = symbol.encode(), quote.encode(), source.encode()
    fmt = (
        f">h iq i{len(sb)}s i{len(qb)}s id " + ("id " if has_qty else "i ")
        + f"i{len(srcb)}s iq ii iq i"
    )
    entry = (struct.Struct(fmt.replace(" ", "")).pack, sb, qb, srcb)
    _row_formats[(symbol, quote, source, has_qty)] = entry
    return entry


def encode_raw_ticks(rows: Sequence[TickRow], offsets: Sequence[int], partition: int) -> bytes:
    """raw_price_data rows in COPY binary format (without the stream header and trailer)."""
    out: list[bytes] = []
    append = out.append
    formats = _row_formats
    for (symbol, price, ts, source, recv_ts, quote, qty, extra), offset in zip(
        rows, offsets, strict=True
    ):
        has_qty = qty is not None
        entry = formats.get((symbol, quote, source, has_qty))
        if entry is None:
            entry = _row_format(symbol, quote, source, has_qty)
        pack, sb, qb, srcb = entry
        ts_us = (ts - _PG_EPOCH_MS) * 1000
        recv_us = (recv_ts - _PG_EPOCH_MS) * 1000
        if has_qty:
            row = pack(10, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, 8, qty, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1)
        else:
            row = pack(10, 8, ts_us, len(sb), sb, len(qb), qb, 8, price, -1, len(srcb), srcb,
                       8, recv_us, 4, partition, 8, offset, -1)
        if extra:
            doc = b"\x01" + orjson.dumps(extra)  # jsonb binary: version 1, then the text
            row = row[:-4] + struct.pack(">i", len(doc)) + doc
        append(row)
    return b"".join(out)


def _restored(row: Sequence[Any]) -> Candle:
    candle = Candle(*row)
    candle.dirty = False  # as stored: nothing to write until a tick changes it
    return candle


# --- the sink ---------------------------------------------------------------------------------


def _is_connection_error(exc: BaseException) -> bool:
    """Worth retrying: the connection broke, or the server rolled the transaction back
    (serialization failure, deadlock): a retried flush writes exactly once either way."""
    import psycopg

    from cryptoctl.db.connection import is_connection_loss

    return is_connection_loss(exc) or isinstance(exc, psycopg.errors.TransactionRollback)


class Sink:
    """One PostgreSQL connection and the aggregator's SQL. Not thread-safe: one per loop.

    Connection failures are retried with backoff (reconnecting) for up to ``retry_for_s``;
    a flush is one transaction, so a retried flush writes exactly once.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topic: str,
        owner: str,
        cluster_id: str | None,
        retry_for_s: float = 120.0,
    ) -> None:
        self.settings = settings
        self.group = group
        self.topic = topic
        self.owner = owner
        self.cluster_id = cluster_id
        self.retry_for_s = retry_for_s
        self.retries = 0
        self._conn: psycopg.Connection[Any] | None = None

    # connection handling

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            from cryptoctl.db.connection import connect

            self._conn = connect(self.settings)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _retrying(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        from tenacity import (
            RetryCallState,
            Retrying,
            retry_if_exception,
            stop_after_delay,
            wait_exponential,
        )

        def attempt() -> T:
            try:
                conn = self._connection()
                with conn.transaction():
                    return fn(conn)
            except BaseException as exc:
                if _is_connection_error(exc) or isinstance(exc, ServiceUnavailable):
                    self._drop_connection()
                    self.retries += 1
                raise

        def warn(state: RetryCallState) -> None:
            # Once per outage, at the first retry: the summary alone came too late.
            if state.attempt_number == 1 and state.outcome is not None:
                from cryptoctl.db.connection import db_address

                log.warning(
                    "PostgreSQL at %s: %s failed (%s); retrying for up to %.0fs",
                    db_address(self.settings), what,
                    str(state.outcome.exception()).strip().splitlines()[0], self.retry_for_s,
                )

        retrying = Retrying(
            retry=retry_if_exception(
                lambda e: _is_connection_error(e) or isinstance(e, ServiceUnavailable)
            ),
            before_sleep=warn,
            wait=wait_exponential(multiplier=0.1, max=5.0),
            stop=stop_after_delay(self.retry_for_s),
            reraise=True,
        )
        from cryptoctl.db.connection import database_errors, db_address

        try:
            # A statement the server refuses (a table missing from a database made by an
            # older release, ...) is one DatabaseError line naming the database.
            with database_errors(self.settings, what):
                return retrying(attempt)
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(
                "PostgreSQL", db_address(self.settings), f"{what} failed: {exc.detail}".strip()
            ) from None

    def close(self) -> None:
        self._drop_connection()

    def ping(self) -> None:
        """Connect now, without retrying: a clear error at start-up if PostgreSQL is absent."""
        self._connection().execute("SELECT 1")
        self._connection().rollback()

    # claims

    def register(self) -> None:
        """Refuse, before consuming anything, a schema that holds another pipeline."""
        self._retrying("checking the schema's pipeline", self._check_pipeline)

    def _check_pipeline(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_PIPELINE_LOCK)
        row = conn.execute(_OTHER_PIPELINE, (self.group, self.topic)).fetchone()
        if row is not None:
            schema = self.settings.db_schema
            raise ConfigError(
                f"the database schema {schema!r} holds the candles of consumer group"
                f" {row[0]!r} on topic {row[1]!r}; group {self.group!r} on topic"
                f" {self.topic!r} would mix its candles with them",
                hint="give each pipeline a schema of its own: --db-schema NAME",
            )

    def claim(self, partitions: Sequence[int]) -> dict[int, Claim]:
        """Take over partitions: epoch + 1, stored offset/watermark, non-final candles."""
        return self._retrying("claiming partitions", lambda conn: self._claim(conn, partitions))

    def _claim(self, conn: psycopg.Connection[Any], partitions: Sequence[int]) -> dict[int, Claim]:
        self._check_pipeline(conn)
        out = {}
        for p in sorted(partitions):  # a fixed lock order: two claimers cannot deadlock
            epoch, next_offset, watermark, cluster = conn.execute(
                _CLAIM, (self.group, self.topic, p, self.owner)
            ).fetchone()  # type: ignore[misc]
            candles = [_restored(row) for row in conn.execute(_LOAD, (p,)).fetchall()]
            # The stored offset belongs to the broker that had that cluster id; a new
            # broker (the memory-only local one restarted empty) starts over from its
            # beginning, keeping the stored candles and watermark.
            changed = cluster is not None and cluster != self.cluster_id
            start = next_offset if cluster is not None and not changed else None
            out[p] = Claim(p, epoch, start, watermark, candles, cluster_changed=changed)
        return out

    def progress(self) -> dict[int, int]:
        """partition -> stored next offset, for this pipeline on the current broker."""
        return self._retrying(
            "reading the checkpoint",
            lambda conn: dict(
                conn.execute(_PROGRESS, (self.group, self.topic, self.cluster_id)).fetchall()
            ),
        )

    # Kafka group generations (recovery from a wedged consumer group)

    def kafka_generation(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(_GENERATION, (self.group, self.topic)).fetchone()
            return int(row[0]) if row else 0

        return self._retrying("reading the Kafka group generation", read)

    def next_kafka_generation(self, seen: int, reason: str) -> int:
        """Move the pipeline to generation seen + 1, unless another member already moved
        it on: either way, the generation to use now."""

        def bump(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                _BUMP_GENERATION,
                {"group": self.group, "topic": self.topic, "next": seen + 1, "seen": seen,
                 "reason": reason},
            ).fetchone()
            if row is not None:
                return int(row[0])
            current = conn.execute(_GENERATION, (self.group, self.topic)).fetchone()
            return int(current[0]) if current else seen + 1

        return self._retrying("moving to a new Kafka group generation", bump)

    def progress_within(self, seconds: float) -> bool:
        """Whether any member of this pipeline claimed or committed in the last seconds."""
        return self._retrying(
            "reading the checkpoint",
            lambda conn: bool(
                conn.execute(_RECENT_PROGRESS, (self.group, self.topic, seconds)).fetchone()[0]  # type: ignore[index]
            ),
        )

    # flushes

    def commit(self, flushes: Sequence[PartitionFlush]) -> set[int]:
        """Write the flushes in one transaction; returns the partitions refused (fenced)."""
        if not flushes:
            return set()
        return self._retrying("flushing to PostgreSQL", lambda conn: self._commit(conn, flushes))

    def _commit(self, conn: psycopg.Connection[Any], flushes: Sequence[PartitionFlush]) -> set[int]:
        parts = sorted(f.partition for f in flushes)
        current = dict(conn.execute(_LOCK, (self.group, self.topic, parts)).fetchall())
        fenced = {f.partition for f in flushes if current.get(f.partition) != f.epoch}
        ok = [f for f in flushes if f.partition not in fenced]
        with conn.cursor() as cur:
            candles = [candle_row(c, f.partition) for f in ok for c in f.candles]
            if candles:
                cur.executemany(_UPSERT, candles)
            raw = [f for f in ok if f.raw_count]
            if raw:
                with cur.copy(_COPY_RAW) as copy:
                    copy.write(COPY_HEADER)
                    for f in raw:
                        copy.write(f.raw)
                    copy.write(COPY_TRAILER)
            late = [row for f in ok for row in f.late]
            if late:
                cur.executemany(_LATE, late)
            cur.executemany(
                _ADVANCE,
                [
                    (f.next_offset, f.watermark_ms, self.cluster_id, self.group, self.topic,
                     f.partition, f.epoch)
                    for f in ok
                ],
            )
        return fenced
