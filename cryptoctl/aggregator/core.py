"""The aggregator: a consumer-group member turning ticks into candles, exactly once.

One thread runs :meth:`Aggregator.run`; another may read :meth:`Aggregator.stats` at any
time. Per assigned partition it holds the open windows (cryptoctl.windows), the next
offset and the raw/late ticks read since the last flush. A flush commits all of that in
one PostgreSQL transaction (cryptoctl.db.sink), then updates Redis and the informational
Kafka offsets. Rebalances: assigned -> claim + restore + seek; revoked -> flush + forget;
lost -> forget without writing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from cryptoctl.aggregator.stats import AggregatorStats, Counters
from cryptoctl.alerts.engine import AlertFlush, RuleWatcher
from cryptoctl.alerts.rules import Fired, MarketRules, RuleStates
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.writer import CacheWriter
from cryptoctl.db.encode import LateTick, MarketKey
from cryptoctl.db.sink import Claim, PartitionFlush, Sink
from cryptoctl.errors import InvalidTick
from cryptoctl.exchanges.trade import Gap, parse_gap
from cryptoctl.kafka.clients import check_topic, consumer_config, new_client
from cryptoctl.kafka.dlq import DeadLetters
from cryptoctl.settings import Settings
from cryptoctl.tick import TickRow, fast_tick_fields, validate_tick
from cryptoctl.windows import NO_WATERMARK, PartitionWindows

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, TopicPartition

log = logging.getLogger(__name__)

# Flush early once caught up (the last batch was not full), but not more often than this:
# it keeps the produce -> Redis latency low at low rates without flushing per message.
MIN_FLUSH_GAP_MS = 40
# Raw ticks buffered before a flush is forced, whatever the interval (bounds memory).
MAX_BUFFERED_TICKS = 200_000
# While it has no partitions, the aggregator looks at the group's health this often.
GROUP_CHECK_S = 5.0
# How often the loop notes each partition's end offset as the consumer last heard it (for
# the lag in stats; read from the client's cache, no request).
END_OFFSETS_S = 1.0


def kafka_group_id(group: str, generation: int) -> str:
    """The Kafka consumer group of a pipeline's generation (0: the group itself)."""
    return group if generation == 0 else f"{group}.gen{generation}"


@dataclass(frozen=True)
class AggregatorOptions:
    delay_ms: int = 5_000
    lateness_ms: int = 60_000
    flush_interval_ms: int = 250
    store_ticks: bool = True
    until_idle_ms: int | None = None  # stop after no message for this long (once assigned)
    duration_ms: int | None = None  # stop after this long
    batch_size: int = 10_000
    write_cache: bool = True
    # No partitions for this long while the topic has unread messages and no member of the
    # pipeline commits: the Kafka group is taken as wedged (None: never).
    wedged_after_ms: int | None = 30_000
    alerts: bool = True  # evaluate alert rules (False: the engine is not even started)
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )


@dataclass
class PartitionState:
    epoch: int
    windows: PartitionWindows
    next_offset: int | None  # None until a message is read: "from the beginning"
    last_tick: float  # monotonic time of the last batch that had a tick of this partition
    committed_offset: int | None = None
    raw: list[TickRow] = field(default_factory=list)
    raw_offsets: list[int] = field(default_factory=list)
    late: list[LateTick] = field(default_factory=list)
    # Exchange trades, exactly once per market: (symbol, source, quote) -> [newest trade id
    # applied, its time, changed since the last flush]. Committed with the candles.
    trades: dict[MarketKey, list[Any]] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    # Alert rules on this partition's markets, restored at the claim; events fired since
    # the last flush, each with the offset of its tick.
    alerts: RuleStates = field(default_factory=RuleStates)
    fired: list[tuple[Fired, int]] = field(default_factory=list)


def _checked_fields(obj: Any) -> tuple[TickRow | None, str]:
    """The slow path, for what the fast check did not vouch for: the tick's fields by
    validate_tick's verdict, or why it is invalid. ``obj`` is the decoded value, or the
    exception decoding raised."""
    if isinstance(obj, TypeError):
        return None, "empty message value"
    if isinstance(obj, orjson.JSONDecodeError):
        return None, f"not valid JSON: {obj}"
    try:
        t = validate_tick(obj)
    except InvalidTick as exc:
        return None, exc.reason
    return t, ""  # a Tick is a TickRow


def _invalid_class(obj: Any) -> str:
    """The class of what _checked_fields refused: not even JSON, or not a tick."""
    return "malformed" if isinstance(obj, (TypeError, orjson.JSONDecodeError)) else "invalid"


def _key_mismatch(key: bytes | None, symbol: str) -> str:
    shown = "no key" if key is None else f"key {key[:40].decode(errors='replace')!r}"
    return (
        f"{shown} is not the symbol {symbol!r}: ticks are keyed by their symbol, so that"
        " each market's ticks share one partition"
    )


class Aggregator:
    """``Aggregator(settings, options).run(stop_event)``; ``stats()`` from any thread."""

    def __init__(self, settings: Settings, options: AggregatorOptions | None = None) -> None:
        self.settings = settings
        self.options = options or AggregatorOptions()
        self.topic = settings.topic
        self.group = settings.group
        self.counters = Counters()
        self._states: dict[int, PartitionState] = {}
        self._state = "starting"
        self._started = time.monotonic()
        self._consumer: Consumer | None = None
        self._sink: Sink | None = None
        self._cluster_id: str | None = None  # the broker's, as of the last assignment
        self._cache: CacheWriter | None = None
        self._dlq: DeadLetters | None = None
        self._rules: RuleWatcher | None = None
        self._rules_version = 0
        self._assigned_at: float | None = None
        self._last_message = 0.0
        self._last_flush = time.monotonic()
        self._buffered = 0
        # Message keys seen to be their tick's symbol (key bytes -> symbol).
        self._keys: dict[bytes | None, str] = {}
        # Where each market with exchange trades lives: (symbol, source, quote) -> partition.
        self._homes: dict[MarketKey, int] = {}
        self._partition_count = 0
        self._generation = 0
        self._starved_since: float | None = None  # when it last had no partitions
        self._next_group_check = 0.0
        self._next_end_check = 0.0
        self._reported_behind: tuple[int, ...] = ()
        self._end_offsets: dict[int, int] = {}  # partition -> end offset (the loop writes it)
        self._positions: dict[int, int] = {}  # partition -> the consumer's position
        self._next_end_offsets = 0.0

    # --- public -------------------------------------------------------------------------

    def stats(self) -> AggregatorStats:
        c = self.counters
        states = dict(self._states)  # a copy: the loop thread may change the dict
        cache = self._cache.stats() if self._cache else None
        return AggregatorStats(
            state=self._state,
            elapsed_s=round(time.monotonic() - self._started, 3),
            ticks=c.ticks,
            ticks_per_s=round(c.rate(), 1),
            late=c.late,
            invalid=c.invalid,
            candles_written=c.candles_written,
            candles_final=c.candles_final,
            raw_ticks_written=c.raw_ticks_written,
            open_windows=sum(len(s.windows.candles) for s in states.values()),
            flushes=c.flushes,
            flush_latency_ms_p50=c.flush_p50(),
            flush_latency_ms_last=c.flush_last(),
            partitions=tuple(sorted(states)),
            watermarks={
                p: (None if s.windows.watermark == NO_WATERMARK else s.windows.watermark)
                for p, s in sorted(states.items())
            },
            fenced=c.fenced,
            offset_resets=c.offset_resets,
            pg_retries=self._sink.retries if self._sink else 0,
            dlq_failed=self._dlq.failed if self._dlq else 0,
            cache_pending=cache.pending if cache else 0,
            cache_connected=cache.connected if cache else False,
            cache_errors=cache.errors if cache else 0,
            kafka_errors=c.kafka_errors,
            last_error=c.last_error,
            group_moves=c.group_moves,
            duplicates=c.duplicates,
            gaps=c.gaps,
            alerts_fired=c.alerts_fired,
            kafka_group=kafka_group_id(self.group, self._generation),
            invalid_by=dict(c.invalid_by),
            lag=self._lag(states),
        )

    def _lag(self, states: dict[int, PartitionState]) -> dict[int, int | None]:
        ends = dict(self._end_offsets)
        return {
            p: (max(0, ends[p] - (s.next_offset or 0)) if p in ends else None)
            for p, s in sorted(states.items())
        }

    def run(self, stop: threading.Event) -> AggregatorStats:
        """Consume until ``stop`` is set (or --until-idle/--duration), then flush and close."""
        self._open()
        try:
            self._state = "running"
            self._loop(stop)
            self._state = "stopping"
            self._flush()
        finally:
            self._close()
        self._state = "stopped"
        return self.stats()

    # --- life cycle -----------------------------------------------------------------------

    def _open(self) -> None:
        info = check_topic(self.settings, self.topic)  # a missing topic: fail, not wait
        self._cluster_id = info.cluster_id
        self._partition_count = info.topics[self.topic]
        self._sink = Sink(
            self.settings, group=self.group, topic=self.topic, owner=self.options.owner
        )
        self._sink.ping()  # fail fast (and clearly) if PostgreSQL is not there
        self._sink.register()  # and if the schema holds another pipeline's candles
        self._dlq = DeadLetters(self.settings)
        if self.options.write_cache:
            self._cache = CacheWriter(self.settings)
            self._cache.start()
        if self.options.alerts:
            self._rules = RuleWatcher(self.settings)
            self._rules.start()
        self._generation = self._sink.kafka_generation()
        self._subscribe()

    def _subscribe(self) -> None:
        from confluent_kafka import Consumer

        group_id = kafka_group_id(self.group, self._generation)
        self._consumer = new_client(Consumer, consumer_config(self.settings, group_id))
        self._consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._starved_since = time.monotonic()
        if self._generation:
            log.info("consuming with Kafka consumer group %r", group_id)

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # revokes: flushes what is left (nothing, normally)
            except Exception as exc:
                log.warning("closing the consumer: %s", exc)
        if self._dlq is not None:
            self._dlq.close()
        if self._cache is not None:
            self._cache.close()
        if self._rules is not None:
            self._rules.close()
        if self._sink is not None:
            self._sink.close()

    def _loop(self, stop: threading.Event) -> None:
        assert self._consumer is not None and self._dlq is not None
        opts = self.options
        consume = self._consumer.consume
        interval = opts.flush_interval_ms / 1000
        min_gap = min(MIN_FLUSH_GAP_MS, opts.flush_interval_ms) / 1000
        timeout = min(0.01, interval)  # short: a partial batch is returned without waiting
        while not stop.is_set():
            msgs = consume(opts.batch_size, timeout)
            now = time.monotonic()
            if not self._states and self._watch_group(now):
                consume = self._consumer.consume  # a new consumer, in a new group
            if msgs:
                self._last_message = now
                self._state = "running"
                self._process(msgs, now)
            if self._states:
                self._starved_since = None
            self._advance_idle(now)
            self.counters.sample_rate(now)
            self._note_end_offsets(now)
            since = now - self._last_flush
            caught_up = len(msgs) < opts.batch_size
            if (
                since >= interval
                or (caught_up and since >= min_gap)
                or self._buffered >= MAX_BUFFERED_TICKS
            ):
                self._flush()
            self._dlq.poll()
            if self._should_stop(now):
                return

    def _should_stop(self, now: float) -> bool:
        opts = self.options
        if opts.duration_ms is not None and now - self._started >= opts.duration_ms / 1000:
            return True
        if opts.until_idle_ms is not None and self._assigned_at is not None:
            quiet_since = max(self._last_message, self._assigned_at)
            return now - quiet_since >= opts.until_idle_ms / 1000 and self._consumed_to_end(now)
        return False

    def _consumed_to_end(self, now: float) -> bool:
        """Whether every partition of the topic is read to its end, whoever read it: ours
        by our position, the others by the checkpoint their owners stored. Idle alone is
        not done: after a crash the dead member's partitions wait for its session to
        expire (checked once a second)."""
        if now < self._next_end_check:
            return False
        self._next_end_check = now + 1.0
        behind = tuple(self._partitions_behind())
        if not behind:
            return True
        if behind != self._reported_behind:
            self._reported_behind = behind
            mine = sorted(set(behind) & set(self._states))
            log.info(
                "idle, but partitions %s are not read to their end yet (%s); waiting",
                list(behind),
                f"ours: {mine}" if mine else "owned by another member, or not assigned yet",
            )
        self._state = "waiting for partitions"
        return False

    def _partitions_behind(self) -> list[int]:
        from confluent_kafka import KafkaException, TopicPartition

        assert self._consumer is not None and self._sink is not None
        stored = self._sink.progress(self._cluster_id)
        behind = []
        for p in range(self._partition_count):
            tp = TopicPartition(self.topic, p)
            try:
                start, end = self._consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
                ps = self._states.get(p)
                if ps is not None:  # ours: where we are (past any control records too)
                    here = self._consumer.position([tp])[0].offset
                    position = max(ps.next_offset or 0, here if here >= 0 else 0)
                else:
                    position = stored.get(p, 0)
            except KafkaException:
                behind.append(p)  # cannot tell: not done
                continue
            # Offsets before the log start (retention deleted them) cannot be read: a
            # position there is at the end when the log is empty.
            if max(position, start) < end:
                behind.append(p)
        return behind

    def _note_end_offsets(self, now: float) -> None:
        """On the loop thread (the consumer is not shared): each owned partition's end
        offset from the client's cache of the last fetch (for the lag in stats), and the
        consumer's position (past transaction markers too, which are never delivered:
        the idle rule compares it with the end)."""
        if now < self._next_end_offsets or self._consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        self._next_end_offsets = now + END_OFFSETS_S
        ends = {}
        owned = [TopicPartition(self.topic, p) for p in list(self._states)]
        for tp in owned:
            try:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                ends[tp.partition] = high
        self._end_offsets = ends
        try:
            positions = self._consumer.position(owned) if owned else []
        except KafkaException:
            positions = []
        self._positions = {tp.partition: tp.offset for tp in positions if tp.offset >= 0}

    # --- a wedged consumer group ------------------------------------------------------------

    def _watch_group(self, now: float) -> bool:
        """Called while this member has no partitions; True if it moved to another Kafka
        group. It follows a generation another member moved the pipeline to at once; it
        moves it on itself when nothing has been assigned for ``wedged_after_ms`` although
        partitions have unread messages and no member of the pipeline has committed (the
        local broker can keep a dead member as group leader for good)."""
        if self._starved_since is None:
            self._starved_since = now
        if now < self._next_group_check:
            return False
        self._next_group_check = now + GROUP_CHECK_S
        assert self._sink is not None
        current = self._sink.kafka_generation()
        if current > self._generation:
            self._switch_generation(current, "another member moved the pipeline to it")
            return True
        wedged_after = self.options.wedged_after_ms
        if wedged_after is None or now - self._starved_since < wedged_after / 1000:
            return False
        waited = now - self._starved_since
        behind = self._partitions_behind()
        if not behind or self._sink.progress_within(wedged_after / 1000):
            return False  # nothing to read, or another member is working: a standby
        reason = (
            f"no partitions assigned for {waited:.0f}s while partitions {behind} have unread"
            " messages and no member committed"
        )
        log.warning(
            "Kafka consumer group %r looks wedged: %s; moving to a new group (the checkpoint"
            " in PostgreSQL carries on: nothing is lost or counted twice)",
            kafka_group_id(self.group, self._generation), reason,
        )
        self.counters.last_error = f"consumer group wedged: {reason}"
        self._switch_generation(self._sink.next_kafka_generation(self._generation, reason), reason)
        return True

    def _switch_generation(self, generation: int, why: str) -> None:
        log.warning(
            "moving from Kafka consumer group %r to %r (%s)",
            kafka_group_id(self.group, self._generation), kafka_group_id(self.group, generation),
            why,
        )
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:
                log.warning("closing the consumer: %s", exc)
        self._states.clear()
        self._generation = generation
        self._subscribe()
        self.counters.group_moves += 1

    # --- the hot path ---------------------------------------------------------------------

    def _process(self, msgs: list[Message], now: float) -> None:
        """Apply one batch; the alert rules of markets with change rules at its end."""
        deferred: list[tuple[PartitionState, MarketRules, str, str]] = []
        try:
            self._apply(msgs, now, deferred)
        finally:  # also when a tick failed half way: the ticks before it are applied
            try:
                for ps, m, source, quote in deferred:
                    hits = ps.alerts.apply_pending(m, source, quote)
                    if hits:
                        ps.fired.extend(hits)
                        ps.fired.sort(key=itemgetter(1))  # stream order, as fired one by one
            except BaseException:
                # Rule states would miss ticks whose offsets moved on (a flush on the way
                # out must not commit that): PostgreSQL is the checkpoint, forget it all.
                self._states.clear()
                raise

    def _apply(self, msgs: list[Message], now: float,
               deferred: list[tuple[PartitionState, MarketRules, str, str]]) -> None:
        """Apply one batch. Written for speed: locals, no per-tick helper calls. The ticks
        of a market with change rules wait in ``deferred`` (its ``pending_*``)."""
        states = self._states
        loads, fast = orjson.loads, fast_tick_fields
        store = self.options.store_ticks
        counters = self.counters
        keys = self._keys
        # The alert rules by symbol, as of this batch; empty: one truth test per tick.
        rules = self._rules.current if self._rules is not None else {}
        ticks = 0
        last_p = -1
        ps: PartitionState | None = None
        add: Any = None
        raw_append: Any = None
        off_append: Any = None
        # Any: the stubs type partition()/offset() as optional (they are None only on error
        # messages, skipped first); narrowing them per message would cost the hot path.
        batch: list[Any] = msgs
        for msg in batch:
            if msg.error() is not None:
                self._kafka_error(msg)
                continue
            p = msg.partition()
            if p != last_p:
                last_p = p
                ps = states.get(p)
                if ps is not None:
                    ps.last_tick = now
                    add = ps.windows.add
                    raw_append, off_append = ps.raw.append, ps.raw_offsets.append
            if ps is None:
                continue  # revoked or fenced: not ours any more
            offset = msg.offset()
            ps.next_offset = offset + 1
            row: TickRow | None
            try:
                obj = loads(msg.value())  # a None value raises TypeError
            except (orjson.JSONDecodeError, TypeError) as exc:
                obj, row = exc, None
            else:
                row = fast(obj)
            if row is None:  # parsed once: the slow path gets the decoded object
                row, reason = _checked_fields(obj)
                if row is None:
                    if not self._gap_marker(ps, obj):
                        self._dead_letter(msg, reason, _invalid_class(obj))
                    continue
            symbol, price, ts, source, _recv_ts, quote, qty, _extra, tid, _side = row
            # The key decides the partition: a tick keyed otherwise than by its symbol may
            # sit in another partition than its market's, where it would overwrite that
            # market's candles. It is dead-lettered instead.
            key = msg.key()
            if keys.get(key) != symbol:
                if key != symbol.encode():
                    self._dead_letter(msg, _key_mismatch(key, symbol), "key")
                    continue
                keys[key] = symbol
            if tid is not None:  # an exchange trade: applied once, whatever was re-sent
                if type(tid) is not int:
                    tid = None
                else:
                    seen = ps.trades.get((symbol, source, quote))
                    if seen is None:
                        seen = self._take_market(msg, ps, (symbol, source, quote), tid, ts)
                        if seen is None:
                            continue  # dead-lettered: the market lives on another partition
                    if tid <= seen[0]:
                        counters.duplicates += 1
                        continue
                    seen[0], seen[1], seen[2] = tid, ts, True
            if add(symbol, ts, price, qty, source, quote, tid):
                ticks += 1  # applied: duplicates, late and dead-lettered ones have their own
                if store:
                    raw_append(row)
                    off_append(offset)
                if rules:
                    watching = rules.get(symbol)
                    if watching is not None:
                        # Inside its market's quiet band a tick changes nothing: skipped.
                        a = ps.alerts
                        m = a.markets.get((symbol, source, quote))
                        if m is None or m.rules is not watching:
                            hits = a.on_tick(watching, source, quote, price, ts, offset)
                        elif m.changes:  # applied at the end of the batch, many at once
                            if not m.pending_times:
                                deferred.append((ps, m, source, quote))
                            m.pending_prices.append(price)
                            m.pending_times.append(ts)
                            m.pending_offsets.append(offset)
                            continue
                        elif not m.lo < price < m.hi:
                            hits = a.apply(m, source, quote, price, ts, offset)
                        else:
                            continue
                        if hits:
                            ps.fired.extend((h, offset) for h in hits)
            else:
                ps.late.append((row, offset, ps.windows.watermark))
                counters.late += 1
        counters.ticks += ticks
        if store:
            self._buffered += ticks

    def _take_market(
        self, msg: Message, ps: PartitionState, market: MarketKey, tid: int, ts: int
    ) -> list[Any] | None:
        """A market's first trade on this partition: the market's trade checkpoint here, or
        None after dead-lettering the trade (the market lives on another partition, where
        its candles are). The home is claimed in PostgreSQL, so that every aggregator
        process of the group agrees on it; a home, once claimed, never moves."""
        partition: int = msg.partition()  # type: ignore[assignment]  # not an error message
        home = self._homes.get(market)
        last = tid - 1
        if home is None or home == partition:
            assert self._sink is not None
            try:
                home, last = self._sink.claim_market(market, partition, tid, ts)
            except BaseException:
                # The batch is half applied and its offsets moved past this trade: a flush
                # on the way out (revoke, close) must not commit that. As for a failed flush,
                # PostgreSQL is the checkpoint: forget everything.
                self._states.clear()
                raise
            self._homes[market] = home
        if home != partition:
            symbol, source, quote = market
            self._dead_letter(msg, (
                f"market {source} {symbol}/{quote} is on partition {home}, not {partition}:"
                " a market's trades share one partition, or its candles would be overwritten"
            ), "partition")
            return None
        seen = ps.trades[market] = [last, ts, False]
        return seen

    def _gap_marker(self, ps: PartitionState, obj: Any) -> bool:
        """A feed's record of trades it could not fetch: stored with the next flush."""
        gap = parse_gap(obj)
        if gap is None:
            return False
        ps.gaps.append(gap)
        self.counters.gaps += 1
        return True

    def _dead_letter(self, msg: Message, reason: str, kind: str) -> None:
        """``kind``: the reason's class (aggregator.stats.INVALID_CLASSES)."""
        assert self._dlq is not None
        self.counters.invalid += 1
        self.counters.invalid_by[kind] += 1
        self._dlq.send(
            msg.value(), msg.key(), reason, topic=msg.topic() or self.topic,
            partition=msg.partition() or 0, offset=msg.offset() or 0,
        )

    def _kafka_error(self, msg: Message) -> None:
        from confluent_kafka import KafkaError

        err = msg.error()
        if err is None or err.code() == KafkaError._PARTITION_EOF:
            return
        self.counters.kafka_errors += 1
        self.counters.last_error = f"Kafka: {err.str()}"
        log.warning("Kafka error: %s", err.str())

    def _advance_idle(self, now: float) -> None:
        """The idle rule, for partitions read to their end only: one with messages still
        unread (the broker serves it slowly, the consumer is behind) is not quiet, and
        moving its watermark by the wall clock would make its own backlog late."""
        ends, positions = self._end_offsets, self._positions
        for p, ps in self._states.items():
            end = ends.get(p)
            if end is not None and max(ps.next_offset or 0, positions.get(p, 0)) < end:
                continue
            ps.windows.advance_idle(int((now - ps.last_tick) * 1000))

    # --- flush ----------------------------------------------------------------------------

    def _flush(self) -> None:
        """One transaction for every changed partition, then Redis and Kafka offsets."""
        t0 = time.perf_counter()
        self._last_flush = time.monotonic()
        flushes, docs = self._collect()
        self._buffered = 0
        if not flushes:
            return
        assert self._sink is not None
        try:
            fenced = self._sink.commit(flushes, self._cluster_id)
        except BaseException:
            # _collect already took this flush's ticks and final candles out of memory, so
            # a later flush (on revoke, while closing) must not advance the offsets without
            # them. PostgreSQL is the checkpoint: forget everything, as for lost partitions.
            self._states.clear()
            raise
        self._after_commit(flushes, docs, fenced)
        self.counters.flush_ms.append((time.perf_counter() - t0) * 1000)
        self.counters.flush_seconds.observe(self.counters.flush_ms[-1] / 1000)
        self.counters.flushes += 1

    def _collect(self) -> tuple[list[PartitionFlush], dict[int, list[CandleDoc]]]:
        flushes, docs = [], {}
        live = self._live_rules()
        for p, ps in self._states.items():
            w = ps.windows
            # Candles the watermark closed without a new tick: as stored already, so only
            # Redis hears of it (their state there said "open" until they turned final).
            closed = w.take_newly_closed()
            candles = w.finalize() + w.take_dirty()
            wm = None if w.watermark == NO_WATERMARK else w.watermark
            next_offset = ps.next_offset if ps.next_offset is not None else 0
            # A watermark that only moved with the wall clock (an idle partition) is not
            # worth a transaction of its own: it rides along with the next real change, and
            # a candle it makes final is a change. Otherwise an idle aggregator would write
            # every 40 ms.
            unchanged = next_offset == ps.committed_offset
            trades = [(k, t[0], t[1]) for k, t in ps.trades.items() if t[2]]
            alerts = self._take_alerts(ps, live)
            if (not candles and not ps.late and not ps.raw and not ps.gaps and unchanged
                    and not alerts):
                if closed and self._cache is not None:
                    self._cache.submit_candles(
                        [CandleDoc.from_candle(c, closed=True) for c in closed]
                    )
                continue
            flushes.append(
                PartitionFlush(
                    p, ps.epoch, next_offset, wm, candles, ps.raw, ps.raw_offsets, ps.late,
                    trades, ps.gaps, alerts or None,
                )
            )
            for t in ps.trades.values():
                t[2] = False
            doc = CandleDoc.from_candle
            docs[p] = [doc(c, closed=w.is_closed(c)) for c in candles] + [
                doc(c, closed=True) for c in closed if not c.final
            ]
            ps.raw, ps.raw_offsets, ps.late, ps.gaps, ps.fired = [], [], [], [], []
        return flushes, docs

    def _live_rules(self) -> set[int] | None:
        """The ids of the active rules when they changed since the last flush, else None."""
        if self._rules is None or self._rules.version == self._rules_version:
            return None
        self._rules_version = self._rules.version
        return {r.id for rules in self._rules.current.values() for r in rules}

    def _take_alerts(self, ps: PartitionState, live: set[int] | None) -> AlertFlush:
        """The partition's fired events and changed rule states; the change windows pruned
        to what a tick not yet late can still see."""
        a = ps.alerts
        if live is not None:
            a.forget(live)
        w = ps.windows
        floor = None if w.watermark == NO_WATERMARK else w.watermark - w.lateness - w.width
        store = a.store_windows
        states = [(rid, source, a.symbols[rid], quote, s.armed, s.fired, s.to_json(store))
                  for rid, source, quote, s in a.take_changed(floor)]
        return AlertFlush(ps.fired, states)

    def _restored_alerts(self, claim: Claim, windows: PartitionWindows) -> RuleStates:
        """The partition's alert rule states as of its checkpoint. Change windows are stored
        with their ticks only when raw ticks are not stored; otherwise they are read back
        from the raw ticks a window may still hold (later ones are not applied any more)."""
        store = not self.options.store_ticks
        recent = {}
        if claim.alert_windows and windows.watermark != NO_WATERMARK:
            assert self._sink is not None
            floor = windows.watermark - windows.lateness - windows.width
            recent = self._sink.recent_ticks(claim.partition, claim.alert_windows, floor)
        return RuleStates(claim.alerts, store_windows=store, recent=recent)

    def _after_commit(
        self, flushes: list[PartitionFlush], docs: dict[int, list[CandleDoc]],
        fenced: set[int],
    ) -> None:
        c = self.counters
        committed = []
        for f in flushes:
            if f.partition in fenced:
                c.fenced += 1
                self._states.pop(f.partition, None)  # someone else owns it now
                log.warning("partition %d: flush refused, claimed by another consumer", f.partition)
                continue
            ps = self._states.get(f.partition)
            if ps is not None:
                ps.committed_offset = f.next_offset
            c.candles_written += len(f.candles)
            c.candles_final += sum(1 for x in f.candles if x.final)
            c.raw_ticks_written += f.raw_count
            if f.alerts is not None:
                c.alerts_fired += f.alerts.inserted
            committed.append(f)
            if self._cache is not None:
                self._cache.submit_candles(docs[f.partition])
        self._commit_kafka_offsets(committed)

    def _commit_kafka_offsets(self, flushes: list[PartitionFlush]) -> None:
        """Informational only (lag tools read them); PostgreSQL holds the real offsets."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, f.partition, f.next_offset) for f in flushes
                   if f.next_offset > 0]
        if offsets and self._consumer is not None:
            with contextlib.suppress(KafkaException):
                self._consumer.commit(offsets=offsets, asynchronous=True)

    # --- rebalance callbacks (run inside consume(), on the loop thread) -----------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        assert self._sink is not None
        mine = [tp for tp in partitions if tp.topic == self.topic]
        self._refresh_cluster_id(consumer)
        claims = self._sink.claim([tp.partition for tp in mine], self._cluster_id)
        now = time.monotonic()
        for tp in mine:
            claim = claims[tp.partition]
            tp.offset = claim.next_offset if claim.next_offset is not None else OFFSET_BEGINNING
            windows = PartitionWindows(
                self.options.delay_ms, self.options.lateness_ms,
                watermark=claim.watermark_ms, candles=claim.candles,
            )
            self._states[tp.partition] = PartitionState(
                claim.epoch, windows, claim.next_offset, now,
                committed_offset=claim.next_offset,
                trades={k: [tid, 0, False] for k, tid in claim.trades.items()},
                alerts=self._restored_alerts(claim, windows),
            )
            self._homes.update(claim.homes)
            if claim.cluster_changed:
                self.counters.offset_resets += 1
                log.warning(
                    "partition %d: the broker is new (cluster id changed); reading it from "
                    "the beginning, keeping %d stored candles", tp.partition, len(claim.candles)
                )
        consumer.assign(partitions)
        self._assigned_at = now
        log.info("assigned partitions %s", sorted(tp.partition for tp in mine))

    def _refresh_cluster_id(self, consumer: Consumer) -> None:
        """The broker may have been replaced since start-up (a local broker restarted empty
        while this process ran): claims compare the stored cluster id with the current one.
        Asked through the consumer's own connection, inside the rebalance callback."""
        from confluent_kafka import KafkaException

        try:
            self._cluster_id = consumer.list_topics(self.topic, timeout=3.0).cluster_id
        except KafkaException as exc:
            log.warning("could not refresh the broker's cluster id: %s", exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._states:
            self._flush()
        for tp in partitions:
            self._states.pop(tp.partition, None)
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._states.pop(tp.partition, None)
        log.warning("lost partitions %s: state dropped unwritten", sorted(tp.partition for tp in partitions))
