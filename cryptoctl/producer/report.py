"""Plain-text views of the producer's stats: pure functions, no terminal needed."""

from __future__ import annotations

from cryptoctl.durations import format_duration_ms
from cryptoctl.producer.loop import ProducerStats, ProducerSummary


def format_price(price: float) -> str:
    if price >= 1000:
        return f"{price:,.2f}"
    if price >= 1:
        return f"{price:.4f}".rstrip("0").rstrip(".")
    return f"{price:.8g}"


def prices_text(last_price: dict[str, float], limit: int = 6) -> str:
    items = list(last_price.items())
    text = "  ".join(f"{s} {format_price(p)}" for s, p in items[:limit])
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
