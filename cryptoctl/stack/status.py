"""`cryptoctl status`: probe each configured service, whoever started it.

Each probe is independent, so one service being down never hides the state of the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptoctl.errors import CryptoctlError, PipelineStalled, ServiceUnavailable
from cryptoctl.settings import Settings, redact
from cryptoctl.stack.pipeline import HealthRules, PipelineStatus

# How errors name each service (ServiceUnavailable's wording, and its hint's setting).
_LABELS = {"kafka": "Kafka", "postgres": "PostgreSQL", "redis": "Redis"}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str  # never a password (redacted)
    version: str = ""  # the server's, short: "16.4 + TimescaleDB", "7.2.4"; Kafka: "1 broker"
    rtt_ms: float | None = None
    pid: int | None = None  # set when the local runtime started it
    detail: str = ""


@dataclass(frozen=True)
class TopicStatus:
    name: str
    partitions: int


@dataclass(frozen=True)
class TableStatus:
    name: str
    rows: int


@dataclass(frozen=True)
class GapStatus:
    """A gap an exchange feed recorded: trades it knows it missed and could not fetch."""

    market: str  # "binance BTC/USDT"
    first_id: int
    last_id: int
    after: str  # ISO-8601 UTC: the trades around the gap
    before: str
    reason: str


@dataclass(frozen=True)
class StackStatus:
    services: list[ServiceStatus]
    topics: list[TopicStatus] = field(default_factory=list)
    tables: list[TableStatus] = field(default_factory=list)
    home: str = ""
    cluster_id: str | None = None
    gaps: list[GapStatus] = field(default_factory=list)  # the newest few
    gaps_total: int = 0
    pipeline: PipelineStatus = field(default_factory=PipelineStatus)
    alert_deliveries_failed: int = 0  # fired alerts whose delivery ran out of retries

    @property
    def all_up(self) -> bool:
        return all(s.up for s in self.services)

    def unavailable(self) -> ServiceUnavailable | None:
        """The first service down as the error every command raises for it; the others
        down are named in its detail, so one line says all."""
        down = [s for s in self.services if not s.up]
        if not down:
            return None
        first, others = down[0], [_LABELS.get(s.name, s.name) for s in down[1:]]
        detail = first.detail + (f" (also down: {', '.join(others)})" if others else "")
        return ServiceUnavailable(
            _LABELS.get(first.name, first.name), first.address, detail,
            hint="start the local stack with `cryptoctl up`" if others else None,
        )

    def problem(self) -> CryptoctlError | None:
        """What makes `status` exit non-zero: a service down (first), else a stalled
        pipeline; None when healthy."""
        down = self.unavailable()
        if down is not None:
            return down
        stalled = self.pipeline.stalled()
        if not stalled:
            return None
        from cryptoctl.times import format_duration_ms

        return PipelineStalled(
            [(g.group, g.topic, [p.partition for p in parts], sum(p.lag or 0 for p in parts))
             for g, parts in stalled],
            format_duration_ms(self.pipeline.rules.stalled_after_ms),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        plain = {k: v for k, v in asdict(self).items() if k != "pipeline"}
        return plain | {"pipeline": self.pipeline.to_dict(), "all_up": self.all_up}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - t0) * 1000


def _probe_kafka(settings: Settings) -> tuple[ServiceStatus, list[TopicStatus], str | None]:
    from cryptoctl.kafka.clients import check_kafka

    try:
        info, rtt = _timed(lambda: check_kafka(settings, timeout=3.0))
    except ServiceUnavailable as exc:
        return ServiceStatus("kafka", False, settings.kafka_bootstrap, detail=exc.detail), [], None
    topics = [TopicStatus(n, p) for n, p in sorted(info.topics.items())]
    version = f"{info.brokers} broker" + ("" if info.brokers == 1 else "s")
    return ServiceStatus("kafka", True, settings.kafka_bootstrap, version, rtt), topics, info.cluster_id


@dataclass
class _Found:
    """What the PostgreSQL probe read besides the server's state."""

    tables: list[TableStatus] = field(default_factory=list)
    gaps_total: int = 0
    gaps: list[GapStatus] = field(default_factory=list)
    checkpoints: list[Any] = field(default_factory=list)


def _probe_postgres(settings: Settings) -> tuple[ServiceStatus, _Found]:
    from cryptoctl.db.connection import connect, database_errors, db_address, timescale_available
    from cryptoctl.db.status import checkpoints, feed_gaps, server_version, table_rows
    from cryptoctl.times import iso_utc

    address = db_address(settings)
    try:
        conn, rtt = _timed(lambda: connect(settings, autocommit=True, timeout=3))
    except ServiceUnavailable as exc:
        return ServiceStatus("postgres", False, address, detail=exc.detail), _Found()
    with database_errors(settings, "reading server and table status"), conn:
        reported = server_version(conn)
        # "16.4 (Ubuntu 16.4-1.pgdg22.04+1)": the build after the number says little here
        version = reported.split()[0] if reported else "?"
        if timescale_available(conn):
            version += " + TimescaleDB"
        tables = [TableStatus(name, rows) for name, rows in table_rows(conn)]
        total, rows = feed_gaps(conn)
        gaps = [
            GapStatus(f"{src} {sym}/{quote}", first, last, iso_utc(after), iso_utc(before), why)
            for src, sym, quote, first, last, after, before, why in rows
        ]
        stored = checkpoints(conn)
    return ServiceStatus("postgres", True, address, version, rtt), _Found(tables, total, gaps, stored)


def _probe_redis(settings: Settings) -> ServiceStatus:
    from cryptoctl.cache.client import check_redis

    address = redact(settings.redis_url)
    try:
        client, rtt = _timed(lambda: check_redis(settings))
        info = client.info("server")
    except ServiceUnavailable as exc:
        return ServiceStatus("redis", False, address, detail=exc.detail)
    except Exception as exc:  # a server that answered PING but not INFO
        return ServiceStatus("redis", False, address, detail=str(exc))
    return ServiceStatus("redis", True, address, str(info.get("redis_version", "?")), rtt)



def _probe_alert_failures(settings: Settings, postgres_up: bool) -> int:
    """Fired alerts whose delivery gave up; 0 when PostgreSQL (or the table) is not there."""
    from cryptoctl.alerts.store import failed_deliveries
    from cryptoctl.db.connection import session
    from cryptoctl.errors import CryptoctlError

    if not postgres_up:
        return 0
    try:
        with session(settings, "counting failed alert deliveries", autocommit=True) as conn:
            return failed_deliveries(conn)
    except CryptoctlError:
        return 0


def stack_status(settings: Settings, rules: HealthRules | None = None) -> StackStatus:
    """Every service, topic and table, and the pipeline's health by ``rules``."""
    from cryptoctl.stack.local import running_records
    from cryptoctl.stack.pipeline import pipeline_status

    records = running_records(settings)
    kafka, topics, cluster_id = _probe_kafka(settings)
    postgres, found = _probe_postgres(settings)
    redis = _probe_redis(settings)
    pipeline = pipeline_status(
        settings, found.checkpoints, cluster_id=cluster_id, kafka_up=kafka.up,
        approximate="kafka" in records,  # the local runtime's broker is Tansu
        rules=rules or HealthRules(),
    )  # fmt: skip
    services = []
    for status in (kafka, postgres, redis):
        record = records.get(status.name)
        services.append(
            ServiceStatus(**{**status.__dict__, "pid": record.pid if record else None})
        )
    return StackStatus(
        services, topics, found.tables, str(settings.home), cluster_id, found.gaps,
        found.gaps_total, pipeline, _probe_alert_failures(settings, postgres.up),
    )  # fmt: skip
