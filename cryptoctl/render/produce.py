"""`produce`'s status line, stop/abort lines and exit summary: pure functions of the
producer's stats, no terminal needed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cryptoctl.durations import format_duration_ms
from cryptoctl.render import numbers as fmt

if TYPE_CHECKING:  # annotations only: rendering a summary needs no Kafka client loaded
    from cryptoctl.producer.loop import ProducerStats, ProducerSummary


def prices_text(last_price: Mapping[str, float], limit: int = 6) -> str:
    items = list(last_price.items())
    text = "  ".join(f"{s} {fmt.price(p)}" for s, p in items[:limit])
    if len(items) > limit:
        text += f"  (+{len(items) - limit})"
    return text


def status_line(stats: ProducerStats) -> str:
    """One line: rate, counters, last prices (the live status and the periodic log)."""
    parts = [
        f"{stats.source} → {stats.topic}",
        f"{stats.ticks_per_s:,.0f} ticks/s",
        f"delivered {stats.delivered:,}",
        f"failed {stats.failed:,}",
        f"retries {stats.retries:,}",
    ]
    if stats.unchanged:
        parts.append(f"unchanged {stats.unchanged:,}")
    if stats.invalid:
        parts.append(f"invalid {stats.invalid:,}")
    if stats.source_errors:
        parts.append(f"source errors {stats.source_errors:,}")
    prices = prices_text(stats.last_price)
    if prices:
        parts.append(prices)
    return " · ".join(parts)


def stopping_line(stats: ProducerStats) -> str:
    """Said on the first Ctrl-C, while the ticks in flight are flushed."""
    return f"stopping: flushing {stats.pending:,} ticks in flight (Ctrl-C again to abort)"


def abort_line(stats: ProducerStats) -> str:
    """Said on the second Ctrl-C: what is known to be delivered, what is not."""
    return (
        f"aborted: {stats.delivered:,} ticks delivered, {stats.pending:,} still in flight "
        "were not confirmed (they may or may not be on the topic)"
    )


def summary_rows(summary: ProducerSummary) -> list[tuple[str, str]]:
    rows = [
        ("source", summary.source),
        ("topic", summary.topic),
        ("stopped by", summary.stopped_by),
        ("elapsed", format_duration_ms(summary.elapsed_s * 1000)),
        ("produced", f"{summary.produced:,}"),
        ("delivered", f"{summary.delivered:,}"),
        ("failed", f"{summary.failed:,}"),
        ("undelivered", f"{summary.undelivered:,}"),
        ("retries", f"{summary.retries:,}"),
        ("unchanged", f"{summary.unchanged:,}"),
        ("invalid", f"{summary.invalid:,}"),
        ("source errors", f"{summary.source_errors:,}"),
        ("producer restarts", f"{summary.restarts:,}"),
        ("average rate", f"{summary.avg_ticks_per_s:,.0f} ticks/s"),
    ]
    if summary.last_price:
        rows.append(("last prices", prices_text(summary.last_price, limit=20)))
    if summary.last_problem:
        rows.append(("last problem", summary.last_problem))
    return rows


def summary_table(summary: ProducerSummary) -> Table:
    """The summary at exit as a table (printed on stderr: a report, not data)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    return table


def summary_json(summary: ProducerSummary) -> dict[str, Any]:
    """The --format json object: the summary, times and rates rounded."""
    data = summary.to_dict()
    data["elapsed_s"] = round(data["elapsed_s"], 3)
    data["ticks_per_s"] = round(data["ticks_per_s"], 1)
    data["avg_ticks_per_s"] = round(data["avg_ticks_per_s"], 1)
    return data
