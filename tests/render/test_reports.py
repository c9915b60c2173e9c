"""`aggregate`'s and `produce`'s status lines and summaries: pure functions of the stats."""

from __future__ import annotations

import io
import re

from rich.console import Console

from cryptoctl.aggregator import AggregatorStats
from cryptoctl.producer import ProducerStats, ProducerSummary
from cryptoctl.render import aggregate, produce

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def text_of(renderable: object, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def agg_stats(**over: object) -> AggregatorStats:
    values: dict[str, object] = dict(
        state="running", elapsed_s=75.0, ticks=12_345, ticks_per_s=1234.4, late=3, invalid=1,
        candles_written=40, candles_final=2, raw_ticks_written=12_345, open_windows=2, flushes=30,
        flush_latency_ms_p50=4.25, flush_latency_ms_last=5.0, partitions=(0, 1),
        watermarks={0: T0 + 5_000, 1: None}, fenced=0, offset_resets=0, pg_retries=0,
        dlq_failed=0, cache_pending=0, cache_connected=True, cache_errors=0, kafka_errors=0,
    )  # fmt: skip
    return AggregatorStats(**(values | over))  # type: ignore[arg-type]


def producer_fields(**over: object) -> dict[str, object]:
    values: dict[str, object] = dict(
        source="synthetic", topic="crypto-prices", produced=1200, delivered=1198, failed=0,
        pending=2, retries=1, unchanged=0, invalid=0, source_errors=0, restarts=0,
        ticks_per_s=10.0, elapsed_s=120.0,
        last_price={"BTC": 67012.5, "ETH": 3400.25, "PEPE": 0.000022}, last_problem="",
    )  # fmt: skip
    return values | over


def test_aggregate_status_line() -> None:
    line = aggregate.status_line(agg_stats())
    assert line == (
        "1,234 ticks/s | ticks 12,345 | open windows 2 | flush p50 4.2ms | late 3 | invalid 1"
        " | partitions 2 | wm p0:00:00:05 p1:-"
    )
    moved = aggregate.status_line(agg_stats(group_moves=1, kafka_group="g.gen1", fenced=2,
                                            cache_pending=4, cache_connected=False))  # fmt: skip
    assert moved.endswith(" | fenced 2 | group g.gen1 | redis down (4 pending)")


def test_aggregate_summary_json_and_table() -> None:
    stats = agg_stats()
    data = aggregate.summary(stats)
    assert data["ticks"] == 12_345 and data["ticks_per_s"] == 164.6
    table = text_of(aggregate.summary_table(stats))
    assert table.splitlines()[0].strip() == "aggregate summary"
    rows = {line.strip("│ ").split("│")[0].strip(): line.split("│")[2].strip()
            for line in table.splitlines() if line.count("│") == 3}  # fmt: skip
    assert rows["ticks"] == "12,345"
    assert rows["elapsed s"] == "1m15s"
    assert rows["flush latency ms p50"] == "4.2"
    assert rows["ticks per s"] == "164.6"


def test_produce_status_line_and_stop_lines() -> None:
    stats = ProducerStats(**producer_fields())  # type: ignore[arg-type]
    assert produce.status_line(stats) == (
        "synthetic → crypto-prices · 10 ticks/s · delivered 1,198 · failed 0 · retries 1"
        " · BTC 67,012.50  ETH 3,400.25  PEPE 0.00002200"
    )
    assert produce.stopping_line(stats) == (
        "stopping: flushing 2 ticks in flight (Ctrl-C again to abort)"
    )
    assert produce.abort_line(stats).startswith("aborted: 1,198 ticks delivered, 2 still")


def test_produce_prices_text_uses_the_one_price_format() -> None:
    prices = {f"S{i}": 1.5 for i in range(8)} | {"PEPE": 0.000022}
    text = produce.prices_text(prices)
    assert text == "  ".join(f"S{i} 1.5000" for i in range(6)) + "  (+3)"  # not 1.5
    assert "e-" not in produce.prices_text(prices, limit=20)
    assert produce.prices_text({"PEPE": 0.000022}) == "PEPE 0.00002200"


def test_produce_summary_table_and_json() -> None:
    summary = ProducerSummary(  # type: ignore[arg-type]
        **producer_fields(), undelivered=0, avg_ticks_per_s=9.98765, stopped_by="count"
    )
    text = text_of(produce.summary_table(summary), 100)
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    assert rows["stopped by"] == "count"
    assert rows["elapsed"] == "2m00s"
    assert rows["average rate"] == "10 ticks/s"
    assert rows["last prices"] == "BTC 67,012.50  ETH 3,400.25  PEPE 0.00002200"
    data = produce.summary_json(summary)
    assert data["avg_ticks_per_s"] == 10.0 and data["last_price"]["PEPE"] == 0.000022


def test_summaries_show_ticks_per_market_and_invalid_by_class() -> None:
    markets = ((("synthetic", "BTC", "USD"), 700), (("synthetic", "ETH", "USD"), 500))
    summary = ProducerSummary(  # type: ignore[arg-type]
        **producer_fields(market_ticks=markets), undelivered=0, avg_ticks_per_s=10.0,
        stopped_by="count",
    )  # fmt: skip
    text = text_of(produce.summary_table(summary), 100)
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    assert rows["synthetic BTC/USD"] == "700 ticks" and rows["synthetic ETH/USD"] == "500 ticks"
    assert produce.summary_json(summary)["market_ticks"] == {
        "synthetic BTC/USD": 700, "synthetic ETH/USD": 500,
    }  # fmt: skip
    stats = agg_stats(invalid=3, invalid_by={"malformed": 2, "invalid": 0, "key": 1, "partition": 0})
    assert aggregate.summary(stats)["invalid_by"]["malformed"] == 2
    table = text_of(aggregate.summary_table(stats))
    assert "│ invalid by " in table and "malformed 2, key 1" in table
