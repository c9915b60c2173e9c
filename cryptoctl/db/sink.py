"""The aggregator's exactly-once sink: claims, checkpoints and fenced flush transactions.

PostgreSQL is the checkpoint. Each flush is one transaction that (1) locks the
``processing_metadata`` rows of its partitions and checks that our owner epoch is still the
current one, (2) upserts the full state of every changed candle, (3) COPYs the raw ticks
(binary), (4) inserts late ticks and (5) advances next_offset/watermark. A consumer whose
partition was claimed by someone else (a higher epoch) writes nothing for it. The
aggregator hands over candles and ticks as it holds them; the rows are encoded here
(cryptoctl/db/encode.py). The broker's cluster id is given to each call that needs it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cryptoctl.alerts.engine import STATES_SQL, AlertFlush, stored_states
from cryptoctl.alerts.rules import RecentTicks, StoredStates
from cryptoctl.db.encode import (
    COPY_HEADER,
    COPY_TRAILER,
    LateTick,
    MarketKey,
    MarketTrade,
    candle_row,
    encode_raw_ticks,
    gap_row,
    late_row,
)
from cryptoctl.errors import ConfigError, ServiceUnavailable
from cryptoctl.exchanges.trade import Gap
from cryptoctl.settings import Settings
from cryptoctl.tick import TickRow
from cryptoctl.times import ms_datetime
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
    # (symbol, source, quote) -> the newest exchange trade id applied, for the markets of
    # this partition; and where every market of the pipeline lives (any partition).
    trades: dict[MarketKey, int] = field(default_factory=dict)
    homes: dict[MarketKey, int] = field(default_factory=dict)
    # (rule id, source, quote) -> the stored state of the active alert rules, and the
    # markets whose change windows are to be read back from the raw ticks (widest window)
    alerts: StoredStates = field(default_factory=dict)
    alert_windows: dict[MarketKey, int] = field(default_factory=dict)


@dataclass
class PartitionFlush:
    """Everything one flush writes for one partition, as the aggregator holds it: the sink
    encodes it (cryptoctl/db/encode.py)."""

    partition: int
    epoch: int
    next_offset: int
    watermark_ms: int | None
    candles: list[Candle] = field(default_factory=list)
    ticks: list[TickRow] = field(default_factory=list)  # raw ticks, empty when not storing
    offsets: list[int] = field(default_factory=list)  # the offset of each raw tick
    late: list[LateTick] = field(default_factory=list)
    trades: list[MarketTrade] = field(default_factory=list)  # markets whose last trade moved
    gaps: list[Gap] = field(default_factory=list)  # recorded by the feed, read from the topic
    alerts: AlertFlush | None = None  # alert events fired and rule states changed

    @property
    def raw_count(self) -> int:
        return len(self.ticks)


# One pipeline (consumer group + topic) per schema: candles are keyed by market and bucket,
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
       (extract(epoch FROM close_time) * 1000)::bigint, false, false, source, quote,
       open_trade_id, close_trade_id
  FROM price_aggregates_1m
 WHERE kafka_partition = %s AND NOT final
"""
_LOAD_TRADES = """
SELECT symbol, source, quote, kafka_partition, last_trade_id FROM market_trades
 WHERE consumer_group = %s AND topic = %s
"""
# A market's home partition is claimed once, by whichever aggregator process sees its first
# trade first, and never moves: the flush upsert only advances the row of its own home, so a
# stale writer (a trade read on another partition before the claim was seen) cannot move it.
_CLAIM_MARKET = """
INSERT INTO market_trades (consumer_group, topic, source, symbol, quote, kafka_partition,
                           last_trade_id, last_time)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (consumer_group, topic, source, symbol, quote) DO NOTHING
"""
_MARKET_HOME = """
SELECT kafka_partition, last_trade_id FROM market_trades
 WHERE consumer_group = %s AND topic = %s AND source = %s AND symbol = %s AND quote = %s
"""
_TRADES = """
INSERT INTO market_trades AS t (consumer_group, topic, source, symbol, quote, kafka_partition,
                                last_trade_id, last_time)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (consumer_group, topic, source, symbol, quote) DO UPDATE
   SET last_trade_id = EXCLUDED.last_trade_id, last_time = EXCLUDED.last_time,
       updated_at = now()
 WHERE t.kafka_partition = EXCLUDED.kafka_partition
"""
_GAPS = """
INSERT INTO feed_gaps (source, symbol, quote, first_trade_id, last_trade_id, after_time,
                       before_time, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source, symbol, quote, first_trade_id, last_trade_id) DO NOTHING
"""
_LOCK = """
SELECT kafka_partition, owner_epoch FROM processing_metadata
 WHERE consumer_group = %s AND topic = %s AND kafka_partition = ANY(%s)
   FOR UPDATE
"""
_UPSERT = """
INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low, close, volume,
    trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time, kafka_partition, final,
    open_trade_id, close_trade_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source, symbol, quote, bucket) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, price_sum = EXCLUDED.price_sum,
    pv_sum = EXCLUDED.pv_sum, avg_price = EXCLUDED.avg_price, vwap = EXCLUDED.vwap,
    open_time = EXCLUDED.open_time, close_time = EXCLUDED.close_time,
    kafka_partition = EXCLUDED.kafka_partition, final = EXCLUDED.final,
    open_trade_id = EXCLUDED.open_trade_id, close_trade_id = EXCLUDED.close_trade_id,
    updated_at = now()
"""
_COPY_RAW = (
    "COPY raw_price_data (time, symbol, quote, price, qty, source, recv_time, kafka_partition,"
    " kafka_offset, extra, trade_id, side) FROM STDIN (FORMAT BINARY)"
)
_LATE = """
INSERT INTO late_ticks (time, source, symbol, quote, trade_id, price, qty, kafka_partition,
                        kafka_offset, watermark, lateness_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
# Alerts: the rules of this flush's events and states, locked against a concurrent
# `alerts rm` (a state row of a deleted rule would break the foreign key); a one-shot
# rule fires in a market only if this transaction is the one that marks that market's
# state fired (an upsert: a concurrent one waits for it, then finds it fired).
_ALERT_RULES = """
SELECT id, active FROM price_alerts WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE
"""
_ALERT_SPEND_MARKETS = """
INSERT INTO alert_state AS s (alert_id, source, symbol, quote, armed, fired, last_fired_at)
SELECT *, false, 1, now() FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (alert_id, source, symbol, quote) DO UPDATE
   SET armed = false, fired = 1, last_fired_at = now(), updated_at = now()
 WHERE s.fired = 0
RETURNING alert_id, source, quote
"""
# A one-shot rule naming one market is spent with it; one watching several stays active
# (each market fires once) and keeps the time of its first firing.
_ALERT_SPEND = """
UPDATE price_alerts
   SET active = (source IS NULL OR quote IS NULL),
       triggered_at = coalesce(triggered_at, now()), updated_at = now()
 WHERE id = ANY(%s) AND active
   AND (triggered_at IS NULL OR (source IS NOT NULL AND quote IS NOT NULL))
"""
_ALERT_EVENT = """
INSERT INTO alert_events (alert_id, source, symbol, quote, condition, threshold, window_ms,
                          price, reference, time, kafka_partition, kafka_offset, notify)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (alert_id, source, symbol, quote, kafka_partition, kafka_offset) DO NOTHING
"""
_RECENT_TICKS = """
SELECT kafka_offset, (extract(epoch FROM time) * 1000)::bigint, price FROM raw_price_data
 WHERE kafka_partition = %s AND source = %s AND symbol = %s AND quote = %s AND time > %s
 ORDER BY kafka_offset
"""
_ALERT_STATE = """
INSERT INTO alert_state AS s (alert_id, source, symbol, quote, armed, fired, last_fired_at,
                              window_state)
VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END, %s)
ON CONFLICT (alert_id, source, symbol, quote) DO UPDATE
   SET armed = EXCLUDED.armed, fired = EXCLUDED.fired,
       last_fired_at = coalesce(EXCLUDED.last_fired_at, s.last_fired_at),
       window_state = EXCLUDED.window_state, updated_at = now()
"""
_ADVANCE = """
UPDATE processing_metadata
   SET next_offset = %s, watermark_ms = %s, cluster_id = %s, updated_at = now(),
       committed_at = now()
 WHERE consumer_group = %s AND topic = %s AND kafka_partition = %s AND owner_epoch = %s
"""


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
        retry_for_s: float = 120.0,
    ) -> None:
        self.settings = settings
        self.group = group
        self.topic = topic
        self.owner = owner
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

    def claim(self, partitions: Sequence[int], cluster_id: str | None) -> dict[int, Claim]:
        """Take over partitions: epoch + 1, stored offset/watermark, non-final candles.
        ``cluster_id`` is the broker's now: an offset stored for another broker is not used."""
        return self._retrying(
            "claiming partitions", lambda conn: self._claim(conn, partitions, cluster_id)
        )

    def _claim(
        self, conn: psycopg.Connection[Any], partitions: Sequence[int], cluster_id: str | None
    ) -> dict[int, Claim]:
        self._check_pipeline(conn)
        # Claim (lock and fence) every partition first: a claim waits for a flush of the
        # old owner that is committing, and everything read after it (candles, trade
        # checkpoints, alert states) is then that flush's, not what was before it.
        claimed = {
            p: conn.execute(_CLAIM, (self.group, self.topic, p, self.owner)).fetchone()
            for p in sorted(partitions)  # a fixed lock order: two claimers cannot deadlock
        }
        homes: dict[MarketKey, int] = {}
        trades: dict[int, dict[MarketKey, int]] = {}
        for symbol, source, quote, home, last in conn.execute(
            _LOAD_TRADES, (self.group, self.topic)
        ).fetchall():
            homes[(symbol, source, quote)] = home
            trades.setdefault(home, {})[(symbol, source, quote)] = last
        alerts, windows = stored_states(conn.execute(STATES_SQL).fetchall())
        out = {}
        for p, row in claimed.items():
            epoch, next_offset, watermark, cluster = row  # type: ignore[misc]
            candles = [_restored(row) for row in conn.execute(_LOAD, (p,)).fetchall()]
            # The stored offset belongs to the broker that had that cluster id; a new
            # broker (the memory-only local one restarted empty) starts over from its
            # beginning, keeping the stored candles and watermark.
            changed = cluster is not None and cluster != cluster_id
            start = next_offset if cluster is not None and not changed else None
            out[p] = Claim(
                p, epoch, start, watermark, candles, cluster_changed=changed,
                trades=trades.get(p, {}), homes=homes, alerts=alerts, alert_windows=windows,
            )
        return out

    def claim_market(
        self, market: MarketKey, partition: int, trade_id: int, ts: int
    ) -> tuple[int, int]:
        """Make ``partition`` the home of ``market`` (symbol, source, quote) unless another
        partition is already, in a transaction of its own, at the market's first trade
        ``trade_id`` (time ``ts``) seen by this process. Returns the home partition and
        the newest trade id applied there (just below ``trade_id`` for a new claim)."""
        symbol, source, quote = market
        key = (self.group, self.topic, source, symbol, quote)

        def claim(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            conn.execute(_CLAIM_MARKET, (*key, partition, trade_id - 1, ms_datetime(ts)))
            home, last = conn.execute(_MARKET_HOME, key).fetchone()  # type: ignore[misc]
            return int(home), int(last)

        return self._retrying("claiming a market's partition", claim)

    def recent_ticks(
        self, partition: int, windows: dict[MarketKey, int], floor_ms: int
    ) -> RecentTicks:
        """The applied ticks (offset, ts, price) of these markets of the partition that a
        change window of the given width may still hold: event time > floor - width.
        Stable once claimed: only the partition's owner adds to them."""
        def read(conn: psycopg.Connection[Any]) -> RecentTicks:
            out: RecentTicks = {}
            for (symbol, source, quote), width in sorted(windows.items()):
                rows = conn.execute(
                    _RECENT_TICKS, (partition, source, symbol, quote,
                                    ms_datetime(floor_ms - width)),
                ).fetchall()
                out[(symbol, source, quote)] = [(int(o), int(t), float(p)) for o, t, p in rows]
            return out

        return self._retrying("reading the ticks of alert windows", read)

    def progress(self, cluster_id: str | None) -> dict[int, int]:
        """partition -> stored next offset, for this pipeline on the broker ``cluster_id``."""
        return self._retrying(
            "reading the checkpoint",
            lambda conn: dict(
                conn.execute(_PROGRESS, (self.group, self.topic, cluster_id)).fetchall()
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

    def commit(self, flushes: Sequence[PartitionFlush], cluster_id: str | None) -> set[int]:
        """Write the flushes in one transaction, the offsets stored with the broker's
        ``cluster_id``; returns the partitions refused (fenced)."""
        if not flushes:
            return set()
        # Encoded once, whatever the retries.
        encoded = {
            f.partition: (
                encode_raw_ticks(f.ticks, f.offsets, f.partition) if f.ticks else b"",
                [late_row(t, f.partition) for t in f.late],
            )
            for f in flushes
        }
        return self._retrying(
            "flushing to PostgreSQL",
            lambda conn: self._commit(conn, flushes, encoded, cluster_id),
        )

    def _commit(
        self, conn: psycopg.Connection[Any], flushes: Sequence[PartitionFlush],
        encoded: dict[int, tuple[bytes, list[tuple[Any, ...]]]], cluster_id: str | None,
    ) -> set[int]:
        parts = sorted(f.partition for f in flushes)
        current = dict(conn.execute(_LOCK, (self.group, self.topic, parts)).fetchall())
        fenced = {f.partition for f in flushes if current.get(f.partition) != f.epoch}
        ok = [f for f in flushes if f.partition not in fenced]
        with conn.cursor() as cur:
            candles = [candle_row(c, f.partition) for f in ok for c in f.candles]
            if candles:
                cur.executemany(_UPSERT, candles)
            raw = [encoded[f.partition][0] for f in ok if f.ticks]
            if raw:
                with cur.copy(_COPY_RAW) as copy:
                    copy.write(COPY_HEADER)
                    for payload in raw:
                        copy.write(payload)
                    copy.write(COPY_TRAILER)
            late = [row for f in ok for row in encoded[f.partition][1]]
            if late:
                cur.executemany(_LATE, late)
            trades = [
                (self.group, self.topic, source, symbol, quote, f.partition, tid, ms_datetime(ts))
                for f in ok for (symbol, source, quote), tid, ts in f.trades
            ]
            if trades:
                cur.executemany(_TRADES, trades)
            gaps = [gap_row(g) for f in ok for g in f.gaps]
            if gaps:
                cur.executemany(_GAPS, gaps)
            alerts = [f for f in ok if f.alerts]
            if alerts:
                _write_alerts(cur, alerts)
            cur.executemany(
                _ADVANCE,
                [
                    (f.next_offset, f.watermark_ms, cluster_id, self.group, self.topic,
                     f.partition, f.epoch)
                    for f in ok
                ],
            )
        return fenced


def _write_alerts(cur: psycopg.Cursor[Any], flushes: Sequence[PartitionFlush]) -> None:
    """Events and rule states of the flushes, in the flush transaction (see _ALERT_RULES)."""
    import orjson
    from psycopg.types.json import Jsonb

    for f in flushes:  # a commit retried after a lost connection counts afresh
        if f.alerts is not None:
            f.alerts.inserted = 0
    ids = sorted({e.rule.id for f in flushes if f.alerts for e, _ in f.alerts.events}
                 | {s[0] for f in flushes if f.alerts for s in f.alerts.states})
    active = dict(cur.execute(_ALERT_RULES, (ids,)).fetchall())
    one_shot = sorted({(e.rule.id, e.source, e.symbol, e.quote) for f in flushes if f.alerts
                       for e, _ in f.alerts.events
                       if not e.rule.repeat and active.get(e.rule.id)})
    spent: set[tuple[int, str, str]] = set()  # (rule id, source, quote) fired here
    if one_shot:
        cur.execute(_ALERT_SPEND_MARKETS, [list(c) for c in zip(*one_shot, strict=True)])
        spent = {(int(rid), source, quote) for rid, source, quote in cur.fetchall()}
        cur.execute(_ALERT_SPEND, (sorted({rid for rid, _, _ in spent}),))
    for f in flushes:
        assert f.alerts is not None
        fired_now = set()
        for e, offset in f.alerts.events:
            market = (e.rule.id, e.source, e.quote)
            if not (market in spent if not e.rule.repeat else active.get(e.rule.id)):
                continue  # removed, deactivated, or (one-shot) this market already fired
            r = e.rule
            cur.execute(_ALERT_EVENT, (
                r.id, e.source, e.symbol, e.quote, r.condition, r.threshold, r.window_ms,
                e.price, e.reference, ms_datetime(e.ts), f.partition, offset, list(r.notify),
            ))
            f.alerts.inserted += cur.rowcount
            fired_now.add((r.id, e.source, e.quote))
        rows = [
            (rid, source, symbol, quote, armed, fired, (rid, source, quote) in fired_now,
             None if window is None else Jsonb(window, dumps=orjson.dumps))
            for rid, source, symbol, quote, armed, fired, window in f.alerts.states
            if rid in active
        ]
        if rows:
            cur.executemany(_ALERT_STATE, rows)
