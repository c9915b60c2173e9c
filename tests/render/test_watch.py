"""The watch display at the widths of real terminals, and its 1-minute candle column."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cryptoctl.cache.documents import CandleDoc
from cryptoctl.render.watch import (
    OPTIONAL,
    STALE_MARK,
    candle_text,
    choose_columns,
    watch_view,
)
from cryptoctl.tick import Tick
from cryptoctl.watch.state import WatchState

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
BASE = {"BTC": 67000.0, "ETH": 3400.0, "SOL": 150.0, "DOGE": 0.1234}
LAST = {"BTC": "67,009.75", "ETH": "3,409.75", "SOL": "159.75", "DOGE": "0.5134"}


def busy_state() -> WatchState:
    """Four symbols after 40 ticks each (a full sparkline), BTC with a current candle."""
    state = WatchState.create(0.0)
    for i in range(40):
        for sym, base in BASE.items():
            step = 0.01 if sym == "DOGE" else 0.25
            extra = {"change_24h_pct": -12.5}
            state.apply(Tick(sym, round(base + i * step, 4), T0 + 90_000 + i, "synthetic", T0, extra=extra),
                        i * 0.1)  # fmt: skip
    state.candles = {
        "BTC": candle(T0 + 60_000, 67000.0, 67012.5, 66990.25, 67009.75, trades=1234),
        "ETH": candle(T0, 3400.0, 3410.0, 3399.0, 3405.0, trades=7),  # a minute behind: stale
    }
    return state


def candle(bucket: int, o: float, h: float, low: float, c: float, trades: int = 3) -> CandleDoc:
    return CandleDoc("X", bucket, o, h, low, c, 0.0, trades, c, None, bucket, bucket + 1, "open", False)


def screen(width: int, *, styles: bool = False) -> str:
    console = Console(record=True, width=width, color_system="truecolor" if styles else None,
                      file=io.StringIO())  # fmt: skip
    console.print(watch_view(busy_state(), 4.0, title="cryptoctl watch", width=width))
    return console.export_text(styles=styles)


def row(text: str, symbol: str) -> str:
    return next(line for line in text.splitlines() if re.match(rf"\W*{symbol}\b", line))


def header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if "symbol" in line)
    return [cell.strip() for cell in re.split(r"[┃│]", line) if cell.strip()]


@pytest.mark.parametrize("width", [60, 80, 100, 110, 120, 140, 160, 200])
def test_every_row_names_its_symbol_and_shows_the_whole_price(width: int) -> None:
    text = screen(width)
    for sym, price in LAST.items():
        line = row(text, sym)
        assert re.match(rf"│ {sym}\s+│\s+{re.escape(price)} ", line), line
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in table)
    assert not any("…" in line for line in table)


def test_lesser_columns_go_first_on_a_narrow_terminal() -> None:
    assert header(screen(80)) == ["symbol", "price", "chg", "age", "1m candle"]
    assert "67,009.75" in row(screen(80), "BTC") and "-12.50%" not in screen(80)
    wide = header(screen(120))
    assert wide[:6] == ["symbol", "price", "chg", "24h", "high", "low"] and "1m candle" in wide
    assert "│ 67,009.75 │ 67,000.00 │" in row(screen(120), "BTC")  # session high and low
    widest = screen(220)
    assert header(widest) == ["symbol", "price", "chg", "24h", "high", "low", "ticks", "t/s", "age",
                              "recent", "1m candle"]  # fmt: skip
    assert "00:01 O 67,000.00 H 67,012.50 L 66,990.25 C 67,009.75 · 1234" in row(widest, "BTC")


_NATURAL = {"symbol": 6, "price": 11, "chg": 7, "24h": 7, "high": 9, "low": 9, "ticks": 6, "t/s": 5,
            "age": 5, "recent": 24, "1m": 22, "1m full": 58}  # fmt: skip


def _with_short_candle(columns: list[str]) -> set[str]:
    """The full candle column is the short one and more."""
    return set(columns) | ({"1m"} if "1m full" in columns else set())


@given(st.integers(0, 300), st.integers(0, 300))
def test_a_wider_terminal_never_shows_fewer_columns(a: int, b: int) -> None:
    narrow, wide = choose_columns(_NATURAL, min(a, b)), choose_columns(_NATURAL, max(a, b))
    assert narrow[:2] == ["symbol", "price"]
    assert _with_short_candle(narrow) <= _with_short_candle(wide)
    assert not {"1m", "1m full"} <= set(wide)
    # What is left out is always the end of OPTIONAL: never a more useful column first.
    shown = [group for group in OPTIONAL if set(group) <= _with_short_candle(narrow)]
    assert list(OPTIONAL[: len(shown)]) == shown


def test_candle_shows_its_minute_and_a_stale_one_is_marked_and_dim() -> None:
    tick_ts = T0 + 61_500  # the latest tick: 00:01:01.5
    current = candle_text(candle(T0 + 60_000, 1.0, 1.2, 0.9, 1.1, trades=12), tick_ts)
    assert current.plain == "00:01 O 1.0000 H 1.2000 L 0.9000 C 1.1000 · 12"
    assert STALE_MARK not in current.plain and "dim" not in str(current.style)
    older = candle_text(candle(T0, 1.0, 1.2, 0.9, 1.1), tick_ts)
    assert older.plain.startswith(f"00:00 {STALE_MARK} O 1.0000")
    assert str(older.style) == "dim"
    assert not any("green" in str(span.style) for span in older.spans)  # no up/down colour
    ahead = candle_text(candle(T0 + 120_000, 1.0, 1.2, 0.9, 1.1), tick_ts)  # watch lags the aggregator
    assert STALE_MARK not in ahead.plain
    short = candle_text(candle(T0 + 60_000, 1.0, 1.2, 0.9, 1.1, trades=12), tick_ts, full=False)
    assert short.plain == "00:01 C 1.1000 · 12"


def test_stale_candle_in_the_table_is_dimmed_at_every_width() -> None:
    for width in (80, 120, 220):
        text = screen(width)
        assert "00:01 C 67,009.75" in row(text, "BTC") or "00:01 O 67,000.00" in row(text, "BTC")
        assert f"00:00 {STALE_MARK}" in row(text, "ETH")
        assert STALE_MARK not in row(text, "BTC")
    styled = next(line for line in screen(120, styles=True).splitlines() if "ETH" in line)
    assert re.search(r"\x1b\[2m00:00 \(stale\)", styled), styled
