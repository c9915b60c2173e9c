"""`aggregate`'s status line and exit summary: pure functions of AggregatorStats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from cryptoctl.times import format_duration_ms, iso_utc

if TYPE_CHECKING:  # annotations only: rendering a summary needs no consumer loaded
    from cryptoctl.aggregator.stats import AggregatorStats


def _wm(ms: int | None) -> str:
    return "-" if ms is None else iso_utc(ms)[11:19]  # HH:MM:SS is enough on one line


def status_line(s: AggregatorStats) -> str:
    """One line: rate, totals, flush latency, ownership and per-partition watermarks."""
    flush = "-" if s.flush_latency_ms_p50 is None else f"{s.flush_latency_ms_p50:.1f}ms"
    wms = " ".join(f"p{p}:{_wm(w)}" for p, w in s.watermarks.items()) or "none"
    parts = [
        f"{s.ticks_per_s:,.0f} ticks/s",
        f"ticks {s.ticks:,}",
        f"open windows {s.open_windows}",
        f"flush p50 {flush}",
        f"late {s.late:,}",
        f"invalid {s.invalid:,}",
        f"partitions {len(s.partitions)}",
        f"wm {wms}",
    ]
    if s.duplicates:
        parts.append(f"duplicates {s.duplicates:,}")
    if s.gaps:
        parts.append(f"gaps {s.gaps}")
    if s.alerts_fired:
        parts.append(f"alerts {s.alerts_fired}")
    if s.fenced:
        parts.append(f"fenced {s.fenced}")
    if s.group_moves:
        parts.append(f"group {s.kafka_group}")
    if s.cache_pending and not s.cache_connected:
        parts.append(f"redis down ({s.cache_pending} pending)")
    return " | ".join(parts)


def summary(s: AggregatorStats) -> dict[str, Any]:
    """The --format json object (and the rows of the table form)."""
    return {
        "ticks": s.ticks,
        "candles": s.candles_written,
        "candles_final": s.candles_final,
        "late": s.late,
        "invalid": s.invalid,
        "invalid_by": dict(s.invalid_by),
        "raw_ticks": s.raw_ticks_written,
        "flushes": s.flushes,
        "flush_latency_ms_p50": s.flush_latency_ms_p50,
        "elapsed_s": s.elapsed_s,
        "ticks_per_s": round(s.ticks / s.elapsed_s, 1) if s.elapsed_s > 0 else 0.0,
        "fenced": s.fenced,
        "offset_resets": s.offset_resets,
        "pg_retries": s.pg_retries,
        "cache_errors": s.cache_errors,
        "kafka_errors": s.kafka_errors,
        "dlq_failed": s.dlq_failed,
        "cache_pending": s.cache_pending,
        "group_moves": s.group_moves,
        "duplicates": s.duplicates,
        "gaps": s.gaps,
        "alerts_fired": s.alerts_fired,
    }


def summary_rows(s: AggregatorStats) -> list[tuple[str, str]]:
    rows = []
    for key, value in summary(s).items():
        if key == "elapsed_s":
            text = format_duration_ms(value * 1000)
        elif isinstance(value, float):
            text = f"{value:,.1f}"
        elif value is None:
            text = "-"
        elif isinstance(value, dict):  # invalid by class: the classes that have any
            text = ", ".join(f"{k} {n:,}" for k, n in value.items() if n) or "-"
        else:
            text = f"{value:,}"
        rows.append((key.replace("_", " "), text))
    return rows


def summary_table(s: AggregatorStats) -> Table:
    """The summary at exit as a table (printed on stderr: a report, not data)."""
    table = Table(title="aggregate summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in summary_rows(s):
        table.add_row(name, value)
    return table
