"""Rendering of `db prune`'s result: a pure function to a Rich object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cryptoctl.db.prune import PruneResult


def prune_table(result: PruneResult) -> RenderableType:
    """Rows deleted (or, in a dry run, that would be) per table, and the TimescaleDB
    retention policies where there are any."""
    verb = "would delete" if result.dry_run else "deleted"
    table = Table(
        title=f"older than {result.cutoff}", title_justify="left", box=box.SIMPLE_HEAD,
        show_edge=False, pad_edge=False, header_style="bold",
    )  # fmt: skip
    table.add_column("table")
    table.add_column(f"rows {verb}", justify="right")
    table.add_column("how")
    for t in result.tables:
        how = f"drop_chunks ({t.chunks} chunks)" if t.how == "drop_chunks" else "batched DELETE"
        table.add_row(t.table, f"{t.rows:,}", "count only" if result.dry_run else how)
    parts: list[RenderableType] = [table]
    if result.timescaledb:
        policies = ", ".join(
            f"{name}: drop after {after}" for name, after in result.retention_policies.items()
        )
        parts.append(Text(f"TimescaleDB retention policies: {policies or 'none'}"))
    return Group(*parts)
