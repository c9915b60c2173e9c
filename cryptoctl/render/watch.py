"""The ``watch`` display: a row per market, a footer of totals, and the exit summary.

Pure: a WatchState, ``now`` (wall-clock seconds) and the terminal width in, Rich
renderables out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from cryptoctl.cache import poller
from cryptoctl.cache.client import MarketKey
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.render import numbers as fmt
from cryptoctl.render.sparkline import sparkline
from cryptoctl.watch.state import MarketState, WatchState

FLASH_S = 1.0  # how long a price stays green/red after it moved
STALE_S = 30.0  # rows not updated for this long are dimmed
SPARK_WIDTH = 24
FULL_WIDTH = 160
MINUTE_MS = 60_000
STALE_MARK = "(stale)"
# How the footer words the cache's status (the poll's own words otherwise).
CACHE_WORDS = {poller.OK: "redis", poller.UNAVAILABLE: "redis unavailable"}


def _signed(value: float | None) -> Text:
    style = "green" if value and value > 0 else "red" if value and value < 0 else ""
    return Text(fmt.pct(value), style=style)


def price_text(sym: MarketState, now: float) -> Text:
    """The last price, flashing green/red right after an up/down move."""
    arrow = {1: "▲", -1: "▼"}.get(sym.direction, " ")
    flashing = sym.moved_at is not None and now - sym.moved_at < FLASH_S and sym.direction
    style = ("bold green" if sym.direction > 0 else "bold red") if flashing else "bold"
    return Text(f"{fmt.price(sym.last_price)} {arrow}", style=style)


def candle_minute(candle: CandleDoc) -> int:
    """The candle's minute (epoch ms)."""
    return candle.bucket_ms // MINUTE_MS * MINUTE_MS


def candle_text(candle: CandleDoc | None, last_ts: int, *, full: bool = True) -> Text:
    """The aggregator's 1-minute candle: ``14:05 O 1.00 H 1.20 L 0.90 C 1.10 · 12`` (UTC).

    ``last_ts`` is the event time of the market's latest tick. A candle of an earlier
    minute (the aggregator stopped or lags) is not the current one: it is dimmed and
    marked ``(stale)``. ``full=False`` leaves out open, high and low.
    """
    if candle is None:
        return Text("—", style="dim")
    o, h, low, c = candle.open, candle.high, candle.low, candle.close
    bucket = candle_minute(candle)
    stale = bucket < last_ts // MINUTE_MS * MINUTE_MS
    text = Text(style="dim" if stale else "")
    text.append(fmt.utc_clock(bucket)[:5], style="" if stale else "bold")
    if stale:
        text.append(f" {STALE_MARK}")
    if full:
        text.append(f" O {fmt.price(o)} H {fmt.price(h)} L {fmt.price(low)}")
    text.append(f" C {fmt.price(c)}", style="" if stale else fmt.direction_style(o, c))
    text.append(f" · {candle.trades}", style="dim")
    return text


Cell = Text | str


@dataclass(frozen=True)
class _Frame:
    """What every cell of one redraw may need besides its own market."""

    state: WatchState
    labels: Mapping[MarketKey, str]
    now: float

    def candle(self, m: MarketState) -> CandleDoc | None:
        return self.state.candles.get(m.market)  # the candle of this market, not the symbol


_CellOf = Callable[[MarketState, _Frame], Cell]

# Every column: header, justification, and how a row's cell is made.
_COLUMNS: dict[str, tuple[str, JustifyMethod, _CellOf]] = {
    "market": ("market", "left", lambda m, f: f.labels[m.market]),
    "price": ("price", "right", lambda m, f: price_text(m, f.now)),
    "chg": ("chg", "right", lambda m, f: _signed(m.change_pct)),
    "24h": ("24h", "right", lambda m, f: _signed(m.change_24h_pct)),
    "high": ("high", "right", lambda m, f: fmt.price(m.high)),
    "low": ("low", "right", lambda m, f: fmt.price(m.low)),
    "ticks": ("ticks", "right", lambda m, f: str(m.ticks)),
    "t/s": ("t/s", "right", lambda m, f: fmt.rate(m.rate(f.now))),
    "age": ("age", "right", lambda m, f: fmt.age(m.age(f.now))),
    "recent": ("recent", "left", lambda m, f: Text(sparkline(m.recent, SPARK_WIDTH), style="cyan")),
    "1m": ("1m candle", "left", lambda m, f: candle_text(f.candle(m), m.last_ts, full=False)),
    "1m full": ("1m candle", "left", lambda m, f: candle_text(f.candle(m), m.last_ts, full=True)),
}  # fmt: skip

# Left to right as on screen. "1m full" is "1m" with open, high and low: one or the other.
DISPLAY_ORDER = ("market", "price", "chg", "24h", "high", "low", "ticks", "t/s", "age", "recent",
                 "1m", "1m full")
ALWAYS = ("market", "price")
# Added while they fit, most useful first; on a narrow terminal the last ones go first.
OPTIONAL: tuple[tuple[str, ...], ...] = (
    ("chg",), ("1m",), ("age",), ("high", "low"), ("24h",), ("t/s",), ("ticks",), ("recent",),
    ("1m full",),
)  # fmt: skip
_REPLACES = {"1m full": "1m"}
# Room kept for columns whose text grows as the watch runs (+12.34%, 3m05s, 12345 ticks),
# so a column does not come and go with every refresh near a threshold.
_RESERVE = {"chg": 7, "24h": 7, "ticks": 6, "t/s": 5, "age": 5, "recent": SPARK_WIDTH}


def _table_width(widths: Sequence[int]) -> int:
    """A boxed table's width: each column's content plus padding of 1 each side, plus the
    rules between and around the columns."""
    return sum(w + 2 for w in widths) + len(widths) + 1


def choose_columns(natural: Mapping[str, int], width: int) -> list[str]:
    """The columns shown at ``width``: always market and price, then OPTIONAL groups in
    order while the table still fits (the first group that does not fit ends the list)."""
    chosen = list(ALWAYS)
    for group in OPTIONAL:
        trial = [c for c in chosen if c not in {_REPLACES.get(g) for g in group}] + list(group)
        if _table_width([natural[c] for c in trial]) > width:
            break
        chosen = trial
    return [c for c in DISPLAY_ORDER if c in chosen]


def _plain_len(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def watch_table(state: WatchState, now: float, *, width: int = FULL_WIDTH) -> Table:
    """One row per market with as many columns as fit in ``width``; the market's name and
    price are always whole (never cut to ``…``): lesser columns are left out first."""
    markets = state.ordered()
    frame = _Frame(state, state.labels(), now)
    rows = [{name: cell(m, frame) for name, (_, _, cell) in _COLUMNS.items()} for m in markets]
    natural = {
        name: max([cell_len(header), _RESERVE.get(name, 0), *(_plain_len(row[name]) for row in rows)])
        for name, (header, _, _) in _COLUMNS.items()
    }
    table = Table(header_style="bold", expand=False)
    columns = choose_columns(natural, width)
    for name in columns:
        header, justify, _ = _COLUMNS[name]
        table.add_column(header, justify=justify, no_wrap=True, min_width=natural[name])
    for m, row in zip(markets, rows, strict=True):
        table.add_row(*(row[n] for n in columns), style="dim" if m.age(now) >= STALE_S else None)
    return table


def footer(state: WatchState, now: float) -> Text:
    elapsed = state.elapsed(now)
    rate = state.ticks / elapsed if elapsed > 0 else 0.0
    text = Text()
    text.append(f"{state.ticks} ticks", style="bold")
    text.append(f" · {_markets(state)} · {fmt.rate(rate)}/s · {fmt.age(elapsed)}")
    style = "bold red" if state.invalid else "dim"
    text.append(f" · invalid {state.invalid}", style=style)
    sources = ", ".join(f"{name} {count}" for name, count in sorted(state.sources.items()))
    text.append(f" · sources: {sources or '—'}")
    status = CACHE_WORDS.get(state.cache_status, state.cache_status)
    text.append(f" · candles: {status}", style="dim")
    return text


def watch_view(
    state: WatchState, now: float, *, title: str | None = None, width: int = FULL_WIDTH
) -> RenderableType:
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    if state.markets:
        parts.append(watch_table(state, now, width=width))
    else:
        parts.append(Text("waiting for ticks…", style="dim"))
    parts.append(footer(state, now))
    hint = Text("Ctrl-C to stop", style="dim")
    parts.append(hint)
    return Group(*parts)


def summary(state: WatchState, now: float) -> Text:
    """The lines left after the watch ends (stderr)."""
    elapsed = state.elapsed(now)
    text = Text()
    text.append("watch summary: ", style="bold")
    text.append(
        f"{state.ticks} ticks from {_markets(state)} in {fmt.age(elapsed)}, "
        f"{state.invalid} invalid"
    )
    labels = state.labels()
    pad = max([6, *(len(label) for label in labels.values())])
    for m in state.ordered():
        text.append(
            f"\n  {labels[m.market]:<{pad}} last {fmt.price(m.last_price)} ({fmt.pct(m.change_pct)})"
            f"  high {fmt.price(m.high)}  low {fmt.price(m.low)}  ticks {m.ticks}"
        )
    return text


def _markets(state: WatchState) -> str:
    """``3 markets``, or ``3 markets of 2 symbols`` where a symbol trades in several."""
    markets, symbols = len(state.markets), len(state.symbols())
    text = _count(markets, "market")
    return text if markets == symbols else f"{text} of {_count(symbols, 'symbol')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
