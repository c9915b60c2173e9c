"""Rendering of `up`, `down`, `status` and `config` results: pure functions to Rich objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cryptoctl.stack.local import DownOutcome, UpResult
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


def status_view(status: StackStatus) -> RenderableType:
    services = Table(title="services", title_justify="left")
    for col in ("service", "state", "address", "version", "rtt ms", "PID", "detail"):
        services.add_column(col, overflow="fold")
    for s in status.services:
        state = Text("up", style="bold green") if s.up else Text("down", style="bold red")
        services.add_row(
            _LABELS.get(s.name, s.name), state, s.address, s.version, _ms(s.rtt_ms),
            str(s.pid) if s.pid else "-", s.detail,
        )
    parts: list[RenderableType] = [services]
    if status.topics:
        topics = Table(title="topics", title_justify="left")
        topics.add_column("topic")
        topics.add_column("partitions", justify="right")
        for topic in status.topics:
            topics.add_row(topic.name, str(topic.partitions))
        parts.append(topics)
    if status.tables:
        tables = Table(title="tables", title_justify="left")
        tables.add_column("table")
        tables.add_column("rows", justify="right")
        for table in status.tables:
            tables.add_row(table.name, f"{table.rows:,}")
        parts.append(tables)
    return Group(*parts)


def settings_table(values: Mapping[str, Any], sources: Mapping[str, str]) -> Table:
    table = Table(box=None)
    for col in ("setting", "value", "from"):
        table.add_column(col)
    for name, value in values.items():
        table.add_row(name, str(value), sources.get(name, "default"))
    return table
