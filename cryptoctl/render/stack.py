"""Rendering of `up`, `down`, `run` and `status` results: pure functions to Rich objects.

(`config`'s table is in render/config.py.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: rendering loads no stack runtime (nor psutil)
    from cryptoctl.stack.local import DownOutcome, UpResult
    from cryptoctl.stack.pipeline import GroupStatus, PartitionStatus, PipelineStatus
    from cryptoctl.stack.status import StackStatus

_LABELS = {"kafka": "Kafka", "postgres": "PostgreSQL", "redis": "Redis"}


def up_table(result: UpResult) -> Table:
    table = Table(title=f"local stack ({result.home})", title_justify="left", box=None)
    for col in ("service", "address", "PID", "state", "note"):
        table.add_column(col)
    for s in result.services:
        state = (
            Text(f"started in {s.seconds:.1f}s", style="green")
            if s.action == "started"
            else Text("already running", style="cyan")
        )
        table.add_row(s.label, s.address, str(s.pid), state, s.note)
    return table


def up_summary(result: UpResult) -> str:
    topics = ", ".join(result.topics_created) if result.topics_created else "already present"
    return f"topics: {topics}; schema applied; ready in {result.seconds:.1f}s"


def run_stack_line(result: UpResult) -> str:
    """`run`'s one line (Rich markup) on the stack: what was started, how long it took."""
    started = [s.label for s in result.services if s.action == "started"]
    state_text = f"started {', '.join(started)}" if started else "already running"
    return f"[green]✓[/] local stack {state_text}; {up_summary(result)}"


def down_table(outcomes: list[DownOutcome]) -> Table:
    table = Table(box=None)
    for col in ("service", "PID", "result"):
        table.add_column(col)
    styles = {"stopped": "green", "killed": "yellow", "not running": "dim"}
    for o in outcomes:
        table.add_row(o.label, str(o.pid or "-"), Text(o.action, style=styles.get(o.action, "")))
    return table


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def short_address(address: str) -> str:
    """``redis://user:***@host:6379/0`` as ``host:6379/0``, like the other services'
    addresses. Another scheme (``rediss://`` for TLS) says something and is kept."""
    if not address.startswith("redis://"):
        return address
    return address.removeprefix("redis://").rpartition("@")[2]


def _table(title: str, **kwargs: Any) -> Table:
    """A status table: a rule under the header, no frame, one space of padding."""
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
        pad_edge=False, header_style="bold", **kwargs,
    )


# Below this width `status` leaves out the PID column (`cryptoctl up` shows the PIDs).
STATUS_WIDE = 100


def status_view(status: StackStatus, width: int = STATUS_WIDE) -> RenderableType:
    """Services, the pipeline, topics and tables; fits ``width`` columns (80 and up) on one line each."""
    wide = width >= STATUS_WIDE
    services = _table(
        "services",
        caption=f"Kafka cluster {status.cluster_id}" if status.cluster_id else None,
        caption_justify="left",
    )
    services.add_column("service", no_wrap=True)
    services.add_column("state", no_wrap=True)
    services.add_column("address", no_wrap=True)
    services.add_column("version / error", overflow="fold")  # the one column that may wrap
    services.add_column("rtt ms", justify="right", no_wrap=True)
    if wide:
        services.add_column("PID", justify="right", no_wrap=True)
    for s in status.services:
        state = Text("up", style="bold green") if s.up else Text("down", style="bold red")
        about = Text(s.version) if s.up else Text(s.detail or "not reachable", style="red")
        row: list[RenderableType] = [
            _LABELS.get(s.name, s.name), state, short_address(s.address), about, _ms(s.rtt_ms),
        ]
        if wide:
            row.append(str(s.pid) if s.pid else "-")
        services.add_row(*row)
    # The pipeline's health next, before the inventories: a broker with many topics makes
    # the page taller than a terminal, and a live `status --watch` crops the bottom.
    parts: list[RenderableType] = [services, *pipeline_parts(status.pipeline, width)]
    if status.alert_deliveries_failed:
        line = f"alerts: {status.alert_deliveries_failed:,} failed deliveries (`cryptoctl alerts history`)"
        parts += [Text(), Text(line, style="yellow")]
    if status.topics:
        topics = _table("topics")
        topics.add_column("topic", overflow="fold")
        topics.add_column("partitions", justify="right")
        for topic in status.topics:
            topics.add_row(topic.name, str(topic.partitions))
        parts += [Text(), topics]
    if status.tables:
        tables = _table("tables")
        tables.add_column("table")
        tables.add_column("rows", justify="right")
        for table in status.tables:
            tables.add_row(table.name, f"{table.rows:,}")
        parts += [Text(), tables]
    if status.gaps:
        shown = len(status.gaps)
        more = f" (newest {shown} of {status.gaps_total:,})" if status.gaps_total > shown else ""
        gaps = _table(f"feed gaps: trades an exchange feed could not fetch{more}")
        gaps.add_column("market", no_wrap=True)
        gaps.add_column("trade ids", no_wrap=True)
        gaps.add_column("between (UTC)", no_wrap=True)
        if wide:
            gaps.add_column("reason", overflow="fold")
        for g in status.gaps:
            ids = str(g.first_id) if g.first_id == g.last_id else f"{g.first_id}-{g.last_id}"
            between = f"{g.after[5:19].replace('T', ' ')} - {g.before[11:19]}"
            cells = [g.market, ids, between, *([g.reason] if wide else [])]
            gaps.add_row(*cells)
        parts += [Text(), gaps]
    return Group(*parts)


_HEALTH_STYLES = {
    "ok": "bold green", "lagging": "bold yellow", "stalled": "bold red",
    "unowned": "bold magenta", "unknown": "dim",
}  # fmt: skip


def _ago(ms: int) -> str:
    from cryptoctl.times import format_duration_ms

    return f"{format_duration_ms(ms)} ago"


def _count(value: int | None, approximate: bool) -> str:
    if value is None:
        return "-"
    return ("≈" if approximate else "") + f"{value:,}"


def _group_title(g: GroupStatus, approximate: bool) -> Text:
    title = Text(f"pipeline {g.group} on {g.topic}: ")
    title.append(g.health, style=_HEALTH_STYLES[g.health])
    title.append(f", lag {_count(g.lag, approximate)}")
    kafka = [f"Kafka group {g.kafka_group}"] if g.kafka_group != g.group else []
    if g.state:
        kafka.append(g.state)
    if kafka:
        title.append(f" ({', '.join(kafka)})")
    return title


def _partition_row(p: PartitionStatus, approximate: bool, wide: bool) -> list[RenderableType]:
    watermark = p.watermark[:19].replace("T", " ") if p.watermark else "-"
    row: list[RenderableType] = [str(p.partition)]
    if wide:
        row.append(Text(p.owner or "-"))  # a Text: "host:1234:..." is no emoji code
    row += [
        f"{p.next_offset:,}" + ("*" if p.earlier_broker else ""),
        _count(p.end_offset, approximate), _count(p.lag, approximate),
        watermark if wide else watermark[5:], _ago(p.since_commit_ms),
        Text(p.health, style=_HEALTH_STYLES[p.health]),
    ]  # fmt: skip
    return row


def pipeline_parts(pipeline: PipelineStatus, width: int = STATUS_WIDE) -> list[RenderableType]:
    """A table per pipeline (consumer group and topic) with a row per partition, and the
    notes that go with them; nothing when no aggregator ever stored a checkpoint."""
    from cryptoctl.stack.pipeline import APPROXIMATE_NOTE

    wide = width >= STATUS_WIDE
    parts: list[RenderableType] = []
    for g in pipeline.groups:
        table = _table("")
        table.title = _group_title(g, pipeline.approximate)
        table.add_column("part", justify="right", no_wrap=True)
        if wide:
            table.add_column("owner", overflow="fold")
        for name in ("next", "end", "lag"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("watermark (UTC)", no_wrap=True)
        table.add_column("commit", justify="right", no_wrap=True)
        table.add_column("health", no_wrap=True)
        for p in g.partitions:
            table.add_row(*_partition_row(p, pipeline.approximate, wide))
        parts += [Text(), table]
    notes = []
    if pipeline.approximate and pipeline.groups:
        notes.append(APPROXIMATE_NOTE)
    if any(p.earlier_broker for g in pipeline.groups for p in g.partitions):
        notes.append("* stored for an earlier broker log: the aggregator reads the new one from 0")
    if pipeline.error and pipeline.groups:
        notes.append(f"pipeline: {pipeline.error}")
    if notes:  # a grid, so that a note wraps to the width (the console does not wrap)
        grid = Table.grid()
        grid.add_column()
        for note in notes:
            grid.add_row(Text(note, style="dim"))
        parts.append(grid)
    return parts

