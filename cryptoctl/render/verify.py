"""`cryptoctl verify` output: the counts per market and the minutes to look at (tables),
or every judged minute as a record (JSON). Pure: reports in, renderables/records out.

Prices are shown exactly (``repr``: both sides are ``float(str)`` of decimals, and a price
differs when it differs at all); volume and VWAP, compared to 1e-9, to 12 digits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cryptoctl.exchanges.verify import GOOD, STATUSES, FieldDiff, Minute, counts
from cryptoctl.exchanges.verify_run import MarketReport
from cryptoctl.times import iso_utc

SUMS = frozenset({"volume", "vwap"})


def market_name(report: MarketReport) -> str:
    return f"{report.market.symbol}/{report.market.quote}"


def _minute_text(ms: int) -> str:
    return iso_utc(ms).replace("T", " ")[:16]  # 2026-01-01 00:05


def _value(name: str, value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and name in SUMS:
        return f"{value:.12g}"
    return repr(value)


def _table(title: str | None = None) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
        title_style="bold",
    )  # fmt: skip


def summary_table(reports: Sequence[MarketReport], source: str) -> Table:
    """One line per market: how many minutes were judged, and how many got each status."""
    table = _table(f"{source}: our 1-minute candles against the exchange's")
    table.add_column("market")
    table.add_column("minutes", justify="right")
    for status in STATUSES:
        table.add_column(status.replace("_", "\n"), justify="right")
    for report in reports:
        n = counts(report.minutes)
        table.add_row(market_name(report), str(len(report.minutes)), *(str(n[s]) for s in STATUSES))
    return table


def findings_table(report: MarketReport) -> Table | None:
    """The minutes of one market that are not match/empty, a differing field per line."""
    bad = [m for m in report.minutes if m.status not in GOOD]
    if not bad:
        return None
    table = _table(f"{market_name(report)}: minutes that are not match or empty")
    for name, justify in (("minute (UTC)", "left"), ("status", "left"), ("field", "left"),
                          ("ours", "right"), ("theirs", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for minute in bad:
        when = _minute_text(minute.bucket_ms)
        if not minute.diffs:
            table.add_row(when, minute.status, "", "", "")
        for i, diff in enumerate(minute.diffs):
            table.add_row(
                when if i == 0 else "", minute.status if i == 0 else "", diff.field,
                _value(diff.field, diff.ours), _value(diff.field, diff.theirs),
            )  # fmt: skip
    return table


def verify_tables(reports: Sequence[MarketReport], source: str) -> RenderableType:
    parts: list[RenderableType] = [summary_table(reports, source)]
    for report in reports:
        found = findings_table(report)
        if found is not None:
            parts += [Text(""), found]
    return Group(*parts)


def _fields(diffs: Iterable[FieldDiff]) -> dict[str, dict[str, Any]]:
    return {d.field: {"ours": d.ours, "theirs": d.theirs} for d in diffs}


def minute_record(report: MarketReport, minute: Minute) -> dict[str, Any]:
    """A judged minute for JSON; a ``differs`` one has ``fields``: {name: {ours, theirs}}."""
    record: dict[str, Any] = {
        "source": report.market.source,
        "symbol": report.market.symbol,
        "quote": report.market.quote,
        "bucket": iso_utc(minute.bucket_ms),
        "status": minute.status,
    }
    if minute.status == "differs":
        record["fields"] = _fields(minute.diffs)
    return record


def minute_records(reports: Iterable[MarketReport]) -> list[dict[str, Any]]:
    return [minute_record(r, m) for r in reports for m in r.minutes]
