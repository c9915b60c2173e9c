"""The ``run`` dashboard: prices, current and last final candles, pipeline health.

Pure: a pipeline Snapshot in, Rich renderables out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cryptoctl.alerts.events import AlertEvent
from cryptoctl.cache import poller
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.pipeline.runner import Snapshot
from cryptoctl.render import numbers as fmt


def _doc_ohlc(doc: CandleDoc | None) -> tuple[str, float, float, float, float, str] | None:
    """(bucket HH:MM, open, high, low, close, trades) of a cached candle document."""
    if doc is None:
        return None
    return fmt.utc_clock(doc.bucket_ms)[:5], doc.open, doc.high, doc.low, doc.close, str(doc.trades)


# How the health table words the status of the dashboard's cache poll.
CACHE_WORDS = {poller.NOT_CHECKED: "waiting", poller.NONE_YET: "ok"}

# The open candle's columns by terminal width: fewer columns rather than prices cut short.
FULL_WIDTH = 118
_CURRENT_COLUMNS = (
    (FULL_WIDTH, ("open", "high", "low", "close", "n")),
    (96, ("open", "close", "n")),
    (0, ("close", "n")),
)


def _current_columns(width: int) -> tuple[str, ...]:
    return next(cols for min_width, cols in _CURRENT_COLUMNS if width >= min_width)


def _current_cells(doc: CandleDoc | None, columns: tuple[str, ...]) -> list[Text | str]:
    """The open candle: its bucket, then the chosen columns of open/high/low/close/n."""
    v = _doc_ohlc(doc)
    if v is None:
        return [Text("—", style="dim")] + [""] * len(columns)
    bucket, o, h, low, c, n = v
    cells: dict[str, Text | str] = {
        "open": fmt.price(o), "high": fmt.price(h), "low": fmt.price(low),
        "close": Text(fmt.price(c), style=fmt.direction_style(o, c)), "n": n,
    }
    return [bucket, *(cells[name] for name in columns)]


def _final_cells(doc: CandleDoc | None) -> list[Text | str]:
    """The last final candle, short: bucket, close, change over the candle, trades."""
    v = _doc_ohlc(doc)
    if v is None:
        return [Text("—", style="dim")] + [""] * 3
    bucket, o, _h, _low, c, n = v
    change = (c / o - 1) * 100 if o else 0.0
    return [bucket, fmt.price(c), Text(f"{change:+.2f}%", style=fmt.direction_style(o, c)), n]


def market_title(snap: Snapshot) -> str:
    """``market · binance · USDT``: the run's one source and quote, said once for every row."""
    return f"market · {snap.source.name} · {snap.quote}"


def market_table(snap: Snapshot, symbols: Sequence[str], *, width: int = FULL_WIDTH) -> Table:
    """A row per market of the run (one per symbol: one source and quote per run), its
    candles those of that market."""
    columns = _current_columns(width)
    table = Table(header_style="bold", title=market_title(snap), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("symbol", no_wrap=True, min_width=4)
    table.add_column("price", justify="right", no_wrap=True)
    table.add_column("1m now", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last final", no_wrap=True)
    for name in ("close", "chg", "n"):
        table.add_column(name, justify="right", no_wrap=True)
    prices = snap.producer.last_price
    for symbol in sorted(set(symbols) | set(prices)):
        price, market = prices.get(symbol), snap.market(symbol)
        table.add_row(
            symbol,
            Text(fmt.price(price), style="bold") if price is not None else Text("—", style="dim"),
            *_current_cells(snap.current.get(market), columns),
            *_final_cells(snap.final.get(market)),
        )
    return table


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def health_table(snap: Snapshot) -> Table:
    p, a = snap.producer, snap.aggregator
    table = Table(show_header=False, box=None, title="pipeline", title_justify="left", pad_edge=False)
    for _ in range(4):
        table.add_column(style="dim", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
    warn = "bold red"
    table.add_row(
        "produced", str(p.produced),
        "delivered", str(p.delivered),
        "failed", Text(str(p.failed), style=warn if p.failed else ""),
        "produce rate", f"{p.ticks_per_s:.1f}/s",
    )  # fmt: skip
    table.add_row(
        "aggregated", str(a.ticks),
        "late", Text(str(a.late), style="yellow" if a.late else ""),
        "invalid", Text(str(a.invalid + p.invalid), style=warn if a.invalid + p.invalid else ""),
        "agg. rate", f"{a.ticks_per_s:.1f}/s",
    )  # fmt: skip
    table.add_row(
        "candles", str(a.candles_written),
        "final", str(a.candles_final),
        "flush p50", _ms(a.flush_latency_ms_p50),
        "flush last", _ms(a.flush_latency_ms_last),
    )  # fmt: skip
    table.add_row(
        "aggregator", a.state,
        "partitions", str(len(a.partitions)),
        "cache", "ok" if a.cache_connected else CACHE_WORDS.get(snap.cache_status, snap.cache_status),
        "open windows", str(a.open_windows),
    )  # fmt: skip
    return table


def header(snap: Snapshot, topic: str) -> Text:
    text = Text()
    text.append("cryptoctl run", style="bold")
    text.append(f" · source {snap.source.name} · topic {topic} · {fmt.age(snap.elapsed_s)}")
    return text


ALERT_LINES = 3  # recent alerts the dashboard shows


def alert_lines(alerts: Sequence[AlertEvent], width: int = FULL_WIDTH) -> list[Text]:
    """A line per recent alert, newest first, cut to the width (never wrapped)."""
    from cryptoctl.render.alerts import event_line

    lines = []
    for event in alerts[:ALERT_LINES]:
        line = Text("alert ", style="bold yellow") + event_line(event)
        line.truncate(width, overflow="ellipsis")
        line.no_wrap = True
        lines.append(line)
    return lines


def dashboard(
    snap: Snapshot, *, symbols: Sequence[str], topic: str, width: int = FULL_WIDTH,
    alerts: Sequence[AlertEvent] = (),
) -> RenderableType:  # fmt: skip
    # A source note (CoinGecko unreachable) is not repeated here: `run` printed it once,
    # in full, just above the dashboard, where it stays.
    parts: list[RenderableType] = [header(snap, topic)]
    parts += [market_table(snap, symbols, width=width), health_table(snap)]
    parts += alert_lines(alerts, width)
    problem = snap.producer.last_problem or snap.aggregator.last_error
    if problem:
        parts.append(Text(f"last problem: {problem}", style="yellow"))
    parts.append(Text("Ctrl-C stops producer and aggregator (the stack keeps running)", style="dim"))
    return Group(*parts)


def status_line(snap: Snapshot) -> str:
    """One plain line for a non-terminal stderr."""
    p, a = snap.producer, snap.aggregator
    return (
        f"[{fmt.age(snap.elapsed_s)}] produced {p.produced} · aggregated {a.ticks} · "
        f"candles {a.candles_written} (final {a.candles_final}) · late {a.late} · "
        f"invalid {a.invalid + p.invalid} · flush p50 {_ms(a.flush_latency_ms_p50)}"
    )


def run_summary(snap: Snapshot, stored: tuple[int, int] | None) -> Text:
    p, a = snap.producer, snap.aggregator
    text = Text()
    text.append("pipeline stopped", style="bold")
    text.append(
        f" after {fmt.age(snap.elapsed_s)}: produced {p.produced} ticks ({snap.source.name}), "
        f"aggregated {a.ticks}, late {a.late}, invalid {a.invalid + p.invalid}"
    )
    if stored is not None:
        text.append(f"\ncandles stored: {stored[0]} ({stored[1]} final)")
    text.append("\nthe local stack keeps running; `cryptoctl down` stops it")
    text.append("\nnext: ", style="bold")
    text.append("cryptoctl candles --since 10m", style="cyan")
    text.append(" · ")
    text.append("cryptoctl watch", style="cyan")
    text.append(" · ")
    text.append("cryptoctl stats", style="cyan")
    return text
