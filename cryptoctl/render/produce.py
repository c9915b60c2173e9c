"""`produce`'s status line, stop/abort lines and exit summary: pure functions of the
producer's stats, no terminal needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cryptoctl.render import numbers as fmt
from cryptoctl.times import format_duration_ms

if TYPE_CHECKING:  # annotations only: rendering a summary needs no Kafka client loaded
    from cryptoctl.producer.loop import ProducerStats, ProducerSummary
    from cryptoctl.sources.base import FeedStats, MarketStats

STATUS_WIDTH = 80


def prices_text(last_price: Mapping[str, float], limit: int = 6) -> str:
    items = list(last_price.items())
    text = "  ".join(f"{s} {fmt.price(p)}" for s, p in items[:limit])
    if len(items) > limit:
        text += f"  (+{len(items) - limit})"
    return text


def status_line(stats: ProducerStats) -> str:
    """One line: rate, counters, last prices (the live status and the periodic log)."""
    if stats.feed is not None:
        return feed_status_line(stats, stats.feed)
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


def _market_part(m: MarketStats, *, with_id: bool, single: bool) -> str:
    # one market: "binance BTC/USDT 812/s #4123"; several: "BTC 812/s #4123" each (one
    # exchange, one quote: the base asset names the market)
    name = m.market if single else m.market.split(" ", 1)[-1].split("/", 1)[0]
    text = f"{name} {m.trades_per_s:,.0f}/s"
    if with_id and m.last_trade_id is not None:
        text += f" #{m.last_trade_id}"
    return text


def feed_status_line(stats: ProducerStats, feed: FeedStats, width: int = STATUS_WIDTH) -> str:
    """An exchange feed's status in at most ``width`` columns: the most detailed form
    that fits (per market: trades/s and the last trade id), down to totals only. Open
    gaps, failures and a lost connection are in every form."""
    markets = feed.markets
    reconnects = max((m.reconnects for m in markets), default=0)
    filled = sum(m.gaps_filled for m in markets)
    open_gaps = sum(m.gaps_open for m in markets)
    alarms = []
    if stats.failed:
        alarms.append(f"failed {stats.failed:,}")
    if not feed.connected:
        alarms.append("disconnected")
    if feed.unreadable:
        alarms.append(f"unreadable {feed.unreadable:,}")
    catch_up = _catch_up(markets)
    long_tail = [
        *catch_up, f"delivered {stats.delivered:,}", f"reconnects {reconnects:,}",
        f"gaps filled {filled:,}, open {open_gaps:,}", *alarms,
    ]  # fmt: skip
    # catching up, the reconnects give their room to the catch-up's progress
    reconn = [] if catch_up else [f"reconn {reconnects:,}"]
    short_tail = [
        *catch_up, f"sent {stats.delivered:,}", *reconn, f"gaps {filled:,}+{open_gaps:,} open", *alarms,
    ]  # fmt: skip
    single = len(markets) == 1
    forms: list[list[str]] = []
    for with_id, tail in ((True, long_tail), (True, short_tail), (False, long_tail), (False, short_tail)):
        per = " ".join(_market_part(m, with_id=with_id, single=single) for m in markets)
        forms.append([per if single else f"{stats.source} {per}", *tail])
    total = sum(m.trades_per_s for m in markets)
    count = f"{len(markets)} market" + ("" if single else "s")
    forms.append([f"{stats.source} {count} {total:,.0f}/s", *short_tail])
    forms.append(  # the alarms first: a catch-up's progress may be cut short, they may not
        [f"{stats.source} {count}", f"gaps {filled:,}+{open_gaps:,} open", *alarms, *catch_up]
    )
    line = ""
    for parts in forms:
        line = " · ".join(parts)
        if len(line) <= width:
            return line
    return line[: width - 1] + "…"


def _catch_up(markets: Sequence[MarketStats]) -> list[str]:
    """While markets fetch trades over REST (a resume after an old last trade, a --since
    history, a fill): the REST pages fetched so far and the trades still to fetch, where
    known ("catch-up 12p 34,567 behind"); nothing when not catching up."""
    catching = [m for m in markets if m.catching_up]
    if not catching:
        return []
    pages = sum(m.rest_pages for m in catching)
    known = [m.behind for m in catching if m.behind is not None]
    if len(known) < len(catching):  # a --since history: where it ends is not known
        return [f"catch-up {pages:,}p"]
    return [f"catch-up {pages:,}p {sum(known):,} behind"]


def stopping_line(stats: ProducerStats) -> str:
    """Said on the first Ctrl-C, while the ticks in flight are flushed."""
    return f"stopping: flushing {stats.pending:,} ticks in flight (Ctrl-C again to abort)"


def abort_line(stats: ProducerStats) -> str:
    """Said on the second Ctrl-C: what is known to be delivered, what is not."""
    return (
        f"aborted: {stats.delivered:,} ticks delivered, {stats.pending:,} still in flight "
        "were not confirmed (they may or may not be on the topic)"
    )


def market_name(market: tuple[str, str, str]) -> str:
    """``binance BTC/USDT``, as a feed's markets are named."""
    from cryptoctl.exchanges.trade import Market

    return str(Market(*market))


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
    if summary.feed is not None:
        rows.extend(feed_rows(summary.feed, summary.markers))
    else:  # a feed's rows have each market's trades already
        rows.extend((market_name(m), f"{n:,} ticks") for m, n in summary.market_ticks)
    if summary.last_price:
        rows.append(("last prices", prices_text(summary.last_price, limit=20)))
    if summary.last_problem:
        rows.append(("last problem", summary.last_problem))
    return rows


def feed_rows(feed: FeedStats, markers: int) -> list[tuple[str, str]]:
    """An exchange feed's part of the summary: the connection, then one row per market
    (the same figures as the status line), then each open gap."""
    rows = [
        (
            "connection",
            f"{feed.connects:,} connects, {feed.reconnects:,} reconnects, "
            f"{feed.unreadable:,} unreadable frames",
        )
    ]
    gaps: list[dict[str, Any]] = []
    for m in feed.markets:
        last = f"#{m.last_trade_id}" if m.last_trade_id is not None else "none"
        rows.append(
            (
                m.market,
                f"{m.trades:,} trades, {m.trades_per_s:,.0f}/s, last {last}, "
                f"reconnects {m.reconnects:,}, gaps filled {m.gaps_filled:,} "
                f"({m.filled_trades:,} trades), open {m.gaps_open:,}, "
                f"duplicates dropped {m.duplicates:,}, REST pages {m.rest_pages:,}",
            )
        )
        gaps.extend(m.open_gaps)
    for gap in gaps:
        first = "?" if gap["first_id"] < 0 else str(gap["first_id"])
        rows.append(
            (
                "gap open",
                f"{gap['source']} {gap['symbol']}/{gap['quote']} trades {first}..{gap['last_id']} "
                f"({gap['reason']})",
            )
        )
    rows.append(("gap markers", f"{markers:,}"))
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
    data["market_ticks"] = {market_name(m): n for m, n in summary.market_ticks}
    if data["feed"] is None:  # the other sources' summary stays as it was
        del data["feed"], data["markers"]
    else:
        for market in data["feed"]["markets"]:
            market["trades_per_s"] = round(market["trades_per_s"], 1)
            market["open_gaps"] = list(market["open_gaps"])
    return data
