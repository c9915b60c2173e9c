"""The pipeline part of `cryptoctl status`: per consumer group found in the stored
checkpoints (``processing_metadata``), each partition's owner, stored next offset, the
topic's end offset, lag, watermark, time since the last commit, and a health word.

The checkpoint is PostgreSQL's (the aggregator's exactly-once offsets), not Kafka's
committed offsets, which are informational only. Which partitions a live member holds is
the broker's view of the Kafka group; the local broker (Tansu) lists no members, so there
a partition counts as unowned only when the group is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptoctl.settings import Settings

Health = Literal["ok", "lagging", "stalled", "unowned", "unknown"]
# Worst first: a group's health is its worst partition's.
HEALTH_ORDER: tuple[Health, ...] = ("stalled", "unowned", "lagging", "unknown", "ok")

DEFAULT_LAGGING_OVER = 1_000  # messages
DEFAULT_STALLED_AFTER_MS = 60_000

# What the local broker's end offsets are worth (docs/local-stack.md, known limits).
APPROXIMATE_NOTE = (
    "≈ the local broker (Tansu) reports a partition's end as the first offset of its last "
    "producer batch + 1: end offsets and lag may be low by up to one batch"
)


@dataclass(frozen=True)
class HealthRules:
    """When a partition is lagging or stalled (`status --lagging-over`, `--stalled-after`)."""

    lagging_over: int = DEFAULT_LAGGING_OVER
    stalled_after_ms: int = DEFAULT_STALLED_AFTER_MS


def partition_health(
    lag: int | None, held: bool | None, since_commit_ms: int, rules: HealthRules
) -> Health:
    """The health word of one partition.

    ``stalled``: messages wait (lag > 0) and nobody committed for ``stalled_after_ms``,
    whether a member holds the partition (a hung process) or none does. ``unowned``: no
    live member holds it (``held`` False; None: the broker does not say). ``lagging``: more
    than ``lagging_over`` messages wait. ``unknown``: the end offset could not be read.
    """
    if lag is not None and lag > 0 and since_commit_ms >= rules.stalled_after_ms:
        return "stalled"
    if held is False:
        return "unowned"
    if lag is None:
        return "unknown"
    if lag > rules.lagging_over:
        return "lagging"
    return "ok"


def worst(healths: Sequence[Health]) -> Health:
    return min(healths, key=HEALTH_ORDER.index, default="ok")


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    owner: str | None  # the member that last claimed it: "host:pid:id"
    held: bool | None  # a live member of the Kafka group holds it (None: cannot tell)
    next_offset: int  # stored: the next message to read
    end_offset: int | None  # the topic's, as the broker reports it (None: Kafka down)
    lag: int | None
    watermark: str | None  # event time, ISO-8601 UTC (None: no tick yet)
    since_commit_ms: int  # since the last commit (or claim)
    health: Health
    # The stored offsets belong to an earlier broker log (a local broker restarted empty):
    # the aggregator reads the new log from its start, so the lag counts from 0.
    earlier_broker: bool = False


@dataclass(frozen=True)
class GroupStatus:
    group: str  # the pipeline's consumer group (the checkpoint's key)
    topic: str
    kafka_group: str  # the Kafka group it consumes with ("<group>.genN" after a wedge)
    state: str  # the Kafka group's state, lower case ("stable", "empty", ...; "" unknown)
    partitions: list[PartitionStatus]

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions]
        return None if any(lag is None for lag in lags) else sum(lag or 0 for lag in lags)

    @property
    def health(self) -> Health:
        return worst([p.health for p in self.partitions])


@dataclass(frozen=True)
class PipelineStatus:
    groups: list[GroupStatus] = field(default_factory=list)
    rules: HealthRules = field(default_factory=HealthRules)
    approximate: bool = False  # end offsets from the local broker: see APPROXIMATE_NOTE
    error: str = ""  # why end offsets or group states are missing (Kafka down, ...)

    def stalled(self) -> list[tuple[GroupStatus, list[PartitionStatus]]]:
        out = []
        for g in self.groups:
            parts = [p for p in g.partitions if p.health == "stalled"]
            if parts:
                out.append((g, parts))
        return out

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        groups = [asdict(g) | {"lag": g.lag, "health": g.health} for g in self.groups]
        return {
            "groups": groups,
            "rules": asdict(self.rules),
            "approximate": self.approximate,
            "note": APPROXIMATE_NOTE if self.approximate else "",
            "error": self.error,
        }


# A checkpoint row of cryptoctl.db.status.checkpoints.
Checkpoint = tuple[str, str, int, int, int | None, str | None, str | None, int, int]


def pipeline_status(
    settings: Settings,
    rows: Sequence[Checkpoint],
    *,
    cluster_id: str | None,
    kafka_up: bool,
    approximate: bool,
    rules: HealthRules,
) -> PipelineStatus:
    """Each stored pipeline with the broker's end offsets and group state. ``cluster_id``:
    the broker's (stored offsets of another cluster count from 0)."""
    from cryptoctl.aggregator.core import kafka_group_id
    from cryptoctl.errors import ServiceUnavailable
    from cryptoctl.kafka.groups import GroupView, describe_group, end_offsets

    by_pipeline: dict[tuple[str, str], list[Checkpoint]] = {}
    for row in rows:
        by_pipeline.setdefault((row[0], row[1]), []).append(row)
    groups, error = [], "" if kafka_up else "Kafka is not reachable: no end offsets"
    for (group, topic), cps in by_pipeline.items():
        kafka_group = kafka_group_id(group, cps[0][8])
        ends: dict[int, int] = {}
        view = GroupView("", None)
        if kafka_up:
            try:
                ends = end_offsets(settings, topic, [cp[2] for cp in cps])
                view = describe_group(settings, kafka_group, topic)
            except ServiceUnavailable as exc:
                error = exc.detail
        parts = [partition_status(cp, ends.get(cp[2]), view.holds(cp[2]), cluster_id, rules) for cp in cps]
        groups.append(GroupStatus(group, topic, kafka_group, view.state.lower(), parts))
    return PipelineStatus(groups, rules, approximate and kafka_up, error)


def partition_status(
    cp: Checkpoint, end: int | None, held: bool | None, cluster_id: str | None, rules: HealthRules
) -> PartitionStatus:
    from cryptoctl.times import iso_utc

    _group, _topic, partition, next_offset, watermark_ms, owner, stored_cluster, since_ms, _gen = cp
    earlier = stored_cluster is not None and cluster_id is not None and stored_cluster != cluster_id
    position = 0 if earlier else next_offset
    lag = None if end is None else max(end - position, 0)
    return PartitionStatus(
        partition, owner, held, next_offset, end, lag,
        iso_utc(watermark_ms) if watermark_ms is not None else None, since_ms,
        partition_health(lag, held, since_ms, rules), earlier,
    )  # fmt: skip
